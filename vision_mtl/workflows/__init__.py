"""Multi-step procedures the tools run, callable from Python: prune → evaluate → fine-tune →
export → time (:func:`~vision_mtl.workflows.prune.prune_workflow`), and training and comparing
configs (:func:`~vision_mtl.workflows.compare.compare_configs`).

The top layer of the package (docs/architecture.md): it may use every other layer, none uses it.
"""
