"""Pretrained backbones through timm and the Hugging Face cache, with nothing downloaded.

timm's tiny test ViT (``test_vit.r160_in1k``, hub repo ``timm/test_vit.r160_in1k``) is written
with seeded random weights into huggingface_hub's cache layout under a temporary directory.
huggingface_hub reads ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` when it is imported, so
every load runs in a fresh interpreter with those variables set (offline mode on). There, every
socket connection and DNS lookup is recorded and refused; the tests assert none was attempted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from conftest import QUICKSTART, ROOT, TINY_OPTIONS
from safetensors.torch import load_file, save_file

from vision_mtl.models.backbones import TimmBackbone

MODEL = "test_vit.r160_in1k"  # 64-d, 6 blocks, 0.3M parameters
REPO = f"timm/{MODEL}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
INDICES = [1, 3, 5]  # the last block too: only the final norm and the head are pruned
PRUNED = ("norm.", "fc_norm.", "head.")

# Runs before anything imports huggingface_hub: records and refuses any network access.
PRELUDE = """
import json, socket, sys
ATTEMPTS = []
def _refuse(*args, **kwargs):
    ATTEMPTS.append(repr(args[:2]))
    raise OSError("network access attempted in an offline test")
socket.socket.connect = socket.socket.connect_ex = _refuse
socket.create_connection = socket.getaddrinfo = _refuse
args = json.loads(sys.argv[1])
result = {}
import torch
torch.set_num_threads(1)
from safetensors.torch import save_file
def save(module, path):
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, path)
try:
"""
EPILOGUE = """
except Exception as err:
    result["error"] = [type(err).__name__, str(err)]
result["attempts"] = ATTEMPTS
print("RESULT " + json.dumps(result))
"""

# Builds each requested (model_name, pretrained, class) and saves its timm model's state dict;
# records per build the resolved source kind or the error.
BUILD = """
from vision_mtl.models.backbones import MultiMAEBackbone, TimmBackbone
classes = dict(TimmBackbone=TimmBackbone, MultiMAEBackbone=MultiMAEBackbone)
result["builds"] = []
for name, pretrained, cls, out in args["builds"]:
    try:
        backbone = classes[cls](name, args["indices"], pretrained=pretrained)
    except Exception as err:
        result["builds"].append(dict(error=[type(err).__name__, str(err)]))
        continue
    save(backbone.model, out)
    result["builds"].append(dict(source=backbone.pretrained_source.kind))
"""

# Builds the config's model as the Runner does (vision_mtl.models.builder.build_model).
BUILD_CONFIG = """
from mmengine.config import Config
from vision_mtl.models.builder import build_model
cfg = Config.fromfile(args["config"])
model = build_model(cfg.model)
feats = model.backbone(torch.zeros(1, 3, 32, 64))
result["shapes"] = [list(f.shape) for f in feats]
save(model.backbone.model, args["out"])
"""


def random_weights(seed: int) -> dict[str, torch.Tensor]:
    """The full state dict of the hub's ``test_vit`` (head included), every tensor seeded noise.

    Noise is nothing timm's initialization could produce, so equality proves these were loaded.
    """
    names = timm.create_model("test_vit").state_dict()
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in names.items()}


def populate_cache(cache: Path, weights: dict[str, torch.Tensor]) -> None:
    """Write ``weights`` as the hub repo REPO at COMMIT in huggingface_hub's cache layout.

    ``<cache>/models--timm--<name>/snapshots/<commit>/{model.safetensors,config.json}`` (timm's
    own ``save_for_hf``; the config is what an ``hf-hub:`` model name is built from) and
    ``refs/main`` holding the commit, which is how an offline lookup of ``main`` finds it.
    """
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    model = timm.create_model("test_vit")
    model.load_state_dict(weights)
    timm.models.save_for_hf(model, str(repo_dir / "snapshots" / COMMIT), safe_serialization=True)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)


def run_offline(body: str, args: dict, hf_home: Path, hub_cache: Path | None = None) -> dict:
    """Run ``body`` in a fresh interpreter, offline, with the given Hugging Face directories.

    Returns the script's ``result`` dict: ``error`` (type name and message) if it raised, and
    ``attempts``, the network accesses it tried.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))
    }
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hf_home), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if hub_cache is not None:
        env["HF_HUB_CACHE"] = str(hub_cache)
    indented = "".join(f"    {line}\n" for line in body.strip().splitlines())
    script = PRELUDE + indented + EPILOGUE
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def assert_loaded(path: Path, expected: dict[str, torch.Tensor], skip: tuple = ()) -> None:
    """The backbone's saved weights are ``expected`` minus the pruned final norm and head."""
    loaded = load_file(str(path))
    assert set(loaded) <= set(expected)
    assert all(k.startswith(PRUNED) for k in set(expected) - set(loaded))
    assert sum(k.startswith("blocks.5.") for k in loaded) > 0  # nothing else was pruned
    for key, value in loaded.items():
        if key not in skip:
            assert torch.equal(value, expected[key]), key


