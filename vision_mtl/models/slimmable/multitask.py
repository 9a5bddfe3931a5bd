"""A multitask model trained slimmable from its config: ``type="SlimmableMultiTaskModel"``.

The config's model is an ordinary :class:`~vision_mtl.models.MultiTaskModel` plus three keys::

    model = dict(
        type="SlimmableMultiTaskModel",
        backbone=..., decoder=..., tasks=..., head=...,      # as for MultiTaskModel
        widths=(0.25, 0.5, 0.75, 1.0),                       # offered by every slot
        sandwich=dict(num_random=2, distill_weight=1.0, cikd_weight=1.0, seed=0),
        eval_configuration=None,                             # widest; or dict(encoder=0.5, ...)
    )

It is built as the plain model, then converted in place (:func:`.model.make_model_slimmable`),
so its state dict has the plain model's keys plus the per-width batch-norm statistics. Its
``train_step`` is the sandwich rule (:func:`.sandwich.sandwich_train_step`); under DDP the runner
wraps it in :class:`~vision_mtl.engine.distributed.SlimmableDistributedDataParallel`, whose
train step is the same function, so every rank trains the same configurations. Validation and
``tools/test.py`` run ``eval_configuration``.

**Deployed configurations.** A configuration chosen after training (``tools/search_widths.py``)
is deployed as a plain static network whose pruning record holds the configuration
(:func:`.static.width_record`). When ``build_model`` meets such a record in a slimmable config, it
builds the plain model of :meth:`SlimmableMultiTaskModel.plain_config` and applies the record, so
the slimmable config serves its static checkpoints in ``tools/test.py``, ``tools/export.py`` and
``init_model`` unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from vision_mtl.models.multitask import MultiTaskModel
from vision_mtl.models.slimmable.convert import DEFAULT_WIDTHS
from vision_mtl.models.slimmable.layers import SwitchableBatchNorm2d
from vision_mtl.models.slimmable.model import (
    configuration,
    make_model_slimmable,
    set_configuration,
)
from vision_mtl.models.slimmable.sandwich import sandwich_train_step
from vision_mtl.registry import MODELS

#: the ``sandwich`` settings and their defaults (see :func:`.sandwich.sandwich_train_step`)
SANDWICH_DEFAULTS = dict(
    num_random=2, distill_weight=0.0, cikd_weight=0.0, seed=0, others_weight=1.0, num_uniform=0
)
#: model keys a slimmable config adds to a MultiTaskModel config
SLIMMABLE_KEYS = ("widths", "sandwich", "eval_configuration")


def check_sandwich(settings: Mapping | None) -> dict:
    """The sandwich settings with defaults filled in; unknown keys and bad values refused."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(SANDWICH_DEFAULTS))
    if unknown:
        raise ValueError(
            f"model.sandwich: unknown key(s) {unknown}; allowed: {sorted(SANDWICH_DEFAULTS)}"
        )
    out = {**SANDWICH_DEFAULTS, **settings}
    for key in ("num_random", "num_uniform"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < 0:
            raise ValueError(f"model.sandwich.{key} must be an int >= 0, got {out[key]!r}")
    for key in ("distill_weight", "cikd_weight", "others_weight"):
        value = out[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"model.sandwich.{key} must be a number >= 0, got {value!r}")
        out[key] = float(value)
    if not isinstance(out["seed"], int):
        raise ValueError(f"model.sandwich.seed must be an int, got {out['seed']!r}")
    return out


@MODELS.register_module()
class SlimmableMultiTaskModel(MultiTaskModel):
    """A :class:`MultiTaskModel` whose widths are chosen per forward, trained by the sandwich rule.

    Args:
        *args: as for :class:`MultiTaskModel`.
        widths: the widths every slot offers (and trains); only these can be chosen later.
        sandwich: settings of the training step: ``num_random`` per-slot random and
            ``num_uniform`` uniform configurations besides the widest and narrowest,
            ``distill_weight`` (task outputs toward the widest
            configuration's), ``cikd_weight`` (encoder features toward the widest encoder's),
            ``others_weight`` (factor on every non-widest configuration's loss) and the
            ``seed`` of the random configurations.
        eval_configuration: the configuration of ``predict``/``tensor`` forwards (validation,
            testing); ``None`` is the widest.
        **kwargs: as for :class:`MultiTaskModel`.
    """

    #: the DDP wrapper VisionMTLRunner uses for this model (its train step is the sandwich rule)
    ddp_wrapper = "vision_mtl.SlimmableDistributedDataParallel"

    def __init__(
        self,
        *args,
        widths: Sequence[float] = DEFAULT_WIDTHS,
        sandwich: Mapping | None = None,
        eval_configuration: Mapping[str, float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not self.weighting.is_fixed:
            raise ValueError(
                f"model.weighting={type(self.weighting).__name__}: a slimmable model trains with "
                "the sandwich rule, which sums every configuration's losses with fixed weights; "
                "other weightings are not supported for it"
            )
        self.sandwich = check_sandwich(sandwich)
        make_model_slimmable(self, widths)
        if eval_configuration is not None:
            try:
                set_configuration(self, eval_configuration)
            except ValueError as err:
                raise ValueError(f"model.eval_configuration: {err}") from None
        self.eval_configuration = dict(self.decoder.slim_config)

    @staticmethod
    def plain_config(cfg: Mapping) -> dict:
        """The :class:`MultiTaskModel` config of the same architecture (slimmable keys dropped)."""
        plain = {k: v for k, v in dict(cfg).items() if k not in SLIMMABLE_KEYS}
        plain["type"] = "MultiTaskModel"
        return plain

    def train_step(self, data: dict | tuple | list, optim_wrapper: OptimWrapper) -> dict:
        """One sandwich-rule iteration (several configurations, one optimizer step)."""
        return self.sandwich_step(self, data, optim_wrapper)

    def sandwich_step(
        self, runner_model: nn.Module, data: dict | tuple | list, optim_wrapper: OptimWrapper
    ) -> dict:
        """The sandwich step run through ``runner_model``: this model or its DDP wrapper."""
        logs = sandwich_train_step(runner_model, data, optim_wrapper, **self.sandwich)
        return {k: torch.tensor(v) for k, v in logs.items()}

    def forward(self, inputs, targets=None, meta=None, mode: str = "tensor"):
        """As :meth:`MultiTaskModel.forward`; ``predict`` runs at ``eval_configuration``."""
        if mode != "predict":
            return super().forward(inputs, targets, meta, mode)
        with configuration(self, self.eval_configuration):
            return super().forward(inputs, targets, meta, mode)


@torch.no_grad()
def recalibrate_batch_norms(
    model: nn.Module, config: Mapping[str, float], batches: Iterable[torch.Tensor]
) -> int:
    """Re-estimate the running statistics every batch norm uses at ``config``.

    Switchable batch norms keep statistics per width of their own slot, accumulated during
    sandwich training over configurations whose *other* slots varied (a head's statistics at
    width 0.5 saw decoder features of every width). Before a configuration is evaluated or
    deployed, its statistics are recomputed as the exact average over ``batches`` (momentum
    ``None``), which is the post-hoc recalibration of slimmable networks (Yu et al. 2019).

    Args:
        model: a converted model (left in its previous mode and configuration).
        config: the configuration to calibrate.
        batches: normalized input tensors (B×3×H×W), e.g. a few training batches.

    Returns:
        The number of batches used.

    Raises:
        ValueError: no batches were given.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("recalibrate_batch_norms needs at least one batch")
    norms = [m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)]
    was_training = model.training
    momenta = [m.momentum for m in norms]
    count = 0
    with configuration(model, config):
        for norm in norms:
            stats = norm.stats_at(norm.width)
            if stats is not None:
                stats[0].zero_()
                stats[1].fill_(1.0)
                stats[2].zero_()
            norm.momentum = None
        try:
            model.train()
            for inputs in batches:
                model(inputs, mode="tensor")
                count += 1
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
            model.train(was_training)
    return count
