"""MultiMAE pretraining as an mmengine model: a timm ViT learns from RGB, depth and semantics.

MultiMAE (Bachmann et al., ECCV 2022) shows a ViT a fixed number of visible tokens drawn from
several modalities (:mod:`.masking`) and reconstructs every modality from them (:mod:`.output_adapters`,
:mod:`.losses`). Here the encoder is any timm ``vit_*`` model, of which only ``blocks``,
``norm_pre`` and ``norm`` are used (the input adapters of :mod:`.adapters` replace its patch and
position embeddings), so :meth:`MultiMAE.encoder_state_dict` exports exactly the weights a
``TimmBackbone`` with the same timm name and kwargs needs.

Data is the multitask pipeline's batch: ``inputs`` (the normalized RGB image, after
``MultiTaskDataPreprocessor``) and ``targets`` with ``depth`` (B×1×H×W metres, 0 = invalid) and
``semseg`` (B×H×W int64, 255 = unlabelled); tasks the model is not configured with (normals,
edge, ...) are ignored. The RGB reconstruction target is the normalized input image.

**Masks are reproducible.** In training they come from a ``torch.Generator`` seeded from
``seed``, the rank and mmengine's ``MessageHub`` iteration (the house pattern of
:func:`~vision_mtl.models.seeding.iteration_generator`); in eval mode from ``eval_seed``
alone, so every evaluation batch of a given size is masked the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from mmengine.dist import get_rank
from mmengine.model import BaseModel
from torch import nn

from vision_mtl.models.multimae.adapters import GlobalToken, build_adapter
from vision_mtl.models.multimae.checkpoint import multimae_to_timm
from vision_mtl.models.multimae.losses import (
    depth_loss,
    rgb_loss,
    semseg_loss,
    standardize_depth,
)
from vision_mtl.models.multimae.masking import ModalityMask, dirichlet_masks
from vision_mtl.models.multimae.output_adapters import OutputAdapter, patchify, unpatchify
from vision_mtl.models.seeding import iteration_generator
from vision_mtl.registry import MODELS
from vision_mtl.tasks import get_task

MODALITIES = ("rgb", "depth", "semseg")
_DECODER_DEFAULTS = dict(dim=256, depth=2, num_heads=8, mlp_ratio=4.0)
_RANK_MIX = 1_000_003  # spreads ranks' seeds apart, so ranks draw different masks


def _pair(value: int | Sequence[int], key: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{key} must be an int or a pair (H, W) of ints, got {value!r}")


@MODELS.register_module()
class MultiMAE(BaseModel):
    """Multi-modal masked autoencoder over a timm ViT encoder.

    Args:
        encoder: ``dict(model_name="vit_tiny_patch16_224", model_kwargs=dict(patch_size=8, ...))``;
            built with ``timm.create_model(model_name, num_classes=0, global_pool="",
            **model_kwargs)``. ``model_kwargs.img_size`` defaults to ``image_size`` and must equal
            it if given.
        modalities: modality → settings, of ``rgb`` (none), ``depth`` (none), ``semseg``
            (``num_classes``, optional ``class_dim``, default 64). A list of names uses empty
            settings.
        num_visible: visible tokens per sample over all modalities, at most their token count.
        image_size: the pretraining size (H, W) (or one int); must be divisible by the patch size.
            Defaults to ``encoder.model_kwargs.img_size``. Inputs of other sizes divisible by the
            patch also work (sin-cos positions are computed per grid).
        alpha: Dirichlet concentration of the budget split.
        sample_subsets: give the budget to a random subset of modalities per sample
            (:mod:`.masking`).
        decoder: ``dim`` (256), ``depth`` (2), ``num_heads`` (8), ``mlp_ratio`` (4) of every
            modality's decoder.
        loss_weights: modality → weight (default 1 each).
        norm_pix: RGB loss on per-patch standardized targets.
        seed: base seed of the training masks.
        eval_seed: seed of the masks in eval mode.
        data_preprocessor: batching/normalization config.
        init_cfg: mmengine init config.
    """

    def __init__(
        self,
        encoder: dict,
        modalities: dict[str, dict] | Sequence[str],
        num_visible: int,
        image_size: int | Sequence[int] | None = None,
        alpha: float = 1.0,
        sample_subsets: bool = False,
        decoder: dict | None = None,
        loss_weights: dict[str, float] | None = None,
        norm_pix: bool = True,
        seed: int = 0,
        eval_seed: int = 0,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        preprocessor = MODELS.build(
            dict(data_preprocessor or dict(type="MultiTaskDataPreprocessor"))
        )
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        settings = dict(modalities) if isinstance(modalities, dict) else {m: {} for m in modalities}
        if not settings:
            raise ValueError("modalities is empty: configure at least one of rgb, depth, semseg")
        for name in settings:
            if name not in MODALITIES:
                raise ValueError(
                    f"modalities: unknown modality {name!r}; known: {', '.join(MODALITIES)}"
                )
        self.modalities = list(settings)
        self.modality_settings = {m: dict(settings[m] or {}) for m in self.modalities}
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.sample_subsets = bool(sample_subsets)
        self.norm_pix = bool(norm_pix)
        self.seed = int(seed)
        self.eval_seed = int(eval_seed)

        self._build_encoder(dict(encoder), image_size)
        tokens_per_modality = (self.image_size[0] // self.patch_size) * (
            self.image_size[1] // self.patch_size
        )
        total = tokens_per_modality * len(self.modalities)
        if not isinstance(num_visible, int) or not 1 <= num_visible <= total:
            raise ValueError(
                f"num_visible={num_visible!r} must be an int between 1 and the {total} tokens of "
                f"{len(self.modalities)} modalities at image_size={self.image_size} with patch "
                f"{self.patch_size}"
            )
        self.num_visible = num_visible

        dec = dict(_DECODER_DEFAULTS)
        for key, value in (decoder or {}).items():
            if key not in _DECODER_DEFAULTS:
                raise ValueError(f"decoder: unknown key {key!r}={value!r}; known: {list(dec)}")
            dec[key] = value
        if int(dec["dim"]) % 4:
            raise ValueError(
                f"decoder.dim={dec['dim']!r} must be divisible by 4 (sin-cos positions)"
            )
        weights = dict(loss_weights or {})
        for key, value in weights.items():
            if key not in self.modalities:
                raise ValueError(f"loss_weights: {key!r}={value!r} names no configured modality")
        self.loss_weights = {m: float(weights.get(m, 1.0)) for m in self.modalities}

        self.global_token = GlobalToken(self.embed_dim)
        self.adapters = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for m in self.modalities:
            self.adapters[m] = build_adapter(
                m, self.modality_settings[m], self.patch_size, self.embed_dim
            )
            out_channels = {"rgb": 3, "depth": 1}.get(m) or self.adapters[m].num_classes
            self.decoders[m] = OutputAdapter(
                self.embed_dim,
                out_channels,
                self.patch_size,
                dim=int(dec["dim"]),
                depth=int(dec["depth"]),
                num_heads=int(dec["num_heads"]),
                mlp_ratio=float(dec["mlp_ratio"]),
                modalities=tuple(self.modalities),
                modality=m,
            )

    # ------------------------------------------------------------------ construction
    def _build_encoder(self, cfg: dict, image_size: int | Sequence[int] | None) -> None:
        """Create the timm ViT, keep its blocks and norms, record its token layout."""
        if "model_name" not in cfg:
            raise ValueError("encoder needs model_name, e.g. 'vit_tiny_patch16_224'")
        name = cfg.pop("model_name")
        kwargs = dict(cfg.pop("model_kwargs", None) or {})
        if cfg:
            raise ValueError(
                f"encoder: unknown keys {sorted(cfg)}; known: model_name, model_kwargs"
            )
        if image_size is None:
            if "img_size" not in kwargs:
                raise ValueError("image_size is required (or encoder.model_kwargs.img_size)")
            image_size = kwargs["img_size"]
        self.image_size = _pair(image_size, "image_size")
        if "img_size" in kwargs and _pair(kwargs["img_size"], "encoder.model_kwargs.img_size") != (
            self.image_size
        ):
            raise ValueError(
                f"encoder.model_kwargs.img_size={kwargs['img_size']!r} differs from "
                f"image_size={self.image_size}"
            )
        kwargs["img_size"] = self.image_size
        vit = timm.create_model(name, num_classes=0, global_pool="", **kwargs)
        needed = ("blocks", "norm", "patch_embed", "embed_dim", "pos_embed")
        if not all(hasattr(vit, a) for a in needed):
            raise ValueError(f"encoder.model_name={name!r} is not a timm VisionTransformer")
        patch = tuple(vit.patch_embed.patch_size)
        if patch[0] != patch[1]:
            raise ValueError(f"encoder patch size must be square, got {patch}")
        self.patch_size = int(patch[0])
        h, w = self.image_size
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"image_size={self.image_size} is not divisible by the encoder's patch size "
                f"{self.patch_size}"
            )
        if getattr(vit, "num_reg_tokens", 0):
            raise ValueError(f"encoder {name!r}: register tokens are not supported")
        extra = [k for k in vit.patch_embed.state_dict() if not k.startswith("proj.")]
        if extra or vit.pos_embed is None:
            raise ValueError(
                f"encoder {name!r}: a patch embedding with {extra} or without a position table "
                "cannot be exported to the timm model"
            )
        self.embed_dim = int(vit.embed_dim)
        self.norm_pre = vit.norm_pre
        self.blocks = vit.blocks
        self.norm = vit.norm
        self.timm_layout = dict(
            model_name=name,
            model_kwargs=kwargs,
            class_token=bool(vit.has_class_token),
            no_embed_class=bool(vit.no_embed_class),
            grid=tuple(int(g) for g in vit.patch_embed.grid_size),
        )

    # ------------------------------------------------------------------ pipeline pieces
    def _generator(self) -> torch.Generator:
        """Training: seeded by (seed, rank, MessageHub iter); eval: by ``eval_seed``."""
        if self.training:
            return iteration_generator(self.seed + _RANK_MIX * get_rank())
        return torch.Generator().manual_seed(self.eval_seed)

    def modality_inputs(
        self, inputs: torch.Tensor, targets: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The configured modalities' maps from a batch, and the depth validity (or None).

        ``rgb`` is ``inputs``; ``depth`` is standardized per image (:func:`.standardize_depth`,
        invalid pixels 0); ``semseg`` is the label map as given.
        """
        targets = targets or {}
        maps: dict[str, torch.Tensor] = {}
        valid = None
        for m in self.modalities:
            if m == "rgb":
                maps[m] = inputs
                continue
            if m not in targets:
                raise KeyError(f"the batch carries no {m!r} target for MultiMAE modality {m!r}")
            if m == "depth":
                depth = targets[m]
                depth = depth[:, None] if depth.dim() == 3 else depth
                maps[m], valid = standardize_depth(depth, float(get_task("depth").ignore_value))
            else:
                maps[m] = targets[m].long()
        sizes = {tuple(x.shape[-2:]) for x in maps.values()}
        if len(sizes) != 1:
            raise ValueError(f"modalities differ in size: {sizes}")
        return maps, valid

    def encode(
        self, tokens: dict[str, torch.Tensor], masks: dict[str, ModalityMask]
    ) -> torch.Tensor:
        """Encoder output ``B × (1 + V) × D``: the global token, then the visible tokens.

        Visible tokens are ordered by modality (config order), then by patch index.
        """
        names = list(tokens)
        all_tokens = torch.cat([tokens[m] for m in names], dim=1)
        masked = torch.cat([masks[m].mask for m in names], dim=1).to(all_tokens.device)
        b, _, d = all_tokens.shape
        visible = all_tokens[~masked].reshape(b, -1, d)
        x = torch.cat([self.global_token(b).to(visible.dtype), visible], dim=1)
        x = self.norm_pre(x)
        x = self.blocks(x)
        return self.norm(x)

    def decode(
        self,
        encoded: torch.Tensor,
        masks: dict[str, ModalityMask],
        grid: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """Every modality's patch predictions, ``B × N × (p²·C)``."""
        names = list(masks)
        masked = torch.cat([masks[m].mask for m in names], dim=1).to(encoded.device)
        b, d = encoded.shape[0], encoded.shape[-1]
        scattered = encoded.new_zeros(b, masked.shape[1], d)
        scattered = scattered.masked_scatter(~masked[..., None], encoded[:, 1:])
        own = scattered.split([masks[m].mask.shape[1] for m in names], dim=1)
        return {
            m: self.decoders[m](encoded, own[i], {n: masks[n].mask for n in names}, grid)
            for i, m in enumerate(names)
        }

    def reconstruct(
        self,
        inputs: torch.Tensor,
        targets: dict[str, torch.Tensor] | None,
        generator: torch.Generator | None = None,
    ) -> tuple[dict, dict[str, ModalityMask], dict[str, torch.Tensor], torch.Tensor | None]:
        """Mask, encode and decode a batch.

        Returns:
            ``(patches, masks, maps, depth_valid)``: per-modality patch predictions, the masks,
            the modality maps (the reconstruction targets) and the depth validity.
        """
        maps, valid = self.modality_inputs(inputs, targets)
        tokens = {m: self.adapters[m](maps[m]) for m in self.modalities}
        h, w = inputs.shape[-2:]
        grid = (h // self.patch_size, w // self.patch_size)
        count = grid[0] * grid[1]
        masks = dirichlet_masks(
            {m: count for m in self.modalities},
            self.num_visible,
            self.alpha,
            generator if generator is not None else self._generator(),
            inputs.shape[0],
            self.sample_subsets,
        )
        patches = self.decode(self.encode(tokens, masks), masks, grid)
        return patches, masks, maps, valid

    def losses(
        self,
        patches: dict[str, torch.Tensor],
        masks: dict[str, ModalityMask],
        maps: dict[str, torch.Tensor],
        depth_valid: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Weighted masked-patch losses, ``loss_<modality>``."""
        p = self.patch_size
        out = {}
        for m, pred in patches.items():
            mask = masks[m].mask.to(pred.device)
            if m == "rgb":
                value = rgb_loss(pred, maps[m], mask, p, self.norm_pix)
            elif m == "depth":
                value = depth_loss(pred, maps[m], depth_valid, mask, p)
            else:
                value = semseg_loss(pred, maps[m], mask, p, self.adapters[m].ignore_index)
            out[f"loss_{m}"] = self.loss_weights[m] * value
        return out

    # ------------------------------------------------------------------ mmengine interface
    def forward(
        self,
        inputs: torch.Tensor,
        targets: dict[str, torch.Tensor] | None = None,
        meta: list[dict] | None = None,
        mode: str = "tensor",
    ):
        """``loss``: ``loss_<modality>``; ``predict``: per-sample dicts; ``tensor``: full maps.

        ``tensor`` returns modality → ``B × C × H × W``: RGB as predicted (per-patch normalized
        space when ``norm_pix``), depth standardized, semseg logits.

        ``predict`` returns one dict per sample::

            dict(
                pred={"rgb": 3×H×W float, "depth": 1×H×W float, "semseg": H×W int64},
                mask={modality: H×W bool},  # True = the pixel's patch was masked
                target={"rgb": 3×H×W float, "depth": 1×H×W float, "semseg": H×W int64},
            )

        with only the configured modalities; RGB in the normalized-image space of ``inputs``
        (with ``norm_pix`` every predicted patch is mapped back with its target patch's mean and
        standard deviation, as MultiMAE's pictures do); depth standardized per image (target 0
        at invalid pixels); semseg the argmax class (target 255 = unlabelled). Maps are cropped
        to ``meta[i]["img_shape"]`` when given.
        """
        if mode not in ("loss", "predict", "tensor"):
            raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
        patches, masks, maps, valid = self.reconstruct(inputs, targets)
        if mode == "loss":
            return self.losses(patches, masks, maps, valid)
        grid = (inputs.shape[-2] // self.patch_size, inputs.shape[-1] // self.patch_size)
        full = {m: unpatchify(x, self.patch_size, grid) for m, x in patches.items()}
        if mode == "tensor":
            return full
        return self._predictions(patches, masks, maps, grid, meta)

    @torch.no_grad()
    def _predictions(
        self,
        patches: dict[str, torch.Tensor],
        masks: dict[str, ModalityMask],
        maps: dict[str, torch.Tensor],
        grid: tuple[int, int],
        meta: list[dict] | None,
    ) -> list[dict]:
        """The per-sample ``predict`` format of :meth:`forward`."""
        p = self.patch_size
        pred, mask, target = {}, {}, {}
        for m, x in patches.items():
            if m == "rgb" and self.norm_pix:
                t = patchify(maps[m], p)
                mean = t.mean(dim=-1, keepdim=True)
                std = (t.var(dim=-1, keepdim=True) + 1e-6).sqrt()
                x = x * std + mean
            full = unpatchify(x, p, grid)
            pred[m] = full.argmax(dim=1) if m == "semseg" else full
            token_mask = masks[m].mask.reshape(-1, *grid).to(x.device)
            mask[m] = token_mask.repeat_interleave(p, dim=1).repeat_interleave(p, dim=2)
            target[m] = maps[m]
        results = []
        for i in range(len(next(iter(pred.values())))):
            shape = meta[i].get("img_shape") if meta and i < len(meta) else None
            h, w = (int(shape[0]), int(shape[1])) if shape else (grid[0] * p, grid[1] * p)
            results.append(
                dict(
                    pred={m: v[i][..., :h, :w].cpu() for m, v in pred.items()},
                    mask={m: v[i][..., :h, :w].cpu() for m, v in mask.items()},
                    target={m: v[i][..., :h, :w].cpu() for m, v in target.items()},
                )
            )
        return results

    # ------------------------------------------------------------------ export
    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under timm ViT key names, for ``TimmBackbone`` initialization.

        The keys are exactly the state dict of ``timm.create_model(model_name, num_classes=0,
        **model_kwargs)`` with this model's ``encoder`` settings (``img_size`` = ``image_size``),
        so ``load_state_dict(strict=True)`` succeeds on it:

        * ``patch_embed.proj.weight`` / ``.bias`` — the RGB input adapter's convolution;
        * ``pos_embed`` — ``1 × (P + N) × D`` at the pretraining grid ``image_size / patch``: the
          sin-cos table of the RGB adapter **plus its modality embedding** (a constant, folded in
          so the timm model computes exactly the RGB tokens of the adapter); ``P = 1`` zero row
          first when the timm model has a class token that takes a position
          (``class_token`` and not ``no_embed_class``), else ``P = 0``;
        * ``cls_token`` — the global token (only if the timm model has a class token);
        * ``blocks.*``, ``norm.*`` and ``norm_pre.*`` (the latter only if the ViT has a pre-norm).

        Not covered (and not present for ``num_classes=0``): the classifier ``head``,
        ``fc_norm``/``attn_pool`` of pooled variants; register tokens are refused at build time.
        With ``dynamic_img_size=True`` timm resamples ``pos_embed`` to other grids itself.
        ``TimmBackbone`` prunes the final ``norm`` unless ``norm_last=True``: a loader into a
        pruned one must drop the ``norm.*`` keys. The depth and semseg adapters and the decoders are not exported.
        The mapping is :func:`.checkpoint.multimae_to_timm` (shared with checkpoint loading).

        Raises:
            ValueError: if the model has no ``rgb`` modality.
        """
        if "rgb" not in self.adapters:
            raise ValueError("encoder_state_dict needs the rgb modality (its patch embedding)")
        layout = self.timm_layout
        return multimae_to_timm(
            self.state_dict(),
            layout["grid"],
            class_token=layout["class_token"],
            no_embed_class=layout["no_embed_class"],
        )