FORMS = {
    "tagged_name": (MODEL, True, "TimmBackbone"),
    "hub_weights": ("test_vit", f"hf-hub:{REPO}", "TimmBackbone"),
    "hub_name": (f"hf-hub:{REPO}", True, "TimmBackbone"),
    "multimae_rgbd": (MODEL, True, "MultiMAEBackbone"),
}


@pytest.fixture(scope="module")
def hub_loads(tmp_path_factory):
    """Every form of FORMS built in one offline interpreter from a cache under HF_HOME."""
    tmp = tmp_path_factory.mktemp("hub")
    weights = random_weights(seed=1)
    populate_cache(tmp / "hf_home" / "hub", weights)  # HF_HOME/hub: HF_HUB_CACHE's default
    builds = [[*form, str(tmp / f"{key}.safetensors")] for key, form in FORMS.items()]
    result = run_offline(BUILD, dict(builds=builds, indices=INDICES), tmp / "hf_home")
    return result, weights, tmp


@pytest.mark.parametrize("form", list(FORMS))
def test_offline_cache_provides_hub_weights(hub_loads, form):
    result, weights, tmp = hub_loads
    assert "error" not in result, result.get("error")
    assert result["attempts"] == []
    kind = "hub" if form == "hub_weights" else "timm"
    assert result["builds"][list(FORMS).index(form)] == dict(source=kind)
    assert_loaded(tmp / f"{form}.safetensors", weights)


def test_hub_cache_is_honoured_and_a_local_file_overrides_it(tmp_path):
    """HF_HUB_CACHE (not HF_HOME) is where the hub weights are found; a file given as
    pretrained is loaded instead of them."""
    hub, local = random_weights(seed=1), random_weights(seed=2)
    populate_cache(tmp_path / "hub_cache", hub)
    path = tmp_path / "mine.safetensors"
    save_file(local, str(path))
    builds = [
        [MODEL, True, "TimmBackbone", str(tmp_path / "from_hub.safetensors")],
        [MODEL, str(path), "TimmBackbone", str(tmp_path / "from_file.safetensors")],
        # an hf-hub: name takes its config from the cache, its weights from the file
        [f"hf-hub:{REPO}", str(path), "TimmBackbone", str(tmp_path / "hub_name.safetensors")],
    ]
    result = run_offline(
        BUILD,
        dict(builds=builds, indices=INDICES),
        tmp_path / "empty_home",
        hub_cache=tmp_path / "hub_cache",
    )
    assert result["builds"] == [dict(source="timm"), dict(source="file"), dict(source="file")]
    assert result["attempts"] == []
    assert_loaded(tmp_path / "from_hub.safetensors", hub)
    assert_loaded(tmp_path / "from_file.safetensors", local)
    assert_loaded(tmp_path / "hub_name.safetensors", local)


