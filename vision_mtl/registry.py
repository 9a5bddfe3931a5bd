"""The registries of vision_mtl.

One module, one scope (``vision_mtl``). Every registry names the package that fills it
(``locations``), so ``type='X'`` in a config resolves without the user importing anything, and
an unknown name fails with the registry's name and the closest registered names.
"""

from __future__ import annotations

import difflib
from typing import Any

from mmengine import registry as _mmengine_registry
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = "vision_mtl"


class VisionMTLRegistry(Registry):
    """A registry whose failed builds say where they looked and what was meant.

    mmengine's own message ("X is not in the model registry") neither lists what is there nor
    guesses the typo; users of large registries ask for both. ``get`` and ``in`` keep mmengine's
    contract (``None`` / ``False`` for an unknown name); the message is raised where a build
    fails.
    """

    def build(self, cfg: dict, *args, **kwargs) -> Any:
        """mmengine's build, with an unknown ``type`` reported with the closest registered names."""
        kind = cfg.get("type") if hasattr(cfg, "get") else None
        if isinstance(kind, str) and self.get(kind) is None:
            raise KeyError(self.unknown_type_message(kind))
        return super().build(cfg, *args, **kwargs)

    def unknown_type_message(self, key: str) -> str:
        """What to tell a user whose config names ``type=key``, which is not registered."""
        name = key.split(".")[-1]
        known = sorted(self._all_names())
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"type={key!r} is not registered in the vision_mtl {self.name!r} registry "
            f"(scope {self.scope!r}).{hint} Registered names: {', '.join(known)}"
        )

    def _all_names(self) -> set[str]:
        self.import_from_location()
        names = set(self._module_dict)
        if self.parent is not None:
            names |= set(self.parent._module_dict)
        return names


MODELS = VisionMTLRegistry(
    "model",
    parent=MMENGINE_MODELS,
    scope=SCOPE,
    locations=["vision_mtl.models", "vision_mtl.losses"],
)
DATASETS = VisionMTLRegistry(
    "dataset", parent=MMENGINE_DATASETS, scope=SCOPE, locations=["vision_mtl.datasets"]
)
TRANSFORMS = VisionMTLRegistry(
    "transform", parent=MMENGINE_TRANSFORMS, scope=SCOPE, locations=["vision_mtl.datasets"]
)
METRICS = VisionMTLRegistry(
    "metric", parent=MMENGINE_METRICS, scope=SCOPE, locations=["vision_mtl.evaluation"]
)
HOOKS = VisionMTLRegistry(
    "hook", parent=MMENGINE_HOOKS, scope=SCOPE, locations=["vision_mtl.engine"]
)
#: loss weighting and gradient aggregation strategies (``model.weighting``)
WEIGHTINGS = VisionMTLRegistry("weighting", scope=SCOPE, locations=["vision_mtl.losses"])
FUNCTIONS = VisionMTLRegistry(
    "function",
    parent=MMENGINE_FUNCTIONS,
    scope=SCOPE,
    locations=["vision_mtl.datasets", "vision_mtl.engine"],
)

# mmengine's Runner builds loops, samplers, optimizers, schedulers and loggers from its own
# registries under the config's default scope; without a child registry of our scope for each it
# warns (once per registry) that it "failed to search" ours. These children hold nothing of ours:
# they only make the scope resolve to mmengine's own components silently — except two, below.
_RUNNER_REGISTRIES = (
    "LOOPS",
    "DATA_SAMPLERS",
    "OPTIM_WRAPPER_CONSTRUCTORS",
    "OPTIMIZERS",
    "OPTIM_WRAPPERS",
    "PARAM_SCHEDULERS",
    "VISUALIZERS",
    "VISBACKENDS",
    "LOG_PROCESSORS",
    "RUNNERS",
    "RUNNER_CONSTRUCTORS",
    "WEIGHT_INITIALIZERS",
    "EVALUATOR",
    "MODEL_WRAPPERS",
    "STRATEGIES",
)
# The three we add to (DDP and FSDP wrappers for CPU-only runs, the guarded optimizer wrappers,
# the FSDP strategy with full checkpoints) name the package that fills them.
_FILLED = {"MODEL_WRAPPERS", "OPTIM_WRAPPERS", "STRATEGIES"}
_runner_children = {
    name: Registry(
        getattr(_mmengine_registry, name).name,
        parent=getattr(_mmengine_registry, name),
        scope=SCOPE,
        locations=["vision_mtl.engine"] if name in _FILLED else [],
    )
    for name in _RUNNER_REGISTRIES
}
MODEL_WRAPPERS = _runner_children["MODEL_WRAPPERS"]
OPTIM_WRAPPERS = _runner_children["OPTIM_WRAPPERS"]
STRATEGIES = _runner_children["STRATEGIES"]
