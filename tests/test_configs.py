"""Every config under configs/ builds, and its model runs one forward pass on its own data; the
configs follow mmseg's naming and inherit from _base_ files only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT, load_tool
from mmengine.config import Config
from mmengine.registry import DefaultScope
from test_multimae_configs import write_folder

# Fake tensors carry shape, dtype and device but no storage: every op checks and propagates them
# as on CPU without doing the arithmetic (torch.compile and torch.export trace with them).
from torch._subclasses.fake_tensor import FakeTensorMode

from vision_mtl.apis import init_model, load_config
from vision_mtl.datasets import multitask_collate
from vision_mtl.registry import DATASETS, SCOPE

CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.py") if "_base_" not in p.parts)
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
# Old name -> config it stands for: the only configs that inherit a config outside _base_.
ALIASES = {
    "quickstart/baseline_efficientvit-b1_8xb-800_synthscenes-nyud-96x128.py": (
        "quickstart/baseline_efficientvit-b1_1xb8-800_synthscenes-nyud-96x128.py"
    ),
}
# mmseg's {model}_{backbone}_{gpus}xb{batch per GPU}-{schedule}_{dataset}-{size}.py
NAME = re.compile(
    r"(?P<model>[a-z0-9-]+)_(?P<backbone>[a-z0-9-]+)_(?P<gpus>\d+)xb(?P<batch>\d+)"
    r"-(?P<schedule>\d+k?)_(?P<dataset>[a-z-]+)-(?P<size>\d+x\d+)\.py"
)
# Parameters above which a model is built on the meta device and run on fake tensors: ViT-B/16,
# ViT-L/16 and Swin-B at full size take seconds to half a minute per CPU forward pass.
FULL_SIZE = 20_000_000


def config_id(path: Path) -> str:
    return str(path.relative_to(ROOT / "configs"))


@pytest.fixture(scope="session")
def data_roots(tmp_path_factory):
    """Real-layout data written by tools/make_synthscenes.py, for configs of real datasets."""
    nyud = tmp_path_factory.mktemp("synth_nyud")
    load_tool("make_synthscenes").main(
        [
            "--layout",
            "nyud",
            "--out",
            str(nyud),
            "--num",
            "2",
            "--val-num",
            "1",
            "--size",
            "48",
            "64",
        ]
    )
    pascal = tmp_path_factory.mktemp("synth_pascal")
    load_tool("make_synthscenes").main(
        [
            "--layout",
            "pascal",
            "--out",
            str(pascal),
            "--num",
            "2",
            "--val-num",
            "1",
            "--size",
            "48",
            "64",
        ]
    )
    cityscapes = tmp_path_factory.mktemp("synth_cityscapes")
    load_tool("make_synthscenes").main(
        ["--layout", "cityscapes", "--out", str(cityscapes), "--num", "2", "--val-num", "1",
         "--size", "48", "64"]
    )  # fmt: skip
    folder = write_folder(tmp_path_factory.mktemp("pseudo_folder"))
    return {
        "NYUDv2Dataset": nyud,
        "PseudoLabelFolderDataset": folder,
        "PascalContextMTDataset": pascal,
        "CityscapesMTDataset": cityscapes,
    }


def prepared(path: Path, roots: dict, options: dict | None = None):
    """A config pointed at local fixture data, without pretrained files or worker processes."""
    cfg = load_config(path, options)
    backbone = cfg.model.get("backbone") or {}  # MultiMAE pretraining has an encoder instead
    if backbone.get("pretrained"):
        backbone.pretrained = None  # the missing-file error is tested on its own
    for name in LOADERS:
        loader = cfg[name]
        if loader is None:  # pretraining configs have no validation or test loop
            continue
        loader.num_workers, loader.persistent_workers = 0, False
        if loader.dataset.type in roots:
            loader.dataset.data_root = str(roots[loader.dataset.type])
    return cfg


def meta_model(cfg) -> torch.nn.Module:
    """The config's model with parameters on the meta device: built in a fraction of a second."""
    with torch.device("meta"):
        return init_model(cfg, device="meta")


