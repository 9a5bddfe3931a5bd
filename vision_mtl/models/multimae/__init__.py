"""MultiMAE pretraining (Bachmann et al., ECCV 2022) of a timm ViT on RGB, depth and semantics."""

from vision_mtl.models.multimae.adapters import (
    GlobalToken,
    PatchAdapter,
    SemSegAdapter,
    build_adapter,
    resample_pos_embed,
    sincos_2d,
)
from vision_mtl.models.multimae.checkpoint import (
    OFFICIAL_TO_OURS,
    is_multimae_checkpoint,
    load_multimae_into_vit,
    multimae_to_timm,
    official_to_ours,
)
from vision_mtl.models.multimae.losses import (
    depth_loss,
    normalize_patches,
    rgb_loss,
    semseg_loss,
    standardize_depth,
)
from vision_mtl.models.multimae.masking import ModalityMask, dirichlet_masks, split_budget
from vision_mtl.models.multimae.model import MODALITIES, MultiMAE
from vision_mtl.models.multimae.output_adapters import (
    CrossAttentionLayer,
    OutputAdapter,
    patchify,
    unpatchify,
)

__all__ = [
    "MODALITIES",
    "OFFICIAL_TO_OURS",
    "CrossAttentionLayer",
    "GlobalToken",
    "ModalityMask",
    "MultiMAE",
    "OutputAdapter",
    "PatchAdapter",
    "SemSegAdapter",
    "build_adapter",
    "depth_loss",
    "dirichlet_masks",
    "is_multimae_checkpoint",
    "load_multimae_into_vit",
    "multimae_to_timm",
    "normalize_patches",
    "official_to_ours",
    "patchify",
    "resample_pos_embed",
    "rgb_loss",
    "semseg_loss",
    "sincos_2d",
    "split_budget",
    "standardize_depth",
    "unpatchify",
]
