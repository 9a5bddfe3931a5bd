"""Decoding rules: how a task's raw head output becomes its prediction, defined once.

Each rule is a short sequence of steps over a five-operation vocabulary (``argmax``,
``softmax``, ``sigmoid``, ``relu`` and ``l2normalize`` over the channel axis, and ``channel``,
which selects one channel). The table :data:`DECODE_RULES` is the only definition; two
interpreters run it:

* :func:`decode_array` in NumPy, for the edge runtime (ONNX Runtime, TensorRT), which has no
  torch;
* :func:`decode_tensor` in torch, for the model's ``predict`` mode
  (:meth:`vision_mtl.tasks.TaskSpec.decode_logits`); torch is imported when it is called.

So the two cannot disagree on what a rule means, only on an operation's arithmetic, and the
tests check every rule on both (class ids exactly, values to float32 rounding). The sidecar
records each output's rule by name (``outputs[i].decode``) and the runtime decodes by it.

Every rule takes B×C×H×W logits and returns B×H×W (one value per pixel) or B×C×H×W (vectors).
A rule also says how its predictions are painted (:attr:`DecodeRule.colormap`, see
:mod:`vision_mtl.runtime.colorize`): class ids with the palette, probabilities in grey,
non-negative magnitudes (metres, pixels) with the depth colormap, unit vectors as RGB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

DecodeName = Literal["argmax", "softmax_fg", "sigmoid", "relu", "unit"]
Colormap = Literal["palette", "depth", "normals", "gray"]
Step = tuple  # ("argmax",), ("channel", 1), ...

# Denominator floor of ``l2normalize``: torch.nn.functional.normalize's default eps.
NORMALIZE_EPS = 1e-12


@dataclass(frozen=True)
class DecodeRule:
    """One decoding rule: its steps, what it yields and how that is painted.

    Attributes:
        name: the key recorded in sidecars and :attr:`vision_mtl.tasks.TaskSpec.decode`.
        steps: operations applied in order to B×C×H×W logits.
        prediction: what the result is, for documentation and messages.
        colormap: how a prediction of this kind is painted.
    """

    name: str
    steps: tuple[Step, ...]
    prediction: str
    colormap: Colormap


DECODE_RULES: dict[str, DecodeRule] = {
    rule.name: rule
    for rule in [
        DecodeRule("argmax", (("argmax",),), "B×H×W int64 class ids", "palette"),
        DecodeRule(
            "softmax_fg",
            (("softmax",), ("channel", 1)),
            "B×H×W float32 probability of class 1 (foreground) of a 2-class softmax",
            "gray",
        ),
        DecodeRule(
            "sigmoid",
            (("channel", 0), ("sigmoid",)),
            "B×H×W float32 probability from one logit",
            "gray",
        ),
        DecodeRule(
            "relu",
            (("channel", 0), ("relu",)),
            "B×H×W float32 non-negative magnitude (metres, pixels)",
            "depth",
        ),
        DecodeRule(
            "unit",
            (("l2normalize",),),
            "B×C×H×W float32 unit vectors along the channel axis",
            "normals",
        ),
    ]
}


def get_rule(name: str) -> DecodeRule:
    """A rule by name, with an error listing the known ones."""
    try:
        return DECODE_RULES[name]
    except KeyError:
        raise KeyError(
            f"unknown decoding rule {name!r}; known rules: {', '.join(DECODE_RULES)}"
        ) from None


# The NumPy interpreter. Softmax subtracts the channel maximum first (exp cannot overflow);
# sigmoid is written with tanh (no overflow warning for large negative logits).


def _np_softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _np_l2normalize(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return x / np.maximum(norm, np.float32(NORMALIZE_EPS))


NUMPY_OPS: dict[str, Callable[..., np.ndarray]] = {
    "argmax": lambda x: x.argmax(axis=1).astype(np.int64, copy=False),
    "softmax": _np_softmax,
    "channel": lambda x, c: x[:, c],
    "sigmoid": lambda x: np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * x)),
    "relu": lambda x: np.maximum(x, np.float32(0.0)),
    "l2normalize": _np_l2normalize,
}


def _torch_ops() -> dict[str, Callable]:
    """The torch interpreter: the calls the model's predict mode has always made."""
    import torch.nn.functional as F

    return {
        "argmax": lambda x: x.argmax(dim=1),
        "softmax": lambda x: x.softmax(dim=1),
        "channel": lambda x, c: x[:, c],
        "sigmoid": lambda x: x.sigmoid(),
        "relu": lambda x: x.clamp(min=0),
        "l2normalize": lambda x: F.normalize(x, dim=1, eps=NORMALIZE_EPS),
    }


def _run(rule: DecodeRule, value, ops: dict[str, Callable]):
    for op, *args in rule.steps:
        value = ops[op](value, *args)
    return value


def decode_array(rule: str | DecodeRule, logits: np.ndarray) -> np.ndarray:
    """Decode B×C×H×W logits with a rule, in NumPy (float32 throughout, class ids int64).

    Raises:
        KeyError: an unknown rule name.
        ValueError: ``logits`` is not 4-D.
    """
    rule = get_rule(rule) if isinstance(rule, str) else rule
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 4:
        raise ValueError(f"decoding {rule.name!r} needs B×C×H×W logits, got shape {logits.shape}")
    return _run(rule, logits, NUMPY_OPS)


def decode_tensor(rule: str | DecodeRule, logits: torch.Tensor) -> torch.Tensor:
    """Decode B×C×H×W logits with a rule, in torch (the model's ``predict`` mode)."""
    rule = get_rule(rule) if isinstance(rule, str) else rule
    return _run(rule, logits, _torch_ops())
