# The reparameterizable edge candidate (issue 22): RepViT-M0.9 trained from scratch in its
# multi-branch form, shared by all tasks through the baseline decoder. Its blocks' 3x3, 1x1 and
# identity branches fold into one convolution at export and before quantization-aware training
# (vision_mtl.compress.folding); ONNX Runtime's INT8 runs the folded model at 0.76-0.52x its fp32
# latency (docs/deploy.md, docs/benchmarks/edge_candidates.json).
model = dict(
    type="MultiTaskModel",
    data_preprocessor=dict(type="MultiTaskDataPreprocessor", size_divisor=32),
    backbone=dict(
        type="TimmBackbone",
        model_name="repvit_m0_9",
        out_indices=[-4, -3, -2, -1],
        pretrained=None,
    ),
    decoder=dict(type="BaselineDecoder", channels=64, out_stride=4),
    head=dict(type="ConvHead", num_convs=1),
)
