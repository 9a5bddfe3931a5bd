"""MultiTaskModel: a shared backbone, a multitask decoder, per-task heads and losses.

Forward modes follow mmengine: ``loss`` returns ``loss_<task>`` entries (each scaled by its task's
``loss_weight``, so with the default ``Fixed`` weighting mmengine's sum is the total), ``predict``
returns one dict per image with predictions cropped to the image's original size, ``tensor``
returns raw logits at the input size (what ONNX export uses).

Any other ``weighting`` (:mod:`vision_mtl.losses.weighting`) replaces mmengine's train step by
:func:`vision_mtl.models.weighted_step.weighted_train_step`, which combines the per-task losses
(or their gradients) before the optimizer step.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from torch import nn

from vision_mtl.models.decoders.base import DecoderOutput
from vision_mtl.models.tta import check_tta, tta_logits
from vision_mtl.models.weighted_step import weighted_objective, weighted_train_step
from vision_mtl.registry import MODELS, WEIGHTINGS
from vision_mtl.tasks import as_prediction_layout, check_tasks, get_task


def _build(cfg: dict | nn.Module, **defaults) -> nn.Module:
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(cfg)
    for key, value in defaults.items():
        cfg.setdefault(key, value)
    return MODELS.build(cfg)


def build_weighting(cfg: dict | nn.Module | None, tasks: Sequence[str]) -> nn.Module:
    """The model's weighting component from its config (``None``: ``Fixed``)."""
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(type="Fixed") if cfg is None else dict(cfg)
    if "tasks" in cfg and list(cfg["tasks"]) != list(tasks):
        raise ValueError(
            f"model.weighting.tasks={cfg['tasks']!r} differs from the model's tasks {list(tasks)}; "
            "leave it out, the model fills it in"
        )
    cfg["tasks"] = list(tasks)
    try:
        return WEIGHTINGS.build(cfg)
    except TypeError as err:
        raise TypeError(f"model.weighting={dict(cfg)!r}: {err}") from None


