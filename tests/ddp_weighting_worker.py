"""The tiny weighted model and batches of the DDP weighting test, and one rank of it.

Run by torchrun from test_weighting.py: each rank trains three SGD steps on its half of the
global batch through WeightedDistributedDataParallel and saves its parameters and weighting
state to ``<out>/rank<r>.pt``; the test trains the same model in one process on the whole global
batch and compares. BatchNorm runs in inference mode: per-rank batch statistics differ from the
global batch's by construction (that is SyncBN's business), the reductions under test do not.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub

GLOBAL_BATCH = 4
STEPS = 3
SIZE = (32, 48)


def build(weighting: dict):
    """The tiny ViT multitask model with ``weighting``, seeded, BatchNorm in inference mode."""
    from vision_mtl.models.builder import build_model

    torch.manual_seed(0)
    model = build_model(
        dict(
            type="MultiTaskModel",
            backbone=dict(
                type="TimmBackbone",
                model_name="vit_tiny_patch16_224",
                out_indices=[0, 1],
                model_kwargs=dict(
                    img_size=SIZE,
                    embed_dim=32,
                    depth=2,
                    num_heads=2,
                    patch_size=8,
                    dynamic_img_size=True,
                ),
            ),  # fmt: skip
            decoder=dict(type="BaselineDecoder", channels=16),
            tasks=dict(semseg=dict(num_classes=3), depth={}, normals={}),
            weighting=weighting,
        )
    )
    return model.eval()


def global_batch(step: int, first: int = 0, count: int = GLOBAL_BATCH) -> dict:
    """Images ``first .. first+count-1`` of step ``step``'s global batch (seeded per image)."""
    inputs, semseg, depth, normals = [], [], [], []
    for i in range(first, first + count):
        g = torch.Generator().manual_seed(1000 * step + i)
        inputs.append(torch.randint(0, 255, (3, *SIZE), dtype=torch.uint8, generator=g))
        semseg.append(torch.randint(0, 3, SIZE, generator=g))
        depth.append(torch.rand(1, *SIZE, generator=g) + 0.5)
        normals.append(torch.nn.functional.normalize(torch.randn(3, *SIZE, generator=g), dim=0))
    return dict(
        inputs=inputs,
        targets=dict(semseg=semseg, depth=depth, normals=normals),
        meta=[dict(ori_shape=SIZE) for _ in inputs],
    )


def train(model, runner_model, first: int, count: int) -> dict:
    """Three SGD steps through ``runner_model`` on images ``first..first+count-1`` of each
    step's global batch; the parameters and the weighting's state afterwards."""
    from vision_mtl.engine.optim import GuardedOptimWrapper

    optim = GuardedOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05))
    hub = MessageHub.get_current_instance()
    for step in range(STEPS):
        hub.update_info("iter", step)
        runner_model.train_step(global_batch(step, first, count), optim)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(weighting_type: str, target: str, out: str, options: str = "") -> None:
    """``options``: comma-separated ``find_unused`` (DDP's find_unused_parameters) and
    ``train`` (BatchNorm in training mode, rank 1's running means set to 5 before training, so
    only the wrapper's buffer broadcast from rank 0 brings them back)."""
    from vision_mtl.engine.distributed import WeightedDistributedDataParallel

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    weighting = dict(type=weighting_type)
    if target != "-":
        weighting["target"] = target
    model = build(weighting)
    ddp = WeightedDistributedDataParallel(
        module=model, find_unused_parameters="find_unused" in options
    )
    if "train" in options:
        model.train()
        if rank == 1:  # after wrapping (which broadcasts rank 0's state once)
            for name, buffer in model.named_buffers():
                if name.endswith("running_mean"):
                    buffer.fill_(5.0)
    per_rank = GLOBAL_BATCH // world
    state = train(model, ddp, rank * per_rank, per_rank)
    torch.save(state, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:5])
