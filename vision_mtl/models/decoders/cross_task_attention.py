"""InvPT-style cross-task attention decoder: all tasks' tokens attend to each other, coarse to fine.

The design of InvPT (Ye & Xu, ECCV 2022), written for any backbone that reports channels and
strides:

1. **Preliminary decoders**, one per task, on the deepest backbone level at the first stage's
   resolution; their 1×1 predictions are supervised (loss key ``loss_<task>_preliminary``) and
   concatenated back into the task's tokens (``mix``).
2. **Stages** of joint attention over the concatenated tokens of every task. Queries come from a
   per-task strided depthwise convolution, keys and values from per-task average pooling (so the
   key count stays the same at every stage); attention output is upsampled back and added.
   Each stage after the first doubles the resolution (``UpEmbed``) and adds a projected
   shallower backbone level.
3. **Attention carried between stages**: the previous stage's pre-softmax scores are resized to
   the current query grid and fused with the current scores by a 1×1 convolution over heads.
4. **Multi-scale fusion**: every stage's output, projected to the first stage's width and
   resized to ``out_stride``, is summed per task and refined by a 3×3 convolution.

Built from InvPT's checkpoint (``tools/convert_checkpoint.py --from invpt``) it computes the
official forward (tests/test_convert_invpt.py compares it with outputs of the official code).
Choices made where InvPT is tied to a ViT at 448×576: the first stage sits at twice the deepest
level's stride when every level shares one stride (plain ViT), else at the deepest stride; with
a plain ViT stage s adds level ``levels - 2 - s`` as InvPT does, with a hierarchy the level of
the stage's stride; the modules InvPT builds but never uses are left out (docs/decoders.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vision_mtl.models.decoders.base import DecoderOutput, MultiTaskDecoder
from vision_mtl.models.decoders.layers import channel_norm, conv_bn_relu, resize
from vision_mtl.registry import MODELS


def _mean_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """``avg_pool2d(x, k, k, ceil_mode=True)``: partial border windows average what they cover.

    Written as zero padding and two plain poolings because ONNX Runtime divides partial
    ``ceil_mode`` windows by the full window size, unlike PyTorch.
    """
    pad_h, pad_w = -x.shape[-2] % k, -x.shape[-1] % k
    if not (pad_h or pad_w):
        return F.avg_pool2d(x, k, k)
    ones = torch.ones_like(x[:, :1])
    total = F.avg_pool2d(F.pad(x, (0, pad_w, 0, pad_h)), k, k)
    count = F.avg_pool2d(F.pad(ones, (0, pad_w, 0, pad_h)), k, k)
    return total / count


class JointAttention(nn.Module):
    """Attention over every task's tokens at once: strided queries, pooled keys and values."""

    def __init__(self, dim: int, heads: int, tasks: int, kv_pool: int, carry: bool) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.tasks, self.kv_pool = heads, tasks, kv_pool
        self.scale = dim**-0.5  # InvPT scales by the full width, not the head width
        self.query_conv = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dim, dim, 3, stride=2, padding=1, groups=dim, bias=False),
                nn.BatchNorm2d(dim),
            )
            for _ in range(tasks)
        )
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        # Only stages after the first receive scores to fuse (a dead module would break DDP).
        self.fuse_scores = nn.Conv2d(2 * heads, heads, 1) if carry else None

    def forward(
        self, maps: list[torch.Tensor], previous: tuple[torch.Tensor, tuple[int, int]] | None
    ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, tuple[int, int]]]:
        b, c, h, w = maps[0].shape
        queries = [conv(x) for conv, x in zip(self.query_conv, maps, strict=True)]
        qh, qw = queries[0].shape[-2:]
        pooled = [_mean_pool(x, self.kv_pool) for x in maps]
        q = torch.cat([t.flatten(2).transpose(1, 2) for t in queries], dim=1)
        kv = torch.cat([t.flatten(2).transpose(1, 2) for t in pooled], dim=1)
        head_dim = self.q.out_features // self.heads  # widths from the layers: they may be pruned
        q = self.q(q).reshape(b, -1, self.heads, head_dim).transpose(1, 2)
        k, v = self.kv(kv).reshape(b, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * self.scale  # B × heads × (T·qh·qw) × keys
        keys = scores.shape[-1]
        if previous is not None and self.fuse_scores is not None:
            prev, (ph, pw) = previous
            # Resize each task's previous scores over its query grid, keys kept as channels.
            prev = prev.reshape(b, self.heads, self.tasks, ph, pw, keys)
            prev = prev.permute(0, 2, 1, 5, 3, 4).reshape(b * self.tasks, -1, ph, pw)
            prev = resize(prev, (qh, qw)).reshape(b, self.tasks, self.heads, keys, qh, qw)
            prev = prev.permute(0, 2, 1, 4, 5, 3).reshape(b, self.heads, -1, keys)
            scores = self.fuse_scores(torch.cat([scores, prev], dim=1))
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        out = self.proj(out).transpose(1, 2)
        outs = [resize(o.reshape(b, c, qh, qw), (h, w)) for o in out.split(qh * qw, dim=2)]
        return outs, (scores, (qh, qw))


class StageBlock(nn.Module):
    """Joint attention then a per-token MLP, each behind a LayerNorm and with a residual."""

    def __init__(
        self, dim: int, heads: int, tasks: int, kv_pool: int, mlp_ratio: float, carry: bool
    ) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = JointAttention(dim, heads, tasks, kv_pool, carry)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, maps: list[torch.Tensor], previous):
        attended, scores = self.attn([channel_norm(self.norm_attn, x) for x in maps], previous)
        maps = [x + a for x, a in zip(maps, attended, strict=True)]
        out = []
        for x in maps:
            tokens = x.permute(0, 2, 3, 1)
            out.append(x + self.mlp(self.norm_mlp(tokens)).permute(0, 3, 1, 2))
        return out, scores


