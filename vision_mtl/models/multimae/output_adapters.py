"""MultiMAE output adapters: one light decoder per modality, reconstructing every patch.

Each modality's decoder builds one query per patch of its grid: a learned mask token where the
patch was masked, the (projected) encoder output of that patch where it was visible, plus the
fixed sin-cos position embedding at the decoder width and the decoder's learned embedding of its
own modality. The queries read the whole encoder output (all modalities and the global token,
projected to the decoder width) through one cross-attention layer: that is where information
flows between modalities. As in the official code (``SpatialOutputAdapter``), every projected
encoder token gets the sin-cos position of its patch and the embedding of its modality added
before it serves as context, so a query finds the tokens of its neighbourhood by position from
the first step instead of having to decode positions from the encoder's features (without them,
the decoders of a short run ignore the context and predict the average scene). ``depth`` timm
transformer blocks then refine the queries among themselves, and a linear layer maps each query
to its patch's pixels (``patch² × channels``; semseg: ``patch² × num_classes`` logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from vision_mtl.models.multimae.adapters import sincos_2d


class CrossAttentionLayer(nn.Module):
    """Pre-norm cross-attention (queries → context) followed by a pre-norm MLP, both residual.

    Args:
        dim: width of queries and context.
        num_heads: attention heads; must divide ``dim``.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"decoder.num_heads={num_heads} must divide decoder.dim={dim}")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``B × Nq × dim`` queries attend to ``B × Nc × dim`` context; returns ``B × Nq × dim``."""
        b, nq, dim = queries.shape
        heads = self.num_heads
        q = self.q(self.norm_q(queries)).view(b, nq, heads, dim // heads).transpose(1, 2)
        k, v = self.kv(self.norm_kv(context)).view(b, -1, 2, heads, dim // heads).unbind(2)
        attn = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2))
        x = queries + self.proj(attn.transpose(1, 2).reshape(b, nq, dim))
        return x + self.mlp(self.norm_mlp(x))


class OutputAdapter(nn.Module):
    """The decoder of one modality.

    Args:
        encoder_dim: width of the encoder tokens.
        out_channels: values per pixel of the reconstruction (RGB 3, depth 1, semseg
            ``num_classes`` logits).
        patch_size: patch side in pixels.
        dim: decoder width (256 in MultiMAE).
        depth: transformer blocks after the cross-attention layer.
        num_heads: attention heads of every decoder layer.
        mlp_ratio: MLP hidden width relative to ``dim``.
        modalities: the encoder's modalities in token order (one learned embedding each,
            added to their context tokens); must include this decoder's ``modality``.
        modality: the modality this decoder reconstructs (its queries get its embedding).
    """

    def __init__(
        self,
        encoder_dim: int,
        out_channels: int,
        patch_size: int,
        dim: int = 256,
        depth: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        modalities: tuple[str, ...] = ("rgb",),
        modality: str = "rgb",
    ) -> None:
        super().__init__()
        if modality not in modalities:
            raise ValueError(f"modality {modality!r} is not among the modalities {modalities}")
        self.modalities = tuple(modalities)
        self.modality = modality
        self.modality_embed = nn.Parameter(torch.zeros(len(self.modalities), dim))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.dim = int(dim)
        self.patch_size = int(patch_size)
        self.out_channels = int(out_channels)
        self.proj_context = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.cross = CrossAttentionLayer(dim, num_heads, mlp_ratio)
        self.blocks = nn.Sequential(
            *[Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch_size * patch_size * out_channels)

    def forward(
        self,
        encoded: torch.Tensor,
        own_tokens: torch.Tensor,
        masks: dict[str, torch.Tensor],
        grid: tuple[int, int],
    ) -> torch.Tensor:
        """Predict every patch of this modality.

        Args:
            encoded: the whole encoder output, ``B × (1 + V) × encoder_dim``: the global token,
                then the visible tokens by modality (``modalities`` order) and patch index.
            own_tokens: this modality's encoder outputs scattered back to their grid positions,
                ``B × N × encoder_dim`` (any values at masked positions: they are replaced).
            masks: modality → ``B × N`` bool (True = masked), for exactly ``modalities``.
            grid: the patch grid ``(h, w)`` with ``h * w == N``.

        Returns:
            ``B × N × (patch² · out_channels)`` patch predictions, row-major patches, each patch
            laid out as (row, column, channel) — see :func:`unpatchify`.
        """
        if tuple(masks) != self.modalities:
            raise ValueError(f"masks are for {tuple(masks)}, the decoder expects {self.modalities}")
        context = self.proj_context(encoded)
        pos = sincos_2d(self.dim, grid[0], grid[1]).to(context.device, context.dtype)
        embed = self.modality_embed.to(context.dtype)
        # Position + modality embedding of every token of every modality, in encoder order;
        # the visible ones are picked with the same mask the encoder used.
        every = torch.cat([pos + embed[i] for i in range(len(self.modalities))], dim=0)
        masked = torch.cat(list(masks.values()), dim=1).to(context.device)
        b = context.shape[0]
        visible = every.expand(b, -1, -1)[~masked].reshape(b, -1, self.dim)
        context = torch.cat([context[:, :1], context[:, 1:] + visible], dim=1)
        own = self.proj_context(own_tokens)
        mask = masks[self.modality].to(context.device)
        queries = torch.where(mask[..., None], self.mask_token.to(own.dtype), own)
        own_embed = embed[self.modalities.index(self.modality)]
        x = self.cross(queries + pos[None] + own_embed, context)
        x = self.blocks(x)
        return self.head(self.norm(x))


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``B × C × H × W`` → ``B × N × (p·p·C)``, row-major patches, each as (row, column, channel)."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``B × N × (p·p·C)`` → ``B × C × H × W``."""
    b, n, d = patches.shape
    p = patch_size
    gh, gw = grid
    c = d // (p * p)
    x = patches.reshape(b, gh, gw, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)