def test_offline_empty_cache_names_repo_file_cache_and_ways_out(tmp_path):
    """Weights, or an hf-hub: name's config.json, missing offline: a clear error, no lookup."""
    home = tmp_path / "hf_home"
    never = str(tmp_path / "never.safetensors")
    builds = [[MODEL, True, "TimmBackbone", never], [f"hf-hub:{REPO}", None, "TimmBackbone", never]]
    result = run_offline(BUILD, dict(builds=builds, indices=INDICES), home)
    assert result["attempts"] == []  # HF_HUB_OFFLINE: not even a lookup
    (weights_kind, weights_msg), (config_kind, config_msg) = (b["error"] for b in result["builds"])
    assert weights_kind == config_kind == "FileNotFoundError"
    for part in (
        repr(REPO),
        "'model.safetensors'",
        repr(str(home / "hub")),
        "HF_HUB_OFFLINE",
        "Run once with a network",
        "model.backbone.pretrained=PATH",
        f"hf download {REPO} model.safetensors",
    ):
        assert part in weights_msg, part
    # an hf-hub: model name needs the repo's config.json even to build from scratch
    assert "'config.json'" in config_msg and repr(REPO) in config_msg
    assert "timm's registry name" in config_msg
    assert not Path(never).exists()


def test_config_with_pretrained_true_builds_offline(tmp_path):
    """The quickstart config at toy size on the test ViT, pretrained=True, built by build_model."""
    from vision_mtl.apis import load_config

    weights = random_weights(seed=4)
    populate_cache(tmp_path / "hf_home" / "hub", weights)
    options = dict(TINY_OPTIONS)
    options.update(
        {
            "model.backbone.model_name": MODEL,
            "model.backbone.pretrained": True,
            "model.backbone.out_indices": INDICES,
            "model.backbone.model_kwargs": dict(img_size=(32, 64)),
        }
    )
    cfg = load_config(QUICKSTART, options, work_dir=str(tmp_path / "work"))
    config = tmp_path / "tiny_hub.py"
    cfg.dump(str(config))
    out = tmp_path / "loaded.safetensors"
    result = run_offline(BUILD_CONFIG, dict(config=str(config), out=str(out)), tmp_path / "hf_home")
    assert "error" not in result, result.get("error")
    assert result["attempts"] == []
    assert result["shapes"] == [[1, 64, 2, 4]] * len(INDICES)
    # pos_embed is resampled from timm's 10x10 grid to the config's 2x4: compare the rest
    assert_loaded(out, weights, skip=("pos_embed",))
    assert load_file(str(out))["pos_embed"].shape == (1, 1 + 2 * 4, 64)


@pytest.mark.parametrize(
    ("value", "error", "parts"),
    [
        ("vit_base_patch16_224", ValueError, ["neither an existing file", "hf-hub:<org>/<repo>"]),
        ("hf-hub:no_slash", ValueError, ["is not a Hugging Face repo", "hf-hub:<org>/<repo>"]),
        ("timm/test_vit", FileNotFoundError, ["not found at", "write 'hf-hub:timm/test_vit'"]),
        (3, TypeError, ["pretrained=3 (int)", "expected None or False"]),
    ],
)
def test_invalid_pretrained_values_are_refused_before_any_load(value, error, parts):
    with pytest.raises(error) as err:
        TimmBackbone("test_vit", pretrained=value)
    message = str(err.value)
    assert repr(value) in message or str(value) in message
    for part in parts:
        assert part in message, part


def test_a_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="is a directory; expected a checkpoint file"):
        TimmBackbone("test_vit", pretrained=str(tmp_path))


def test_pretrained_true_without_timm_weights_lists_the_tags():
    with pytest.raises(ValueError) as err:
        TimmBackbone("test_vit.no_such_tag", pretrained=True)
    assert "'test_vit.r160_in1k'" in str(err.value) and "no pretrained weights" in str(err.value)
