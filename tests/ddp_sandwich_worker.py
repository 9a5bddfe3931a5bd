"""One rank of the 2-process sandwich test (run by torchrun from test_slimmable_runner.py).

Each rank builds the same tiny slimmable model, wraps it in the sandwich DDP wrapper, trains three
iterations on its own half of the batch and writes the configurations each step trained and a
digest of its parameters to ``<out>/rank<r>.json``.
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch
import torch.distributed as dist
from mmengine.logging import MessageHub

from vision_mtl.engine.distributed import SlimmableDistributedDataParallel
from vision_mtl.engine.optim import GuardedOptimWrapper
from vision_mtl.models.builder import build_model


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = build_model(
        dict(
            type="SlimmableMultiTaskModel",
            backbone=dict(type="TimmBackbone", model_name="resnet18", out_indices=[1, 2, 3, 4]),
            decoder=dict(type="BaselineDecoder", channels=16),
            tasks=dict(semseg=dict(num_classes=3), depth={}),
            data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=32),
            sandwich=dict(num_random=2, seed=7),
        )
    )
    ddp = SlimmableDistributedDataParallel(module=model)
    optim = GuardedOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    hub = MessageHub.get_current_instance()
    g = torch.Generator().manual_seed(100 + rank)  # different data on every rank
    trained = []
    for it in range(3):
        hub.update_info("iter", it)
        batch = dict(
            inputs=[torch.randint(0, 255, (3, 32, 64), dtype=torch.uint8, generator=g)] * 2,
            targets=dict(
                semseg=[torch.randint(0, 3, (32, 64), generator=g) for _ in range(2)],
                depth=[torch.rand(1, 32, 64, generator=g) + 0.5 for _ in range(2)],
            ),
            meta=[dict(name=f"r{rank}_{it}_{i}", ori_shape=(32, 64)) for i in range(2)],
        )
        ddp.train_step(batch, optim)
        trained.append(model.sandwich_configurations)
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().numpy().tobytes())
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(dict(configurations=trained, params=digest.hexdigest()), f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
