"""Any timm model as a multi-level feature extractor that reports its channels and strides.

timm gives every modern model ``forward_intermediates`` (ViT, Swin, ConvNeXt, ResNet, ...): for a
ViT it returns the tokens of chosen blocks already reshaped into maps, for hierarchical models the
stage outputs. Models without it fall back to ``features_only=True``. Decoders read
:attr:`TimmBackbone.out_channels` and :attr:`TimmBackbone.out_strides` and size themselves, so no
config hard-codes a channel count.

Pretrained weights are resolved as timm users expect (docs/pretrained_weights.md):

* ``pretrained=True`` hands the model name (with its tag, e.g.
  ``vit_base_patch16_384.augreg_in21k_ft_in1k``, or an ``hf-hub:org/repo`` name) to
  ``timm.create_model(..., pretrained=True)``: timm fetches the weights through ``huggingface_hub``
  into the Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``) and reads them from there offline
  (``HF_HUB_OFFLINE=1``);
* ``pretrained="hf-hub:org/repo"`` loads that repo's timm weights into ``model_name``'s
  architecture (a weight tag pinned without renaming the model);
* any other string is a local file, which needs no network and overrides the hub. A MultiMAE
  checkpoint (ours or the official release) is recognized by its key names and mapped onto the ViT
  (:func:`vision_mtl.models.multimae.checkpoint.load_multimae_into_vit`).

A weight that is neither cached nor downloadable stops with an error naming the repo, the file,
the cache directory and the two ways out (run once with a network, or a local file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import is_offline_mode, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError
from torch import nn

from vision_mtl.models.decoders.layers import channel_norm
from vision_mtl.models.multimae.checkpoint import is_multimae_checkpoint, load_multimae_into_vit
from vision_mtl.registry import MODELS

#: the prefix of a Hugging Face repo, as in timm's model names (``hf-hub:timm/resnet18.a1_in1k``)
HUB_PREFIX = "hf-hub:"
# org/name, optionally @revision: what huggingface_hub accepts as a repo id
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[^\s@]+)?")
# extensions that make a string a weights file rather than a misspelt hub form
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".tar", ".npz")
_SAFE_WEIGHTS = "model.safetensors"  # the file timm reads first from a hub repo
_EXPECTED = (
    "expected None or False (train from scratch), True (timm's weights for model_name, fetched "
    "through the Hugging Face cache), 'hf-hub:<org>/<repo>[@revision]' (that repo's timm "
    "weights), or the path of a local checkpoint (.safetensors, .pth, .bin)"
)


@dataclass(frozen=True)
class PretrainedSource:
    """Where a backbone's weights come from, resolved from ``pretrained`` and ``model_name``.

    Attributes:
        kind: ``"none"`` (scratch), ``"timm"`` (``pretrained=True``), ``"hub"``
            (``pretrained="hf-hub:..."``) or ``"file"`` (a local checkpoint).
        file: the local checkpoint (``kind == "file"``).
        repo: the Hugging Face repo id the weights come from (``org/name[@revision]``), when they
            come from the hub; ``None`` otherwise (or when timm has a plain URL instead).
        filename: the file timm reads from ``repo``.
    """

    kind: str
    file: str | None = None
    repo: str | None = None
    filename: str = _SAFE_WEIGHTS


def _weight_hint(model_name: str) -> str:
    """Name the timm weight a user should download for ``model_name``, as timm knows it."""
    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # an unknown tag: create_model reports it better
        cfg = None
    if cfg is None:
        return f"the timm weights for {model_name!r}"
    hub = getattr(cfg, "hf_hub_id", None)
    if hub:
        return (
            f"'model.safetensors' from the Hugging Face repo {hub!r} (timm weight {model_name!r})"
        )
    url = getattr(cfg, "url", None)
    return f"{url} (timm weight {model_name!r})" if url else f"the timm weights for {model_name!r}"


def _timm_source(model_name: str) -> PretrainedSource:
    """What ``timm.create_model(model_name, pretrained=True)`` would fetch; checked up front.

    timm only logs a warning for some models without weights and trains them from scratch, so a
    registry name without a weight source is an error here, listing the tags that have one.
    """
    if model_name.startswith(HUB_PREFIX):
        return PretrainedSource("timm", repo=model_name[len(HUB_PREFIX) :])
    if ":" in model_name or not timm.is_model(model_name):
        return PretrainedSource("timm")  # local-dir: or an unknown name: timm reports it
    try:
        cfg = timm.models.get_pretrained_cfg(model_name, allow_unregistered=False)
    except RuntimeError:  # a tag timm does not know
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        arch = model_name.split(".", 1)[0]
        tags = timm.list_pretrained(f"{arch}.*")
        known = f"timm's weights for {arch!r} are {tags}" if tags else f"timm has none for {arch!r}"
        raise ValueError(
            f"backbone {model_name!r}: pretrained=True, but timm has no pretrained weights named "
            f"{model_name!r} ({known}); set model_name to one of them, pretrained to a local "
            "file, or pretrained=None"
        )
    return PretrainedSource(
        "timm", repo=cfg.hf_hub_id, filename=cfg.hf_hub_filename or _SAFE_WEIGHTS
    )


def resolve_pretrained(pretrained: object, model_name: str) -> PretrainedSource:
    """Validate a backbone's ``pretrained`` value and say where its weights come from.

    Args:
        pretrained: ``None``/``False``, ``True``, ``"hf-hub:org/repo[@revision]"`` or the path
            of a local checkpoint (``str`` or ``os.PathLike``; ``~`` is expanded).
        model_name: the backbone's timm model name.

    Returns:
        The resolved :class:`PretrainedSource`; nothing is downloaded or read yet.

    Raises:
        FileNotFoundError: a path (it has a weights extension or a directory part) with no file,
            naming the path and the timm weight to download.
        ValueError: a string that is neither a file nor a hub form, a malformed hub form, or
            ``True`` for a model timm has no weights for.
        TypeError: a value of another type.
    """
    if pretrained is None or pretrained is False:
        return PretrainedSource("none")
    if pretrained is True:
        return _timm_source(model_name)
    if not isinstance(pretrained, (str, os.PathLike)) or isinstance(pretrained, bytes):
        raise TypeError(
            f"backbone {model_name!r}: pretrained={pretrained!r} ({type(pretrained).__name__}); "
            f"{_EXPECTED}"
        )
    value = os.fspath(pretrained)
    if value.startswith(HUB_PREFIX):
        repo = value[len(HUB_PREFIX) :]
        if not _REPO_ID.fullmatch(repo):
            raise ValueError(
                f"backbone {model_name!r}: pretrained={value!r} is not a Hugging Face repo: "
                "expected 'hf-hub:<org>/<repo>[@revision]', e.g. "
                "'hf-hub:timm/vit_base_patch16_384.augreg_in21k_ft_in1k'"
            )
        return PretrainedSource("hub", repo=repo)
    path = os.path.expanduser(value)
    if os.path.isfile(path):
        return PretrainedSource("file", file=path)
    if os.path.isdir(path):
        raise ValueError(
            f"backbone {model_name!r}: pretrained={value!r} is a directory; expected a checkpoint "
            "file inside it (.safetensors, .pth, .bin)"
        )
    looks_like_path = (
        path.lower().endswith(_WEIGHT_SUFFIXES) or os.sep in path or value.startswith((".", "~"))
    )
    if looks_like_path:
        repo_hint = ""
        if _REPO_ID.fullmatch(value) and not value.lower().endswith(_WEIGHT_SUFFIXES):
            repo_hint = f" If {value!r} is a Hugging Face repo, write 'hf-hub:{value}'."
        raise FileNotFoundError(
            f"pretrained weights for backbone {model_name!r} not found at {path!r}. "
            f"Download {_weight_hint(model_name)} and put the file at that path, set "
            "model.backbone.pretrained=True to let timm fetch it into the Hugging Face cache, or "
            f"set model.backbone.pretrained=None to train from scratch.{repo_hint}"
        )
    tag_hint = ""
    if timm.is_model(value):
        try:
            hub = _timm_source(value).repo
        except ValueError:  # no weights for that name
            hub = None
        tag_hint = f" {value!r} is a timm model name: set model_name={value!r} and pretrained=True"
        tag_hint += (
            f", or pretrained='hf-hub:{hub}' (its weights, same architecture)." if hub else "."
        )
    raise ValueError(
        f"backbone {model_name!r}: pretrained={value!r} is neither an existing file nor a "
        f"Hugging Face repo; {_EXPECTED}.{tag_hint}"
    )


def _not_cached_message(model_name: str, source: PretrainedSource) -> str:
    """The error text when the hub cannot be reached and the cache lacks a file timm needs."""
    repo = source.repo
    if repo is None and model_name.startswith(HUB_PREFIX):
        repo = model_name[len(HUB_PREFIX) :]
    cache = hf_constants.HF_HUB_CACHE
    reason = "HF_HUB_OFFLINE is set" if is_offline_mode() else "the Hub could not be reached"
    if repo is None:  # defensive: only hub lookups raise LocalEntryNotFoundError
        return (
            f"backbone {model_name!r}: a file is missing from the Hugging Face cache {cache!r} "
            f"and {reason}"
        )
    repo_id, _, revision = repo.partition("@")
    wanted = []
    if model_name.startswith(HUB_PREFIX):
        wanted.append("config.json")  # timm builds an hf-hub: model from the repo's config
    if source.kind in ("timm", "hub"):
        wanted.append(source.filename)
    missing = next(
        (
            f
            for f in wanted
            if not isinstance(try_to_load_from_cache(repo_id, f, revision=revision or None), str)
        ),
        wanted[-1] if wanted else "config.json",
    )
    if missing == "config.json":
        local = (
            "or build the model from timm's registry name (not hf-hub:) with the weights file at "
            "a local path: model.backbone.pretrained=PATH"
        )
    else:
        local = (
            f"or download it elsewhere (`hf download {repo_id} {missing} --local-dir DIR`), put "
            "it at a local path and set model.backbone.pretrained=PATH"
        )
    return (
        f"pretrained weights for backbone {model_name!r}: {missing!r} of the Hugging Face repo "
        f"{repo!r} is not in the Hugging Face cache {cache!r} and {reason}. Run once with a "
        "network (without HF_HUB_OFFLINE; timm downloads it into that cache, which HF_HOME or "
        f"HF_HUB_CACHE choose), {local}."
    )


def _create(model_name: str, source: PretrainedSource, kwargs: dict) -> nn.Module:
    """``timm.create_model`` with the weights of ``source``; hub and fit errors made clear."""
    try:
        return timm.create_model(model_name, **kwargs)
    except LocalEntryNotFoundError as err:  # offline or no network, and not in the cache
        raise FileNotFoundError(_not_cached_message(model_name, source)) from err
    except RuntimeError as err:  # torch's load_state_dict: missing/unexpected/shape keys
        if not kwargs.get("pretrained"):  # not loading weights: a construction error
            raise
        what = repr(source.file) if source.kind == "file" else f"of {source.repo or model_name!r}"
        raise ValueError(
            f"pretrained weights {what} do not fit backbone {model_name!r}: {err}"
        ) from err


@MODELS.register_module()
class TimmBackbone(nn.Module):
    """Wrap a timm model so it returns a list of feature maps (B×C_i×H_i×W_i).

    Args:
        model_name: any name ``timm.create_model`` accepts, e.g. ``vit_base_patch16_224``,
            ``swin_tiny_patch4_window7_224``, ``resnet50``; with a weight tag
            (``vit_base_patch16_384.augreg_in21k_ft_in1k``) or as a hub repo
            (``hf-hub:timm/...``, whose ``config.json`` timm reads even without weights).
        out_indices: which blocks (ViT) or stages (hierarchical models) to return. Negative
            indices count from the end. ``None`` returns the last four.
        pretrained: where the weights come from (:func:`resolve_pretrained` validates it):

            * ``None`` or ``False``: train from scratch.
            * ``True``: timm's weights for ``model_name`` (its tag, else timm's default tag)
              through ``timm.create_model(pretrained=True)``, i.e. ``huggingface_hub`` and its
              cache; offline (``HF_HUB_OFFLINE=1``) the cache must hold them.
            * ``"hf-hub:org/repo[@revision]"``: that repo's timm weights in ``model_name``'s
              architecture, through the same cache.
            * a path (``.safetensors``, ``.pth``/``.bin``): a local checkpoint, no network; it
              overrides the hub. Loaded with timm's own filtering (position-embedding resizing,
              head removal). A **MultiMAE checkpoint** — ours (an mmengine ``.pth`` whose
              ``state_dict`` has the ``global_token``/``adapters.*`` keys of
              :class:`~vision_mtl.models.multimae.MultiMAE`) or the official release (``model``
              with ``global_tokens``/``input_adapters.*``) — is detected by its keys and loaded
              strictly with :func:`~vision_mtl.models.multimae.checkpoint.load_multimae_into_vit`
              into the full ViT before its final norm is pruned (``pos_embed`` made for the
              ViT's grid); a mismatch raises a ``ValueError`` naming the file and the keys.

            Weights that do not fit the model raise a ``ValueError`` naming their source; hub
            weights missing from the cache when offline a ``FileNotFoundError`` naming the repo,
            file and cache directory.
        model_kwargs: extra keyword arguments for ``timm.create_model`` (``img_size``,
            ``patch_size``, ``embed_dim``, ``depth``, ``drop_path_rate``, ...).
        norm_last: apply the model's final norm to the last returned level, as InvPT's ViT
            does (its deepest feature is the normalized output; the shallower ones are raw).
            Needs a model with a ``norm`` layer whose last returned level is its last block.

    Attributes:
        pretrained_source: the resolved :class:`PretrainedSource`.
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] | None = None,
        pretrained: bool | str | os.PathLike | None = None,
        model_kwargs: dict | None = None,
        norm_last: bool = False,
    ) -> None:
        super().__init__()
        kwargs = dict(model_kwargs or {})
        if "pretrained" in kwargs:
            raise ValueError(
                f"backbone {model_name!r}: set model.backbone.pretrained, not "
                "model.backbone.model_kwargs.pretrained"
            )
        source = resolve_pretrained(pretrained, model_name)
        multimae_path = None
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        if source.kind == "file":
            if is_multimae_checkpoint(source.file):
                multimae_path = source.file
            else:
                # source=None: an hf-hub: model name's config says 'hf-hub', which timm would
                # otherwise prefer to the file
                overlay.update(file=source.file, source=None)
        elif source.kind == "hub":
            overlay.update(hf_hub_id=source.repo, hf_hub_filename=None, source="hf-hub")
        if overlay:
            kwargs["pretrained_cfg_overlay"] = overlay
        if source.kind != "none" and multimae_path is None:
            kwargs["pretrained"] = True
        self.model_name = model_name
        self.pretrained_source = source
        self.model = _create(model_name, source, dict(kwargs, num_classes=0))
        if multimae_path is not None:
            load_multimae_into_vit(self.model, multimae_path, strict=True)
        self.uses_intermediates = hasattr(self.model, "forward_intermediates")
        info = list(self.model.feature_info)
        indices = _resolve_indices(out_indices, len(info), model_name)
        self.out_indices = indices
        self.norm_last = bool(norm_last)
        if self.norm_last:
            self._check_norm_last(indices, len(info))
        if self.uses_intermediates:
            # Heads and final norms are unused by dense prediction; pruning them keeps DDP from
            # complaining about parameters that receive no gradient.
            self.model.prune_intermediate_layers(
                indices, prune_norm=not self.norm_last, prune_head=True
            )
        else:
            self.model = _create(
                model_name, source, dict(kwargs, features_only=True, out_indices=indices)
            )
        self.out_channels = [int(info[i]["num_chs"]) for i in indices]
        self.out_strides = [int(info[i]["reduction"]) for i in indices]

    def _check_norm_last(self, indices: list[int], levels: int) -> None:
        norm = getattr(self.model, "norm", None)
        if not self.uses_intermediates or not isinstance(norm, nn.LayerNorm):
            raise ValueError(
                f"backbone {self.model_name!r}: norm_last=True needs a model with a final "
                f"LayerNorm 'norm' and forward_intermediates, got {type(norm).__name__}"
            )
        if indices[-1] != levels - 1:
            raise ValueError(
                f"backbone {self.model_name!r}: norm_last=True normalizes the last block's "
                f"output, but out_indices end at {indices[-1]} of {levels} blocks"
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at the chosen levels, NCHW."""
        if self.uses_intermediates:
            levels = list(
                self.model.forward_intermediates(
                    x, indices=self.out_indices, intermediates_only=True
                )
            )
            if self.norm_last:
                levels[-1] = channel_norm(self.model.norm, levels[-1])
            return levels
        return list(self.model(x))


def _resolve_indices(out_indices: Sequence[int] | None, num_levels: int, name: str) -> list[int]:
    """Turn (possibly negative) level indices into absolute ones, checking the range."""
    requested = list(out_indices) if out_indices is not None else [-4, -3, -2, -1]
    indices = [i + num_levels if i < 0 else i for i in requested]
    if not indices or not all(0 <= i < num_levels for i in indices):
        raise ValueError(
            f"out_indices {requested} outside the {num_levels} feature levels of {name!r}"
        )
    return indices