@MODELS.register_module()
class MultiTaskModel(BaseModel):
    """Backbone + decoder + one head and loss per task.

    Args:
        backbone: backbone config (or module) reporting ``out_channels`` and ``out_strides``.
        decoder: decoder config; ``in_channels``, ``in_strides``, ``tasks`` and ``num_classes``
            are filled in from the backbone and the task settings.
        tasks: task name → settings: ``num_classes`` (class tasks), ``loss_weight`` (default 1),
            ``loss`` (config overriding the TaskSpec's default loss). A list of names uses the
            defaults.
        head: head config; ``in_channels`` and ``out_channels`` are filled in per task.
        data_preprocessor: batching/normalization config.
        aux_loss_weight: factor on intermediate-supervision losses of decoders that emit them.
        tta: test-time augmentation of ``predict``: ``dict(flip=True, scales=[0.75, 1, 1.25])``
            (:mod:`vision_mtl.models.tta`); ``None`` predicts the image as given.
        weighting: how the per-task losses become one update
            (:mod:`vision_mtl.losses.weighting`): ``dict(type='Fixed')`` (the default: the sum of
            the ``loss_weight``-scaled losses), a loss-based strategy (``Uncertainty``, ``DWA``,
            ``RLW``, ``LogSum``, ``FAMO``) or a gradient-based one (``PCGrad``, ``CAGrad``,
            ``IMTLG``, ``NashMTL``, ``AlignedMTL``, ``MGDA``, ``UPGrad``, ``GradNorm``,
            ``DBMTL``). It sees the ``loss_weight``-scaled losses.
    """

    def __init__(
        self,
        backbone: dict | nn.Module,
        decoder: dict | nn.Module,
        tasks: dict[str, dict] | Sequence[str],
        head: dict | None = None,
        data_preprocessor: dict | None = None,
        aux_loss_weight: float = 1.0,
        tta: dict | None = None,
        weighting: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        # Built through our registry so the model works without a config's default scope.
        preprocessor = _build(data_preprocessor or dict(type="MultiTaskDataPreprocessor"))
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        settings = {t: {} for t in tasks} if not isinstance(tasks, dict) else dict(tasks)
        self.tasks = check_tasks(settings, list(settings), where="the model's task settings")
        self.task_settings = {t: dict(settings[t] or {}) for t in self.tasks}
        self.num_classes = {
            t: s["num_classes"] for t, s in self.task_settings.items() if "num_classes" in s
        }
        self.loss_weights = {
            t: float(s.get("loss_weight", 1.0)) for t, s in self.task_settings.items()
        }
        self.aux_loss_weight = aux_loss_weight
        self.tta = check_tta(tta)

        self.backbone = _build(backbone)
        self.decoder = _build(
            decoder,
            in_channels=self.backbone.out_channels,
            in_strides=self.backbone.out_strides,
            tasks=self.tasks,
            num_classes=self.num_classes,
        )
        head = dict(type="ConvHead") if head is None else dict(head)
        self.heads = nn.ModuleDict()
        self.losses = nn.ModuleDict()
        for task in self.tasks:
            spec = get_task(task)
            out = spec.num_outputs(self.num_classes.get(task))
            self.heads[task] = _build(
                dict(head, in_channels=self.decoder.out_channels[task], out_channels=out)
            )
            self.losses[task] = _build(self.task_settings[task].get("loss", spec.loss))
        self.weighting = build_weighting(weighting, self.tasks)
        # Set by vision_mtl.models.builder.build_model, which applies a pruning record; every
        # checkpoint of the model carries it (AtomicCheckpointHook).
        self.pruning_record: dict | None = None
        self.qat_record: dict | None = None

    # ------------------------------------------------------------------ forward paths
    def _logits(self, inputs: torch.Tensor) -> tuple[dict[str, torch.Tensor], DecoderOutput]:
        """Raw per-task outputs resized to the input size."""
        return self._decode(self.backbone(inputs), inputs.shape[-2:])

    def _decode(
        self, features: list[torch.Tensor], size: torch.Size
    ) -> tuple[dict[str, torch.Tensor], DecoderOutput]:
        """Raw per-task outputs at ``size`` from the backbone's ``features``."""
        decoded = self.decoder(features)
        logits = {}
        for task in self.tasks:
            out = self.heads[task](decoded.features[task])
            # upsampled in fp32: under mixed precision the head's output is bf16/fp16, and
            # interpolating in it would round the depth and normal maps a second time
            logits[task] = F.interpolate(
                out.float(), size=size, mode="bilinear", align_corners=False
            )
        return logits, decoded

    def forward(
        self,
        inputs: torch.Tensor,
        targets: dict[str, torch.Tensor] | None = None,
        meta: list[dict] | None = None,
        mode: str = "tensor",
    ):
        """Run the model in ``loss``, ``predict`` or ``tensor`` mode (see module docstring)."""
        if mode == "tensor":
            return self._logits(inputs)[0]
        if mode == "loss":
            return self.loss(inputs, targets or {})
        if mode == "weighted_loss":  # the train step of a loss-based weighting
            return weighted_objective(self, inputs, targets or {})
        if mode == "predict":
            return self.predict(inputs, targets or {}, meta or [{} for _ in range(len(inputs))])
        raise ValueError(
            f"mode must be 'loss', 'predict', 'tensor' or 'weighted_loss', got {mode!r}"
        )

    def loss(
        self, inputs: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Weighted per-task losses, keyed ``loss_<task>`` (and ``loss_<task>_<stage>``)."""
        return self.loss_from_features(self.backbone(inputs), inputs, targets)

    def loss_from_features(
        self,
        features: list[torch.Tensor],
        inputs: torch.Tensor,
        targets: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """:meth:`loss` from the backbone's ``features`` of ``inputs`` (the decoder's input: the
        shared representation gradient-based weightings may differentiate against)."""
        missing = [t for t in self.tasks if t not in targets]
        if missing:
            raise KeyError(f"the batch carries no targets for task(s) {missing}")
        logits, decoded = self._decode(features, inputs.shape[-2:])
        losses = {}
        for task in self.tasks:
            losses[f"loss_{task}"] = self.loss_weights[task] * self._task_loss(
                task, logits[task], targets[task]
            )
        for stage, stage_logits in decoded.aux_logits.items():
            for task, out in stage_logits.items():
                out = F.interpolate(
                    out, size=inputs.shape[-2:], mode="bilinear", align_corners=False
                )
                weight = self.aux_loss_weight * self.loss_weights[task]
                losses[f"loss_{task}_{stage}"] = weight * self._task_loss(task, out, targets[task])
        return losses

    def _task_loss(self, task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``task``'s loss computed in fp32 with autocast off.

        Under mixed precision the logits arrive in bf16/fp16; softmaxes, logs, normalizations
        and the means over every pixel lose digits (or overflow, in fp16) there, so every loss
        is evaluated on fp32 logits whatever the forward pass ran in.
        """
        with torch.autocast(logits.device.type, enabled=False):
            return self.losses[task](logits.float(), target)

    @torch.no_grad()
    def predict(
        self, inputs: torch.Tensor, targets: dict[str, torch.Tensor], meta: list[dict]
    ) -> list[dict]:
        """Per image: ``pred`` (and ``gt`` when targets are given) cropped to the original size."""
        if self.tta is None:
            logits, _ = self._logits(inputs)
        else:
            divisor = int(getattr(self.data_preprocessor, "size_divisor", None) or 1)
            logits = tta_logits(
                lambda x: self._logits(x)[0], inputs, self.tasks, divisor=divisor, **self.tta
            )
        decoded = {t: get_task(t).decode_logits(logits[t]).cpu() for t in self.tasks}
        gts = {t: v.cpu() for t, v in targets.items() if t in self.tasks}
        results = []
        for i, info in enumerate(meta):
            h, w = info.get("ori_shape", inputs.shape[-2:])
            top, left = info.get("pad_offset", (0, 0))  # set by a centre-padding preprocessor
            rows, cols = slice(top, top + h), slice(left, left + w)
            sample = dict(
                meta=info,
                pred={t: v[i, ..., rows, cols] for t, v in decoded.items()},
            )
            if gts:
                sample["gt"] = {
                    t: as_prediction_layout(v[i, ..., rows, cols]) for t, v in gts.items()
                }
            results.append(sample)
        return results

    # ------------------------------------------------------------------ training step
    @property
    def ddp_wrapper(self) -> str | None:
        """The DDP wrapper VisionMTLRunner picks: mmengine's for fixed weights, else the one
        whose train step is :meth:`weighted_step`."""
        if self.weighting.is_fixed:
            return None
        return "vision_mtl.WeightedDistributedDataParallel"

    def train_step(self, data: dict | tuple | list, optim_wrapper) -> dict:
        """mmengine's step with fixed weights; :meth:`weighted_step` with any other weighting."""
        if self.weighting.is_fixed:
            return super().train_step(data, optim_wrapper)
        return self.weighted_step(self, data, optim_wrapper)

    def weighted_step(self, runner_model: nn.Module, data: dict | tuple | list, optim_wrapper):
        """The weighting's train step run through ``runner_model``: this model or its DDP
        wrapper (:func:`vision_mtl.models.weighted_step.weighted_train_step`)."""
        return weighted_train_step(runner_model, data, optim_wrapper)

    def task_loss_vector(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """One fp32 loss per task, in :attr:`tasks` order, from :meth:`loss`'s dict: each task's
        ``loss_<task>`` plus its intermediate-supervision terms ``loss_<task>_<stage>``."""
        by_length = sorted(self.tasks, key=len, reverse=True)
        totals: dict[str, list[torch.Tensor]] = {t: [] for t in self.tasks}
        for key, value in losses.items():
            task = next(
                (t for t in by_length if key == f"loss_{t}" or key.startswith(f"loss_{t}_")), None
            )
            if task is None:
                raise KeyError(f"loss entry {key!r} belongs to none of the tasks {self.tasks}")
            totals[task].append(value.float().mean())
        return torch.stack([torch.stack(totals[t]).sum() for t in self.tasks])

    def parse_losses(self, losses: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """mmengine's loss parsing, refusing a non-finite loss.

        Both the plain and the DDP train step call this before the optimizer step, so a NaN or
        infinite loss stops training with the weights (and every checkpoint written so far) as
        they were at the last good iteration.
        """
        loss, tensors = super().parse_losses(losses)
        if not losses:
            return loss, tensors
        # Every logged value reaches the host in one transfer: the non-finite check reads it,
        # and the logger receives numbers (mmengine would call .item() once per entry, each a
        # device synchronization on a GPU).
        values = torch.stack([v.detach().float() for v in tensors.values()]).tolist()
        log_vars = OrderedDict(zip(tensors, values))
        non_finite = [k for k, v in log_vars.items() if not math.isfinite(v)]
        if non_finite:  # name a task's entry rather than the total
            bad = next((k for k in non_finite if k != "loss"), non_finite[0])
            iteration = MessageHub.get_current_instance().get_info("iter", -1) + 1
            what = "total loss" if bad == "loss" else f"loss for task {bad[len('loss_') :]!r}"
            raise FloatingPointError(
                f"non-finite {what} ({bad} = {log_vars[bad]}) at "
                f"iteration {iteration}; training stopped before the update, the last "
                "checkpoint is intact. Lower the learning rate or the task's loss_weight, "
                "or check its targets."
            )
        return loss, log_vars
