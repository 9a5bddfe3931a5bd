"""MultiMAE input adapters: every modality becomes a grid of encoder-width tokens.

MultiMAE (Bachmann et al., ECCV 2022) feeds one ViT with tokens of several modalities. Each
modality has its own *input adapter* that turns its map into one token per patch:

* dense maps (RGB with 3 channels, depth with 1) use a patch embedding, a convolution whose
  kernel and stride are the patch size (:class:`PatchAdapter`), exactly timm's ``PatchEmbed``, so the
  RGB adapter's weights are the ``patch_embed.proj`` of the exported ViT;
* a semantic label map is first embedded per pixel with a learned 64-d class embedding at 1/4
  resolution, then patchified by a convolution of stride ``patch/4`` (:class:`SemSegAdapter`).

Every adapter adds the fixed 2-D sin-cos position embedding of its grid (:func:`sincos_2d`, computed
for any grid, so any input size divisible by the patch works) and a learned per-modality embedding
(so a token tells the encoder which modality it comes from, since positions are shared). The one
learned global token is :class:`GlobalToken`.

:func:`resample_pos_embed` resizes a *learned* position table (bicubic, non-square grids), for
tables that are not recomputed from a formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sincos_2d(embed_dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding of a ``grid_h`` × ``grid_w`` grid (MAE style).

    The first half of the channels encodes the row, the second half the column; each half is
    ``[sin(pos * ω_k), cos(pos * ω_k)]`` with ``ω_k = 10000^(-k / (D/4))``. Row-major token order
    (the order of ``tensor.flatten(2)`` of a B×D×H×W map, and of timm's patch tokens).

    Args:
        embed_dim: channels D; must be divisible by 4.
        grid_h: rows of the patch grid.
        grid_w: columns of the patch grid.

    Returns:
        A float32 tensor of shape ``(grid_h * grid_w, embed_dim)``.
    """
    if embed_dim % 4:
        raise ValueError(
            f"sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}"
        )
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )
    parts = []
    for coord in (rows.reshape(-1), cols.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


def resample_pos_embed(pos: torch.Tensor, new_hw: tuple[int, int]) -> torch.Tensor:
    """Resize a learned position table to another (possibly non-square) grid, bicubic.

    Args:
        pos: the table as a ``1 × D × H × W`` map.
        new_hw: the target grid ``(h, w)``.

    Returns:
        A ``1 × D × h × w`` tensor; at the same size, a copy of ``pos`` (bit-identical).
    """
    if pos.dim() != 4 or pos.shape[0] != 1:
        raise ValueError(f"pos must be shaped 1×D×H×W, got {tuple(pos.shape)}")
    new_hw = (int(new_hw[0]), int(new_hw[1]))
    if tuple(pos.shape[-2:]) == new_hw:
        return pos.clone()
    out = F.interpolate(pos.float(), size=new_hw, mode="bicubic", align_corners=False)
    return out.to(pos.dtype)


class _TokenAdapter(nn.Module):
    """Shared part of the adapters: position and modality embeddings added to the tokens."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = int(patch_size)
        self.embed_dim = int(embed_dim)
        self.modality_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid of an image of ``height`` × ``width`` pixels."""
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the patch size {p}; pad the "
                "batch (data_preprocessor.size_divisor) to a multiple of it"
            )
        return height // p, width // p

    def position(self, grid_h: int, grid_w: int, like: torch.Tensor) -> torch.Tensor:
        """Sin-cos position embedding plus the modality embedding, ``1 × N × D``."""
        pos = sincos_2d(self.embed_dim, grid_h, grid_w).to(like.device, like.dtype)
        return pos[None] + self.modality_embed.to(like.dtype)

    def _finish(self, maps: torch.Tensor) -> torch.Tensor:
        """B×D×h×w patch features → B×N×D tokens with position and modality embeddings."""
        tokens = maps.flatten(2).transpose(1, 2)
        return tokens + self.position(maps.shape[-2], maps.shape[-1], tokens)


