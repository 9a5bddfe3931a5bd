"""vision_mtl: multitask dense prediction — assemble, train, evaluate, compress and ship.

Importing the package imports nothing else: the training stack (torch, mmengine) is loaded by
the subpackages that need it, so the edge runtime runs on numpy and onnxruntime/TensorRT alone.
"""

__version__ = "0.1.0"
