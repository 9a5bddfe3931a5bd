"""mmengine's Runner with strict checkpoint loading and an error that names what does not fit.

mmengine loads ``load_from`` checkpoints (and resumes) with ``strict=False``: a checkpoint of
another width, decoder or task set loads "successfully", the mismatches go to the log as
warnings, and the test metrics are those of a partly random model. Here every load is strict
unless the caller asks for a partial load, and a checkpoint that does not fit the model stops
the run with one message listing the missing, unexpected and mismatched keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from torch import nn

from vision_mtl.utils import check_checkpoint_file, read_checkpoint, state_dict_mismatch


def _strip_prefixes(state_dict: Mapping, revise_keys: list) -> dict:
    state = dict(state_dict)
    for pattern, replacement in revise_keys:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    return state


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose weights do not fit the model built from the config."""


def check_checkpoint_fits(
    model: torch.nn.Module, checkpoint: Mapping, filename: str, revise_keys: list | None = None
) -> None:
    """Raise :class:`CheckpointMismatchError` naming every key that keeps a strict load from
    succeeding (see :func:`state_dict_mismatch`)."""
    state = checkpoint.get("state_dict", checkpoint)
    problem = state_dict_mismatch(
        model, _strip_prefixes(state, revise_keys or [(r"^module\.", "")])
    )
    if problem is None:
        return
    pruned = (
        "" if "pruning" in (checkpoint.get("meta") or {}) else " (or pruned without its record)"
    )
    raise CheckpointMismatchError(
        f"checkpoint {filename!r} does not fit the model built from the config: {problem}. "
        f"Was it trained with another config — width, decoder type, tasks{pruned}? Use the "
        "config it was trained with, or load the matching weights only with a partial load "
        "(--partial-load / strict=False)."
    )


#: DDP wrappers a model's own wrapper (its ``ddp_wrapper``) replaces
_DDP_WRAPPERS = (
    "MMDistributedDataParallel",
    "CPUDistributedDataParallel",
    "SlimmableDistributedDataParallel",
    "WeightedDistributedDataParallel",
)


class VisionMTLRunner(Runner):
    """mmengine's Runner whose checkpoint loads (``load_from``, resume, test) are strict.

    ``strict_load`` (default ``True``) is the policy; ``False`` is the deliberate partial load
    (e.g. a single-task subset of a multitask checkpoint), whose skipped keys mmengine logs.
    """

    strict_load: bool = True

    def build_model(self, model):
        """Build through :func:`vision_mtl.models.builder.build_model` (pruning records applied)."""
        from vision_mtl.models.builder import build_model

        return build_model(model)

    def wrap_model(self, model_wrapper_cfg: dict | None, model: nn.Module) -> nn.Module:
        """mmengine's wrapping; a model with a train step of its own (the sandwich rule of a
        slimmable model, a weighting other than ``Fixed``) gets the DDP wrapper that runs it.

        Raises:
            ValueError: such a model with another wrapper than a DDP one configured.
        """
        if self.distributed and getattr(model, "ddp_wrapper", None) and not is_model_wrapper(model):
            cfg = dict(model_wrapper_cfg or {})
            given = str(cfg.get("type", "MMDistributedDataParallel")).rsplit(".", 1)[-1]
            if given not in _DDP_WRAPPERS:
                raise ValueError(
                    f"model_wrapper_cfg.type={given!r}: this model trains under DDP with "
                    f"{model.ddp_wrapper} (its own train step); other wrappers are not supported"
                )
            cfg["type"] = model.ddp_wrapper
            model_wrapper_cfg = cfg
        return super().wrap_model(model_wrapper_cfg, model)

    def load_checkpoint(
        self,
        filename: str,
        map_location: str = "cpu",
        strict: bool | None = None,
        revise_keys: list | None = None,
    ) -> dict:
        """Load ``filename`` into the model; strict unless ``strict_load`` is ``False``."""
        strict = self.strict_load if strict is None else strict
        revise_keys = [(r"^module\.", "")] if revise_keys is None else revise_keys
        if strict:  # read_checkpoint checks the file too
            model = self.model.module if is_model_wrapper(self.model) else self.model
            check_checkpoint_fits(
                model, read_checkpoint(filename, mmap=True), filename, revise_keys
            )
        else:
            check_checkpoint_file(filename)
        return super().load_checkpoint(filename, map_location, strict, revise_keys)
