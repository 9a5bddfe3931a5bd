"""Sandwich-rule training of a slimmable multitask model (one optimizer step per iteration).

Every iteration trains several width configurations (:mod:`.model`) of the one shared parameter
set: the widest, the narrowest, ``num_random`` random ones (each slot's width drawn from the
widths it offers) and ``num_uniform`` uniform ones (one width drawn for every slot, among the
intermediate widths all slots offer: US-Nets' original rule, which the per-slot draws almost
never produce, (1/4)^6 for six slots of four widths). Each configuration's loss is backpropagated on its own, so only one
configuration's graph is alive at a time, and the gradients accumulate in the parameters' ``.grad``;
one optimizer step then applies their sum (the sandwich rule of US-Nets, Yu & Huang 2019).

Optional terms pull the narrower configurations toward the widest one, whose outputs and features
are detached and serve as soft targets (in-place distillation):

* ``distill_weight`` — task outputs (the heads' raw outputs): KL divergence of the softmax for
  softmax tasks (semseg, saliency, human parts), binary KL for sigmoid tasks (edge), L1 for maps
  (depth, normals);
* ``cikd_weight`` — CIKD, feature distillation over the nested channels: each level of the
  narrower backbone output has the first k of the widest one's channels, and is pulled toward
  those channels of the detached widest features by mean squared error.

Both are exactly zero at the widest configuration and off by default.

**Random configurations and DDP.** Every rank must train the same configurations, or the
gradients averaged by DDP mix different sub-networks. The random draws therefore come from a
``torch.Generator`` seeded from a base seed and the iteration number
(:func:`sandwich_generator`), never from the global random state, which data augmentation
advances differently per rank. Without an explicit generator the iteration is read from
mmengine's ``MessageHub`` (``iter``, which the train loop updates identically on every rank).

**Optimizer wrapper.** The step calls ``optim_wrapper.backward`` once per configuration and
``optim_wrapper.step`` and ``zero_grad`` once, so a
:class:`~vision_mtl.engine.optim.GuardedOptimWrapper` checks the summed gradient before the update
and AMP wrappers scale each loss. Gradient accumulation over iterations (``accumulative_counts``
> 1) is refused: its counting assumes one backward pass per iteration. Under DDP
(``MMDistributedDataParallel``) all configurations but the last run in ``no_sync()``, so
gradients are reduced once, after the last backward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from torch import nn

from vision_mtl.models.seeding import iteration_generator
from vision_mtl.models.slimmable.model import (
    configuration,
    full_configuration,
    narrowest_configuration,
    slot_widths,
)
from vision_mtl.tasks import get_task

_SOFTMAX_RULES = ("argmax", "softmax_fg")


def sandwich_generator(seed: int = 0, iteration: int | None = None) -> torch.Generator:
    """A CPU generator for one iteration's random configurations, equal on every rank
    (:func:`vision_mtl.models.seeding.iteration_generator`: ``None`` reads the MessageHub's
    iteration)."""
    return iteration_generator(seed, iteration)


def sample_configurations(
    model: nn.Module, num_random: int, generator: torch.Generator, num_uniform: int = 0
) -> list[tuple[str, dict[str, float]]]:
    """The configurations of one sandwich step, named: ``max``, ``min``, ``rand0``, ...,
    ``uni0``, ...

    Per-slot random configurations draw slots in sorted name order, each uniformly from the
    widths it offers; then each uniform configuration draws one width from the widths every
    slot offers, except the widest and narrowest of them (trained every step anyway) when
    others remain. The result depends only on the model's slots and the generator's state.
    """
    if num_random < 0:
        raise ValueError(f"num_random must be >= 0, got {num_random}")
    if num_uniform < 0:
        raise ValueError(f"num_uniform must be >= 0, got {num_uniform}")
    offered = slot_widths(model)
    configs = [("max", full_configuration(model)), ("min", narrowest_configuration(model))]
    for i in range(num_random):
        config = {}
        for slot in sorted(offered):
            widths = offered[slot]
            config[slot] = widths[int(torch.randint(len(widths), (1,), generator=generator))]
        configs.append((f"rand{i}", config))
    if num_uniform:
        common = sorted(set.intersection(*(set(w) for w in offered.values())))
        if not common:
            raise ValueError(f"num_uniform needs a width every slot offers; slots offer {offered}")
        middle = common[1:-1] or common
        for i in range(num_uniform):
            width = middle[int(torch.randint(len(middle), (1,), generator=generator))]
            configs.append((f"uni{i}", dict.fromkeys(offered, width)))
    return configs


def distillation_loss(
    student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Sum over tasks of the distance of the student's raw outputs to the teacher's.

    Softmax tasks use KL(teacher ‖ student) per pixel, sigmoid tasks the binary KL, map tasks
    L1; each is averaged over pixels. ``teacher`` must be detached. Zero when they are equal.
    """
    total = torch.zeros((), device=next(iter(student.values())).device)
    for task, out in student.items():
        target = teacher[task]
        rule = get_task(task).decode
        if rule in _SOFTMAX_RULES:
            log_p = F.log_softmax(out.float(), dim=1)
            log_q = F.log_softmax(target.float(), dim=1)
            term = (log_q.exp() * (log_q - log_p)).sum(1).mean()
        elif rule == "sigmoid":
            q = torch.sigmoid(target.float())
            term = F.binary_cross_entropy_with_logits(out.float(), q) - (
                F.binary_cross_entropy_with_logits(target.float(), q)
            )
        else:
            term = F.l1_loss(out.float(), target.float())
        total = total + term
    return total


