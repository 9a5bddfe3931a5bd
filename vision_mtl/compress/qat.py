"""Quantization-aware training: INT8 fake quantization where TensorRT quantizes.

Post-training quantization rounds a trained model's weights and activations once; when that
costs too much accuracy, fine-tuning with the rounding in the forward pass (fake quantization,
gradients passed straight through) lets the weights adapt to it. The placement is TensorRT's
explicit-quantization pattern, the one NVIDIA's QAT tools use:

* the **input** of every Conv2d, ConvTranspose2d and Linear: INT8, symmetric, one scale per
  tensor, calibrated once on training images (max or a percentile of ``|x|``) and then fixed;
* their **weights**: INT8, symmetric, one scale per output channel, from the weights' current
  maximum (so it follows them during fine-tuning);
* outputs are never quantized, so the task outputs stay fp32 (post-training quantization
  keeps the heads' last layers fp32 instead, :func:`vision_mtl.export.quantize.fp32_nodes`);
  a layer whose output *is* a task output, as returned (:func:`output_writers`), is left
  unquantized altogether.

Exported with the TorchScript exporter, each fake quantization becomes a
QuantizeLinear/DequantizeLinear pair with these scales, so the exported graph computes what
was trained. A BatchNorm after a convolution stays separate: per-channel weight scales commute
with BatchNorm's per-channel factors, so TensorRT's folding of one into the other is exact.

The quantized layers are subclasses of the torch layers that keep their parameters' names and
hold their scale in a non-persistent buffer, so a checkpoint of a quantized model is a plain
state dict; the scales travel in the **QAT record** (``cfg.model.qat`` or a checkpoint's
``meta['qat']``), which :func:`vision_mtl.models.builder.build_model` applies like a pruning
record.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from vision_mtl.compress.folding import fold_backbone

QMIN, QMAX = -128, 127
RECORD_FORMAT = "vision_mtl.qat/1"
METHODS = ("max", "percentile")
PERCENTILE = 99.999
_BINS = 4096


class QatError(ValueError):
    """A QAT record that does not fit the model, or a model QAT cannot quantize."""


def fake_quant_activation(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric per-tensor INT8 fake quantization (straight-through gradient inside range)."""
    zero = torch.zeros((), dtype=torch.int32, device=x.device)
    return torch.fake_quantize_per_tensor_affine(x, scale.to(x.dtype), zero, QMIN, QMAX)


def weight_scale(weight: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-channel symmetric scales along ``axis``: the channel's largest magnitude / 127."""
    dims = [d for d in range(weight.dim()) if d != axis]
    amax = weight.detach().abs().amax(dim=dims)
    return (amax / QMAX).clamp_min(torch.finfo(torch.float32).tiny).float()


def fake_quant_weight(weight: torch.Tensor, axis: int) -> torch.Tensor:
    """Symmetric per-channel INT8 fake quantization of a weight along its output axis."""
    scale = weight_scale(weight, axis)
    if torch.onnx.is_in_onnx_export():  # the scales as constants of the graph, not ops on it
        scale = torch.tensor(scale.tolist(), dtype=torch.float32)
    zero = torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, axis, QMIN, QMAX)


class _Quantized:
    """Shared by the quantized layers: the input scale, and the swap from a float layer."""

    weight_axis = 0

    def _adopt(self, module: nn.Module, scale: float) -> None:
        self.weight = module.weight
        self.bias = module.bias
        self.train(module.training)
        self.register_buffer("input_scale", torch.tensor(float(scale)), persistent=False)