def is_full_size(model: torch.nn.Module) -> bool:
    return sum(p.numel() for p in model.parameters()) > FULL_SIZE


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_builds_and_runs_forward(path: Path, data_roots):
    cfg = prepared(path, data_roots)
    with DefaultScope.overwrite_default_scope(SCOPE):
        dataset = DATASETS.build((cfg.val_dataloader or cfg.train_dataloader).dataset)
    batch = multitask_collate([dataset[0]])
    model = meta_model(cfg)
    # MultiMAE reconstructs its modalities: RGB from the input, the rest from the targets
    outputs = list(getattr(model, "tasks", None) or model.modalities)
    assert set(outputs) - {"rgb"} <= set(dataset.tasks)
    if is_full_size(model):
        # The same predict path on fake CPU tensors: shapes are checked end to end, nothing is
        # computed. .data_preprocessor.to: to_empty does not update the device it moves data to.
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            model.to_empty(device="cpu").data_preprocessor.to("cpu")
            result = model(**model.data_preprocessor(batch, False), mode="predict")[0]
    else:
        model = init_model(cfg, device="cpu")
        with torch.no_grad():
            result = model(**model.data_preprocessor(batch, False), mode="predict")[0]
    assert set(result["pred"]) == set(outputs)
    h, w = batch["meta"][0]["ori_shape"]
    assert all(v.shape[-2:] == (h, w) for v in result["pred"].values())


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_builds_a_runner_with_its_loops(path: Path, tmp_path, data_roots, monkeypatch):
    """Everything the Runner builds lazily: loops, dataloaders, evaluators, optimizer, schedules."""
    from mmengine.runner import Runner

    cfg = prepared(path, data_roots)
    cfg.work_dir = str(tmp_path)
    model = meta_model(cfg)
    if is_full_size(model):
        # None of this reads weight values, so a full-size model gets uninitialised CPU storage:
        # initialising ViT-L/16's 300M parameters alone takes seconds.
        model.to_empty(device="cpu")
        monkeypatch.setattr(Runner, "build_model", lambda self, _: model)
    runner = Runner.from_cfg(cfg)
    loop = runner.build_train_loop(cfg.train_cfg)
    assert loop.max_iters == cfg.train_cfg.max_iters
    runner.build_optim_wrapper(cfg.optim_wrapper)
    if cfg.val_cfg is not None:  # None: a pretraining config without validation
        runner.build_val_loop(cfg.val_cfg)
    if cfg.test_cfg is not None:
        runner.build_test_loop(cfg.test_cfg)
    assert next(iter(loop.dataloader))["inputs"]


def test_print_config_resolves_bases(capsys):
    load_tool("print_config").main([str(CONFIGS[0]), "--cfg-options", "train_cfg.max_iters=7"])
    text = capsys.readouterr().out
    assert "max_iters=7" in text and "_base_" not in text


def test_config_names_follow_mmseg():
    """{model}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset}-{size}, read against the config."""
    wrong = []
    for path in CONFIGS:
        if config_id(path) in ALIASES:
            continue
        match = NAME.fullmatch(path.name)
        if match is None:
            wrong.append(f"{config_id(path)}: not {NAME.pattern}")
            continue
        cfg = Config.fromfile(str(path))
        iters = cfg.train_cfg.max_iters
        schedule = f"{iters // 1000}k" if iters % 1000 == 0 else str(iters)
        train = cfg.train_dataloader.dataset
        size = train.get("image_size") or train.pipeline[0].crop_size
        named = (int(match["batch"]), match["schedule"], match["size"])
        actual = (cfg.train_dataloader.batch_size, schedule, "x".join(map(str, size)))
        if named != actual:
            wrong.append(f"{config_id(path)}: named (batch, schedule, size) {named}, is {actual}")
    assert not wrong, "\n".join(wrong)


def test_configs_inherit_from_base_files_only():
    """One level below _base_: a config names model, dataset, schedule (and runtime) bases and only
    what differs, never another config (the old-name aliases excepted)."""
    wrong = []
    for path in CONFIGS:
        assign = next(
            node
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "_base_"
        )
        bases = ast.literal_eval(assign.value)
        bases = [bases] if isinstance(bases, str) else bases
        outside = [b for b in bases if "_base_" not in (path.parent / b).resolve().parts]
        if config_id(path) in ALIASES:
            assert outside == [f"./{Path(ALIASES[config_id(path)]).name}"], path
        elif outside:
            wrong.append(f"{config_id(path)} inherits {outside}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_is_the_config_it_names(alias):
    configs = ROOT / "configs"
    old = Config.fromfile(str(configs / alias)).to_dict()
    assert old == Config.fromfile(str(configs / ALIASES[alias])).to_dict()
