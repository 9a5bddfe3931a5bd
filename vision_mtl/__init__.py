"""vision_mtl: multitask dense prediction — assemble, train, evaluate, compress and ship."""

# Importing the engine registers the atomic checkpoint backend and the checkpoint allow-list, so
# every entry point (tools, apis, tests) saves and resumes the same way.
from vision_mtl import engine as _engine  # noqa: F401

__version__ = "0.1.0"
