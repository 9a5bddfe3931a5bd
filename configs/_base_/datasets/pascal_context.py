# PASCAL-Context (multitask PASCAL_MT archive): semseg (21), human_parts, saliency, normals, edge.
# Training canvas 512x512; test images are padded to the canvas by the model's data preprocessor,
# never resized, and scored at their own size. Point data_root at the unpacked PASCALContext folder.
_base_ = ["./_common.py"]

data_root = "data/PASCALContext"
train_pipeline = [
    dict(type="MultiTaskAugment", crop_size=(512, 512)),
    dict(type="PackMultiTaskInputs"),
]
test_pipeline = [dict(type="PackMultiTaskInputs")]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type="PascalContextMTDataset", data_root=data_root, split="train", pipeline=train_pipeline
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    # edge_gt="seism": seg2bmap of the Context label map, the boundary SEISM scores against.
    dataset=dict(
        type="PascalContextMTDataset",
        data_root=data_root,
        split="val",
        edge_gt="seism",
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# As the published evaluators score: a class absent from both prediction and ground truth counts
# as IoU 0 in the mean (InvPT's meters); boundaries by SEISM's protocol against the thinned
# seg2bmap of the label map (gt_format="boundary": the dataset gives seg2bmap already) with
# 0.0075 of the image diagonal, the PASCAL-Context tolerance.
test_evaluator = dict(
    tasks=["semseg", "human_parts", "saliency", "normals", "edge"],
    metric_overrides=dict(
        semseg=dict(absent_class="zero"),
        human_parts=dict(absent_class="zero"),
        edge=dict(max_dist=0.0075, gt_format="boundary"),
    ),
)
val_evaluator = test_evaluator  # plus _common.py's fast boundary mode
