# TaskExpert (Ye & Xu, ICCV 2023) on NYUD-v2 with ViT-L/16 (blocks 6, 12, 18, 24): a mixture of 8 experts of
# width 256 with per-task, per-sample gates at each tapped block, a multi-task memory read and
# updated at each, and the final memory brought to stride 4 for the heads; the InvPT recipe and
# loss weights of the baseline config. TaskExpert has no public code: docs/decoders.md lists the
# choices made where the paper is silent.
_base_ = ["../baseline/baseline_vit-l16_2xb-40k_nyud-448x576.py"]

model = dict(
    decoder=dict(
        _delete_=True,
        type="TaskExpertDecoder",
        num_experts=8,
        channels=256,
        memory_update="residual",
        supervise_levels=True,
        out_stride=4,
    )
)