def cikd_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over levels of the MSE between student features and the teacher's first channels.

    Each student level has k ≤ C channels; it is compared with channels ``[:k]`` of the
    (detached) teacher level, which a slimmable backbone computes from a superset of weights.
    """
    terms = [F.mse_loss(s.float(), t[:, : s.shape[1]].float()) for s, t in zip(student, teacher)]
    return torch.stack(terms).mean()


class _Capture:
    """Forward hooks keeping the backbone's features and each head's output of a forward."""

    def __init__(self, model: nn.Module) -> None:
        self.features: list[torch.Tensor] = []
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [model.backbone.register_forward_hook(self._features)]
        for task, head in model.heads.items():
            self.handles.append(head.register_forward_hook(self._output(task)))

    def _features(self, module: nn.Module, args: tuple, out: Sequence[torch.Tensor]) -> None:
        self.features = list(out)

    def _output(self, task: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self.outputs[task] = out

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def sandwich_train_step(
    model: nn.Module,
    data: dict | tuple | list,
    optim_wrapper: OptimWrapper,
    num_random: int = 2,
    generator: torch.Generator | None = None,
    distill_weight: float = 0.0,
    cikd_weight: float = 0.0,
    seed: int = 0,
    others_weight: float = 1.0,
    num_uniform: int = 0,
) -> dict[str, float]:
    """One sandwich-rule training iteration: several configurations, one optimizer step.

    Args:
        model: a ``MultiTaskModel`` converted by ``make_model_slimmable``, or an mmengine
            DDP wrapper of one (``.module``); its configuration is restored afterwards.
        data: a batch as the dataloader yields it (run through the model's data preprocessor).
        optim_wrapper: an mmengine ``OptimWrapper`` (e.g. ``GuardedOptimWrapper``) without
            gradient accumulation.
        num_random: random configurations besides the widest and the narrowest.
        generator: source of the random configurations; ``None`` uses
            ``sandwich_generator(seed)`` at the MessageHub's iteration (the same on every rank).
        distill_weight: weight of the output distillation toward the widest configuration.
        cikd_weight: weight of the feature (CIKD) distillation toward the widest encoder.
        seed: base seed of the default generator.
        others_weight: factor on the whole loss (task, distillation and CIKD terms) of every
            configuration but the widest. Adam normalizes the summed gradient, so with 1.0 the
            widest configuration steers only about ``1 / (2 + num_random + num_uniform)`` of each
            update; ``1 / (1 + num_random + num_uniform)`` gives it as much weight as all the
            others together.
        num_uniform: uniform configurations (one intermediate width for every slot) besides
            the random ones.

    The step's named configurations are left on the model as ``sandwich_configurations``.

    Returns:
        Log variables (floats): ``loss`` (sum over configurations), the widest configuration's
        ``loss_<task>`` entries, and ``sandwich/<name>/loss`` (plus ``/distill`` and ``/cikd``
        when their weight is non-zero) for every configuration ``max``, ``min``, ``rand<i>``.

    Raises:
        ValueError: gradient accumulation is configured, or ``num_random`` is negative.
        FloatingPointError: a non-finite loss (``parse_losses``) or gradient (guarded step);
            the optimizer does not step then.
    """
    if getattr(optim_wrapper, "_accumulative_counts", 1) != 1:
        raise ValueError("sandwich_train_step does not support accumulative_counts > 1")
    inner = getattr(model, "module", model)  # the MultiTaskModel inside a DDP wrapper
    if generator is None:
        generator = sandwich_generator(seed)
    configs = sample_configurations(inner, num_random, generator, num_uniform)
    inner.sandwich_configurations = configs  # what this step trained, for inspection and tests
    with optim_wrapper.optim_context(inner):
        data = inner.data_preprocessor(data, True)
    no_sync = getattr(model, "no_sync", None)

    log: dict[str, float] = {}
    total = 0.0
    teacher_outputs: dict[str, torch.Tensor] = {}
    teacher_features: list[torch.Tensor] = []
    capture = _Capture(inner)
    try:
        for index, (name, config) in enumerate(configs):
            last = index == len(configs) - 1
            sync = nullcontext() if last or no_sync is None else no_sync()
            with configuration(inner, config), sync:
                with optim_wrapper.optim_context(inner):
                    losses = _forward(model, data)
                loss, log_vars = inner.parse_losses(losses)
                if index == 0:
                    teacher_outputs = {t: v.detach() for t, v in capture.outputs.items()}
                    teacher_features = [f.detach() for f in capture.features]
                    log.update({k: float(v) for k, v in log_vars.items() if k != "loss"})
                if distill_weight:
                    distill = distillation_loss(capture.outputs, teacher_outputs)
                    loss = loss + distill_weight * distill
                    log[f"sandwich/{name}/distill"] = float(distill.detach())
                if cikd_weight:
                    cikd = cikd_loss(capture.features, teacher_features)
                    loss = loss + cikd_weight * cikd
                    log[f"sandwich/{name}/cikd"] = float(cikd.detach())
                if index:
                    loss = others_weight * loss
                optim_wrapper.backward(optim_wrapper.scale_loss(loss))
            value = float(loss.detach())
            log[f"sandwich/{name}/loss"] = value
            total += value
    finally:
        capture.remove()
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    return {"loss": total, **log}


def _forward(model: nn.Module, data: dict | tuple | list) -> dict[str, torch.Tensor]:
    """The loss-mode forward through ``model`` itself (so a DDP wrapper sees it)."""
    if isinstance(data, dict):
        return model(**data, mode="loss")
    return model(*data, mode="loss")