class PatchAdapter(_TokenAdapter):
    """Patch embedding of a dense map (RGB: 3 channels, depth: 1).

    Args:
        in_channels: channels of the map.
        patch_size: patch side in pixels (kernel = stride of the convolution).
        embed_dim: encoder width.
    """

    def __init__(self, in_channels: int, patch_size: int, embed_dim: int) -> None:
        super().__init__(patch_size, embed_dim)
        self.in_channels = int(in_channels)
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W map → B×N×D tokens (row-major patch order)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a B×{self.in_channels}×H×W map, got shape {tuple(x.shape)}")
        self.grid(*x.shape[-2:])
        return self._finish(self.proj(x))


class SemSegAdapter(_TokenAdapter):
    """Semantic label map → tokens via a per-pixel class embedding at 1/4 resolution.

    The label map is downsampled by 4 with nearest neighbour (a label is never interpolated),
    every pixel looks up a learned ``class_dim``-d embedding, and a convolution with kernel =
    stride = ``patch_size / 4`` makes one token per patch.

    **Unlabelled pixels.** The ignore value (255) is mapped to an extra learned "unknown" class,
    index ``num_classes`` of the embedding table (so the table has ``num_classes + 1`` rows): an
    unlabelled region is then visible to the encoder as such rather than as a zero vector that a
    bias would make indistinguishable from a class. (The official MultiMAE code offers a fixed
    zero ``padding_idx`` row instead; a learned row costs 64 parameters and lets the model say
    "unknown" in its own way.) Any other label outside ``[0, num_classes)`` is an error (the
    embedding lookup raises).

    Args:
        num_classes: number of semantic classes.
        patch_size: patch side in pixels; must be a multiple of 4.
        embed_dim: encoder width.
        class_dim: width of the class embedding (64 in MultiMAE).
        ignore_index: the label of unlabelled pixels.
    """

    def __init__(
        self,
        num_classes: int,
        patch_size: int,
        embed_dim: int,
        class_dim: int = 64,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(patch_size, embed_dim)
        if patch_size % 4:
            raise ValueError(
                f"the semseg adapter works at 1/4 resolution and needs patch_size divisible by 4, "
                f"got patch_size={patch_size}"
            )
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_embed = nn.Embedding(self.num_classes + 1, class_dim)
        nn.init.trunc_normal_(self.class_embed.weight, std=0.02)
        stride = patch_size // 4
        self.proj = nn.Conv2d(class_dim, embed_dim, kernel_size=stride, stride=stride)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """B×H×W integer labels → B×N×D tokens (row-major patch order)."""
        if labels.dim() != 3:
            raise ValueError(f"expected a B×H×W label map, got shape {tuple(labels.shape)}")
        self.grid(*labels.shape[-2:])
        small = F.interpolate(labels[:, None].float(), scale_factor=0.25, mode="nearest")
        small = small[:, 0].long()
        small = torch.where(
            small == self.ignore_index, torch.full_like(small, self.num_classes), small
        )
        maps = self.class_embed(small).permute(0, 3, 1, 2)
        return self._finish(self.proj(maps))


class GlobalToken(nn.Module):
    """The one learned global token, prepended to the visible tokens of every sample.

    It carries no position or modality embedding. When the encoder is exported to a timm ViT
    (:meth:`MultiMAE.encoder_state_dict`) it becomes the class token, whose position slot is zero.

    Args:
        embed_dim: encoder width.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.token, std=0.02)

    def forward(self, batch_size: int) -> torch.Tensor:
        """The token repeated for a batch, ``B × 1 × D``."""
        return self.token.expand(batch_size, -1, -1)


def build_adapter(modality: str, settings: dict, patch_size: int, embed_dim: int) -> nn.Module:
    """The input adapter of one modality (``rgb``, ``depth`` or ``semseg``)."""
    if modality == "rgb":
        return PatchAdapter(3, patch_size, embed_dim)
    if modality == "depth":
        return PatchAdapter(1, patch_size, embed_dim)
    if modality == "semseg":
        if "num_classes" not in settings:
            raise ValueError("modalities.semseg needs num_classes, e.g. dict(num_classes=7)")
        return SemSegAdapter(
            int(settings["num_classes"]),
            patch_size,
            embed_dim,
            class_dim=int(settings.get("class_dim", 64)),
        )
    raise ValueError(f"modalities: unknown modality {modality!r}; known: rgb, depth, semseg")