class QuantConv2d(_Quantized, nn.Conv2d):
    """Conv2d with fake-quantized input and weight."""

    @classmethod
    def from_float(cls, module: nn.Conv2d, scale: float) -> QuantConv2d:
        """A quantized layer holding ``module``'s parameters (same names, same tensors)."""
        layer = cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
            device="meta",
        )
        layer._adopt(module, scale)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fake_quant_activation(x, self.input_scale)
        weight = fake_quant_weight(self.weight, self.weight_axis)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class QuantConvTranspose2d(_Quantized, nn.ConvTranspose2d):
    """ConvTranspose2d with fake-quantized input and weight (output channels on axis 1)."""

    weight_axis = 1

    @classmethod
    def from_float(cls, module: nn.ConvTranspose2d, scale: float) -> QuantConvTranspose2d:
        """A quantized layer holding ``module``'s parameters (same names, same tensors)."""
        layer = cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.output_padding,
            module.groups,
            module.bias is not None,
            module.dilation,
            device="meta",
        )
        layer._adopt(module, scale)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fake_quant_activation(x, self.input_scale)
        weight = fake_quant_weight(self.weight, self.weight_axis)
        return F.conv_transpose2d(
            x,
            weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


class QuantLinear(_Quantized, nn.Linear):
    """Linear with fake-quantized input and weight."""

    @classmethod
    def from_float(cls, module: nn.Linear, scale: float) -> QuantLinear:
        """A quantized layer holding ``module``'s parameters (same names, same tensors)."""
        layer = cls(module.in_features, module.out_features, module.bias is not None, device="meta")
        layer._adopt(module, scale)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fake_quant_activation(x, self.input_scale)
        return F.linear(x, fake_quant_weight(self.weight, self.weight_axis), self.bias)


QUANTIZED = {
    nn.Conv2d: QuantConv2d,
    nn.ConvTranspose2d: QuantConvTranspose2d,
    nn.Linear: QuantLinear,
}


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every plain Conv2d, ConvTranspose2d and Linear of ``model``, by qualified name.

    Subclasses with a forward of their own (timm's ``Conv2dSame`` pads before convolving) are
    not layers this module can reproduce, and are refused rather than left silently in fp32.

    Raises:
        QatError: a subclass of those layers, or a convolution with non-zero padding mode.
    """
    layers = {}
    for name, module in model.named_modules():
        base = next((b for b in QUANTIZED if isinstance(module, b)), None)
        if base is None or isinstance(module, _Quantized):
            continue
        if type(module) is not base:
            raise QatError(
                f"layer {name!r} is a {type(module).__name__}, a subclass of {base.__name__} "
                "with its own forward; QAT quantizes plain Conv2d, ConvTranspose2d and Linear only"
            )
        if getattr(module, "padding_mode", "zeros") != "zeros":
            raise QatError(f"layer {name!r} pads with {module.padding_mode!r}; QAT needs 'zeros'")
        layers[name] = module
    return layers


@torch.no_grad()
def output_writers(model: nn.Module, image: torch.Tensor) -> list[str]:
    """The layers whose output is returned as a task output (they stay fp32)."""
    layers = quantizable_layers(model)
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor kept alive: ids stay unique
    hooks = [
        layer.register_forward_hook(
            lambda _m, _i, out, name=name: produced.__setitem__(id(out), (name, out))
        )
        for name, layer in layers.items()
    ]
    try:
        outputs = model.eval()(image, mode="tensor")
    finally:
        for hook in hooks:
            hook.remove()
    return sorted({produced[id(t)][0] for t in outputs.values() if id(t) in produced})


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    method: str = "percentile",
    exclude: Iterable[str] = (),
) -> dict[str, float]:
    """Per quantized layer, the input scale (amax / 127) over ``batches`` of model inputs.

    ``max`` takes the largest ``|x|``; ``percentile`` the 99.999th percentile of ``|x|`` over
    all batches (a histogram over [0, max], two passes), robust to a few outliers.
    """
    if method not in METHODS:
        raise QatError(f"calibration method {method!r} is not one of {list(METHODS)}")
    batches = list(batches)
    if not batches:
        raise QatError("calibration needs at least one batch of images")
    exclude = set(exclude)
    layers = {n: m for n, m in quantizable_layers(model).items() if n not in exclude}
    model.eval()
    amax = {name: 0.0 for name in layers}
    histograms: dict[str, torch.Tensor] = {}

    def observe(name: str, x: torch.Tensor) -> None:
        values = x.detach().abs().float().flatten()
        if not histograms:  # first pass: the range
            amax[name] = max(amax[name], float(values.max()))
        else:
            top = max(amax[name], torch.finfo(torch.float32).tiny)
            histograms[name] += torch.histc(values.clamp_max(top), _BINS, 0.0, top)

    hooks = [
        layer.register_forward_pre_hook(lambda _m, args, name=name: observe(name, args[0]))
        for name, layer in layers.items()
    ]
    try:
        for batch in batches:
            model(batch, mode="tensor")
        if method == "percentile":
            histograms.update({name: torch.zeros(_BINS, dtype=torch.float64) for name in layers})
            for batch in batches:
                model(batch, mode="tensor")
    finally:
        for hook in hooks:
            hook.remove()
    scales = {}
    for name in layers:
        top = amax[name]
        if method == "percentile" and top > 0:
            cumulative = histograms[name].cumsum(0) / histograms[name].sum()
            index = int(torch.searchsorted(cumulative, PERCENTILE / 100))
            top = top * min(index + 1, _BINS) / _BINS
        scales[name] = max(top, torch.finfo(torch.float32).tiny) / QMAX
    return scales


def make_record(
    scales: dict[str, float], fp32_layers: Iterable[str], method: str, folded: bool = False
) -> dict:
    """The QAT record: what :func:`apply_record` needs to rebuild the quantized model."""
    return dict(
        format=RECORD_FORMAT,
        method=method,
        folded=bool(folded),
        input_scales={k: float(v) for k, v in sorted(scales.items())},
        fp32_layers=sorted(fp32_layers),
        weights="int8 symmetric per-channel",
        activations="int8 symmetric per-tensor",
    )


def apply_record(model: nn.Module, record: dict) -> nn.Module:
    """Swap in the quantized layers with the record's input scales (in place); a record of a
    folded model folds the backbone first.

    Raises:
        QatError: a record of another format, a layer of the model with no scale and not listed
            fp32, or a scale for a layer the model does not have (the record is for another
            architecture).
    """
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise QatError(f"QAT record format {found!r}, expected {RECORD_FORMAT!r}")
    scales, keep = dict(record["input_scales"]), set(record["fp32_layers"])
    if record.get("folded"):
        fold_backbone(model)
    layers = quantizable_layers(model)
    unknown = sorted((set(scales) | keep) - set(layers))
    missing = sorted(set(layers) - set(scales) - keep)
    if unknown or missing:
        raise QatError(
            "the QAT record does not fit the model: "
            + "; ".join(
                f"{what}: {names[:5]}{' ...' if len(names) > 5 else ''}"
                for what, names in (("not in the model", unknown), ("without a scale", missing))
                if names
            )
        )
    for name, scale in scales.items():
        if not scale > 0:
            raise QatError(f"QAT record: input scale of {name!r} is {scale!r}; must be > 0")
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = layers[name]
        setattr(parent, attr, QUANTIZED[type(layer)].from_float(layer, scale))
    return model