class UpEmbed(nn.Module):
    """×2 bilinear upsampling then two dilated 3×3 conv-BN-ReLU blocks (InvPT's ``UpEmbed``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # the first block flat, the second nested (their checkpoint key names since the start)
        self.block = nn.Sequential(
            *conv_bn_relu(in_channels, out_channels, dilation=2),
            conv_bn_relu(out_channels, out_channels, dilation=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


def _level_projection(in_channels: int, out_channels: int, ratio: float) -> nn.Module:
    """Project a backbone level to a stage's width; ×2 finer through a transposed conv."""
    if ratio == 2:
        return nn.ConvTranspose2d(in_channels, out_channels, 3, 2, padding=1, output_padding=1)
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


@MODELS.register_module()
class CrossTaskAttentionDecoder(MultiTaskDecoder):
    """InvPT-style decoder (see the module docstring).

    Args:
        in_channels: channels of each backbone level (shallow to deep).
        in_strides: strides of each backbone level.
        tasks: task names.
        num_classes: class counts of class tasks (their preliminary predictions need them).
        channels: width of the preliminary decoders (InvPT: 512).
        dims: width of each stage (InvPT: 576, 288, 144); the first is the output width.
        heads: attention heads per stage.
        mlp_ratio: MLP width of the stages, as a multiple of their width.
        out_stride: stride of the returned task features.
    """

    # Intermediate predictions have the tasks' widths; the joint attention's query, key and value
    # widths stay whole (its heads' reshapes are not traced), while its input and output width,
    # the stage width, is pruned with the rest of the stage.
    unprunable = (
        "intermediate.*",
        "stages.*.attn.q",
        "stages.*.attn.kv",
        "stages.*.attn.fuse_scores",
    )

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        tasks: Sequence[str],
        num_classes: dict[str, int] | None = None,
        channels: int = 512,
        dims: Sequence[int] = (576, 288, 144),
        heads: int = 2,
        mlp_ratio: float = 4.0,
        out_stride: int = 4,
    ) -> None:
        super().__init__(in_channels, in_strides, tasks, num_classes)
        self.check_sizes(channels=channels, dims=dims, heads=heads)
        deepest = self.in_strides[-1]
        same = len(set(self.in_strides)) == 1
        self.first_stride = 2 * deepest if same else deepest
        self.dims = [int(d) for d in dims]
        levels = len(self.in_channels)
        last = self.in_channels[-1]
        t = self.tasks
        self.preliminary = nn.ModuleDict(
            {k: nn.Sequential(conv_bn_relu(last, last), conv_bn_relu(last, channels)) for k in t}
        )
        self.intermediate = nn.ModuleDict(
            {k: nn.Conv2d(channels, self.task_outputs(k), 1) for k in t}
        )
        self.mix = nn.ModuleDict(
            {k: nn.Conv2d(channels + self.task_outputs(k), self.dims[0], 1) for k in t}
        )
        self.up = nn.ModuleList()
        self.back = nn.ModuleList()
        self.back_level: list[int | None] = []
        for s in range(1, len(self.dims)):
            self.up.append(nn.ModuleDict({k: UpEmbed(self.dims[s - 1], self.dims[s]) for k in t}))
            # A hierarchy gives stage s the level one step shallower per stage; a plain ViT's
            # levels share one stride, and InvPT feeds stage s the level two steps above the
            # deepest (its third-deepest level is projected but never used).
            level = levels - 2 - s if same else levels - 1 - s
            stride = self.first_stride / 2**s
            if level >= 0:
                ratio = self.in_strides[level] / stride
                self.back.append(_level_projection(self.in_channels[level], self.dims[s], ratio))
                self.back_level.append(level)
            else:
                self.back.append(nn.Identity())
                self.back_level.append(None)
        self.stages = nn.ModuleList(
            StageBlock(d, heads, len(t), 2 ** (s + 1), mlp_ratio, carry=s > 0)
            for s, d in enumerate(self.dims)
        )
        self.stage_norms = nn.ModuleList(nn.LayerNorm(d * len(t)) for d in self.dims)
        self.to_out = nn.ModuleList(
            nn.ModuleDict({k: nn.Conv2d(d, self.dims[0], 1) for k in t}) for d in self.dims[1:]
        )
        self.refine = nn.ModuleDict(
            {
                k: nn.Sequential(
                    nn.Conv2d(self.dims[0], self.dims[0], 3, padding=1),
                    nn.BatchNorm2d(self.dims[0]),
                    nn.ReLU(inplace=True),
                )
                for k in t
            }
        )
        self.out_stride = int(out_stride)
        self.out_channels = {k: self.dims[0] for k in t}

    def forward(self, features: Sequence[torch.Tensor]) -> DecoderOutput:
        deepest = features[-1]
        height = deepest.shape[-2] * self.in_strides[-1]
        width = deepest.shape[-1] * self.in_strides[-1]
        first = (-(-height // self.first_stride), -(-width // self.first_stride))
        x = resize(deepest, first) if deepest.shape[-2:] != first else deepest
        aux, maps = {}, []
        for task in self.tasks:
            prelim = self.preliminary[task](x)
            aux[task] = self.intermediate[task](prelim)
            maps.append(self.mix[task](torch.cat([prelim, aux[task]], dim=1)))
        outputs = []
        previous = None
        for s, stage in enumerate(self.stages):
            if s:
                maps = [self.up[s - 1][task](m) for task, m in zip(self.tasks, maps, strict=True)]
                level = self.back_level[s - 1]
                if level is not None:
                    back = self.back[s - 1](features[level])
                    if back.shape[-2:] != maps[0].shape[-2:]:
                        back = resize(back, maps[0].shape[-2:])
                    maps = [m + back for m in maps]
            maps, previous = stage(maps, previous)
            joined = channel_norm(self.stage_norms[s], torch.cat(maps, dim=1))
            outputs.append(list(joined.chunk(len(self.tasks), dim=1)))
        size = (-(-height // self.out_stride), -(-width // self.out_stride))
        result = {}
        for i, task in enumerate(self.tasks):
            fused = 0
            for s, stage_maps in enumerate(outputs):
                m = stage_maps[i] if s == 0 else self.to_out[s - 1][task](stage_maps[i])
                fused = fused + resize(m, size)
            result[task] = self.refine[task](fused)
        return DecoderOutput(features=result, aux_logits={"preliminary": aux})
