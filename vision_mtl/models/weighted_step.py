"""The train step of a model whose weighting is not ``Fixed``.

**Loss-based strategies** run the forward pass through the DDP wrapper in the ``weighted_loss``
mode (:func:`weighted_objective`: the losses are combined inside the forward, so DDP's gradient
reduction and its unused-parameter search see the weighting's parameters), and let the optimizer
wrapper backpropagate and step the combined objective (``update_params``: accumulation, AMP
scaling, clipping unchanged). FAMO then recomputes the batch's losses with the updated model (one
more forward pass, no gradient) to update its logits.

**Gradient-based strategies** need one gradient per task on the shared part:

* ``target='parameters'``: ``T`` backward passes (``torch.autograd.grad``, the graph retained)
  give the task gradients on the backbone's parameters, the rows of ``J`` (T × backbone
  parameters); one more pass, restricted to the other parameters, gives the decoder and heads
  the (weighted) sum of the task losses' gradients.
* ``target='representation'``: the backbone's output is detached into the decoder; ``T``
  backward passes stop at it (decoder and heads only), then one pass backpropagates the combined
  representation gradient through the backbone together with the decoder's and heads' sum.

**DDP.** The forward pass runs on the model inside the wrapper (after rank 0's buffers are
broadcast, when the wrapper broadcasts buffers) and every reduction is explicit,
before the gradients are combined: with ``'parameters'`` the task gradients ``J`` are averaged
over the ranks (T times the usual all-reduce volume); with ``'representation'`` each rank's
gradients belong to its own images, so only their Gramian (T×T) is summed and the combined
gradient's backbone contribution is averaged after the backward pass. The weights are then
broadcast from rank 0. Every rank applies the update single-process training on the global batch
would.

**AMP.** Task gradients are taken of the scaled losses (fp16 underflow) and unscaled before they
are combined; the combined gradient goes back through the wrapper's scaler, so its overflow check
skips the step as usual. Without a scaler a non-finite task gradient stops training with the task
named.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub
from torch import nn

from vision_mtl.losses.weighting.base import mean_over_ranks, same_on_every_rank, world_size


def _iteration() -> int:
    return int(MessageHub.get_current_instance().get_info("iter", 0))


def _forward(model: nn.Module, data: dict | tuple | list, mode: str = "loss"):
    """The ``mode`` forward through ``model`` itself (a DDP wrapper sees it)."""
    if isinstance(data, dict):
        return model(**data, mode=mode)
    return model(*data, mode=mode)


def weighted_objective(model: nn.Module, inputs: torch.Tensor, targets: dict) -> dict:
    """The ``weighted_loss`` forward mode of a model with a loss-based weighting.

    The weighting combines the losses inside the forward pass, so DDP sees its parameters
    (uncertainty's log variances) used there, as ``find_unused_parameters`` requires.

    Returns:
        ``objective`` (to backpropagate) and ``log_vars`` (the model's ``parse_losses`` entries).

    Raises:
        FloatingPointError: a non-finite loss, before the weighting's state sees it.
    """
    losses = model.loss(inputs, targets)
    _, log_vars = model.parse_losses(losses)
    per_task = model.task_loss_vector(losses)
    global_losses = mean_over_ranks(per_task.detach())
    objective = model.weighting.combine(per_task, global_losses, _iteration())
    return dict(objective=objective, log_vars=log_vars)


def _sync_buffers(model: nn.Module, inner: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank, before a forward pass that
    bypasses the DDP wrapper, when the wrapper is set to broadcast them."""
    if world_size() == 1 or not getattr(model, "broadcast_buffers", False):
        return
    for buffer in inner.buffers():
        dist.broadcast(buffer, src=0)


def _loss_scale(optim_wrapper) -> float | None:
    """The AMP loss scale of ``optim_wrapper`` (``None`` without an enabled scaler)."""
    scaler = getattr(optim_wrapper, "loss_scaler", None)
    if scaler is None or not scaler.is_enabled():
        return None
    return float(scaler.get_scale())


def _average_grads(params: list[nn.Parameter]) -> None:
    """Average the ``.grad`` of ``params`` over the ranks (absent gradients count as zero)."""
    if world_size() == 1 or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def weighted_train_step(model: nn.Module, data: dict | tuple | list, optim_wrapper) -> dict:
    """One training iteration of a ``MultiTaskModel`` (or its DDP wrapper) with its weighting.

    Returns:
        Log variables: ``loss`` (sum of the task losses), ``objective`` (what the weighting made
        of them), ``loss_<task>`` entries, and the weighting's ``log_vars`` (weights, and the
        cosine similarities of the task gradients for gradient-based strategies).

    Raises:
        FloatingPointError: a non-finite loss, or (without an AMP scaler) a non-finite task
            gradient; the optimizer does not step.
    """
    inner = getattr(model, "module", model)
    with optim_wrapper.optim_context(inner):
        data = inner.data_preprocessor(data, True)
    if inner.weighting.uses_gradients:
        _sync_buffers(model, inner)
        logs = _gradient_step(inner, data, optim_wrapper)
    else:
        logs = _loss_step(model, inner, data, optim_wrapper)
    logs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in logs.items()}
    logs.update({k: torch.tensor(v) for k, v in inner.weighting.log_vars().items()})
    return logs


def _loss_step(model, inner, data, optim_wrapper) -> dict:
    weighting = inner.weighting
    scale_before = _loss_scale(optim_wrapper)
    with optim_wrapper.optim_context(model):
        out = _forward(model, data, mode="weighted_loss")
    objective, log_vars = out["objective"], dict(out["log_vars"])
    optim_wrapper.update_params(objective)
    scale_after = _loss_scale(optim_wrapper)
    skipped = scale_before is not None and scale_after < scale_before  # an AMP overflow
    if weighting.needs_losses_after_update and optim_wrapper.should_update() and not skipped:
        with torch.no_grad(), optim_wrapper.optim_context(inner):
            after = inner.task_loss_vector(_forward(inner, data))
        weighting.after_update(mean_over_ranks(after.detach()))
    log_vars["objective"] = objective.detach()
    return log_vars


def _split_like(flat: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def _task_gradients(
    objectives: torch.Tensor, targets: list[torch.Tensor], scale: float
) -> torch.Tensor:
    """The rows of J: each objective's gradient on ``targets``, flattened, unscaled, fp32."""
    rows = []
    for t in range(len(objectives)):
        grads = torch.autograd.grad(
            objectives[t] * scale, targets, retain_graph=True, allow_unused=True
        )
        rows.append(
            torch.cat(
                [
                    (torch.zeros_like(x) if g is None else g).reshape(-1).float()
                    for g, x in zip(grads, targets)
                ]
            )
            / scale
        )
    return torch.stack(rows)


def _gradient_step(inner, data, optim_wrapper) -> dict:
    weighting = inner.weighting
    on_representation = weighting.target == "representation"
    inputs, targets = data["inputs"], data.get("targets") or {}
    shared = [p for p in inner.backbone.parameters() if p.requires_grad]
    shared_ids = {id(p) for p in shared}
    others = [p for p in inner.parameters() if p.requires_grad and id(p) not in shared_ids]

    with optim_wrapper.optim_context(inner):
        features = inner.backbone(inputs)
        decoder_input = features
        if on_representation:
            decoder_input = [f.detach().requires_grad_(True) for f in features]
        losses = inner.loss_from_features(decoder_input, inputs, targets)
    _, log_vars = inner.parse_losses(losses)
    per_task = inner.task_loss_vector(losses)
    global_losses = mean_over_ranks(per_task.detach())
    objectives = weighting.objectives(per_task, global_losses)
    amp_scale = _loss_scale(optim_wrapper)
    scale = amp_scale or 1.0

    jacobian = _task_gradients(objectives, decoder_input if on_representation else shared, scale)
    if on_representation:
        gramian = jacobian @ jacobian.T
        if world_size() > 1:
            dist.all_reduce(gramian)
            gramian = gramian / world_size() ** 2
    else:
        jacobian = mean_over_ranks(jacobian)
        gramian = jacobian @ jacobian.T
    finite = bool(torch.isfinite(gramian).all())  # the step's one host synchronization
    if not finite and amp_scale is None:
        bad = [t for t, ok in zip(inner.tasks, torch.isfinite(gramian.diagonal())) if not ok]
        raise FloatingPointError(
            f"non-finite gradient of task(s) {bad or list(inner.tasks)} at iteration "
            f"{_iteration() + 1} although every loss was finite; training stopped before the "
            "update, the last checkpoint is intact. Lower the learning rate or the loss weights."
        )
    step = _iteration()
    if finite:
        rows = None if on_representation else jacobian
        weights = weighting.weights(gramian, global_losses, step, rows)
        weights = same_on_every_rank(weights.detach().to(gramian).contiguous())
        weighting.observe(gramian, weights)
        update = weighting.combine_rows(jacobian, weights)
        extra = weighting.extra_objective(gramian, global_losses)
    else:  # AMP overflow: a non-finite gradient makes the scaler skip the step and back off
        weights = torch.ones(len(inner.tasks), dtype=gramian.dtype)
        update = torch.full_like(jacobian[0], float("nan"))
        extra = None
    specific = weighting.specific_weights(weights).to(objectives).detach()
    surrogate = (specific * objectives).sum()
    objective = surrogate.detach()
    if extra is not None:
        surrogate = surrogate + extra
    # the accumulation factor of this iteration, read before backward advances the count
    factor = float(optim_wrapper.scale_loss(torch.ones(())))
    if on_representation:
        for feature, grad in zip(features, _split_like(update, decoder_input)):
            # fp32 product: an fp16 cast of the unscaled gradient would underflow
            surrogate = surrogate + (feature.float() * grad.float()).sum()
        optim_wrapper.backward(optim_wrapper.scale_loss(surrogate))
        _average_grads(shared + others)
    else:
        optim_wrapper.backward(optim_wrapper.scale_loss(surrogate), inputs=others)
        factor *= scale
        for p, g in zip(shared, _split_like(update, shared)):
            g = g.to(p.dtype) * factor
            p.grad = g.clone() if p.grad is None else p.grad.add_(g)
        _average_grads(others)
    if optim_wrapper.should_update():
        optim_wrapper.step()
        optim_wrapper.zero_grad()
    log_vars["objective"] = objective
    return dict(log_vars)
