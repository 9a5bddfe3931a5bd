"""Multi-step procedures the tools run, callable from Python: prune → evaluate → fine-tune →
export → time (:func:`~vision_mtl.workflows.prune.prune_workflow`), training and comparing
configs (:func:`~vision_mtl.workflows.compare.compare_configs`), a test set's confusion matrices
(:mod:`~vision_mtl.workflows.confusion`), training curves from logs
(:mod:`~vision_mtl.workflows.logs`) and checkpoints stripped for publishing
(:mod:`~vision_mtl.workflows.publish`).

The top layer of the package (docs/architecture.md): it may use every other layer, none uses it.
"""
