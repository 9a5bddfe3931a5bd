# The edge candidate (issue 22): ResNet-18 trained from scratch, shared by all tasks through the
# baseline decoder. Every block is conv–BN–ReLU, the pattern int8 kernels fuse: ONNX Runtime's
# INT8 runs it at 0.37-0.42x its fp32 latency (EfficientViT-B1: 0.61-0.85x), and INT8 cost
# -0.006 Δm on SynthScenes (docs/deploy.md, docs/benchmarks/edge_candidates.json).
model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=32),
    backbone=dict(
        type="TimmBackbone",
        model_name="resnet18",
        out_indices=[1, 2, 3, 4],
        pretrained=None,
    ),
    decoder=dict(type="BaselineDecoder", channels=64, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
)
