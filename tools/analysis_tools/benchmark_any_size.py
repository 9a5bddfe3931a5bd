"""PyTorch and the edge runtime on real photographs at native size, in resize and slide modes.

``python tools/analysis_tools/benchmark_any_size.py CONFIG CHECKPOINT [--out FILE]``

Exports the model at its config's canvas (tools/export.py's checked path), then predicts
scikit-image's astronaut, coffee and chelsea photographs — sizes nobody chose for this model —
with :func:`vision_mtl.apis.inference` (PyTorch) and the ONNX Runtime deployment (what
``deploy/infer.py`` runs), in ``resize`` and ``slide`` modes, and reports per photo and mode the
largest difference per task (class ids: share of pixels that differ) and both paths' seconds.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vision_mtl.analysis_cli import analysis_parser  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = analysis_parser(__doc__, "any_size")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    args = parser.parse_args(argv)
    from skimage import data

    from vision_mtl.apis import inference, init_model, load_config
    from vision_mtl.export.verified import export_verified
    from vision_mtl.input_size import config_input_size
    from vision_mtl.runtime import OrtRunner
    from vision_mtl.utils import write_json

    model = init_model(args.config, args.checkpoint, device="cpu")
    canvas = config_input_size(load_config(args.config))
    photos = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea")}
    report = dict(config=args.config, canvas=list(canvas), photos={})
    with tempfile.TemporaryDirectory() as directory:
        deployment = export_verified(model, Path(directory), canvas, parity_samples=1).deployment
        runner = OrtRunner(deployment, providers=["CPUExecutionProvider"])
        for name, photo in photos.items():
            for mode in ("resize", "slide"):
                tick = time.perf_counter()
                torch_pred = inference(model, photo, mode=mode)
                torch_s = time.perf_counter() - tick
                tick = time.perf_counter()
                ort_pred = deployment.predict(runner.run, [photo], mode)[0]
                ort_s = time.perf_counter() - tick
                diffs = {}
                for task, value in torch_pred.items():
                    other = ort_pred[task]
                    if np.issubdtype(value.dtype, np.integer):
                        diffs[task] = dict(differing_pixels=float((value != other).mean()))
                    else:
                        diffs[task] = dict(max_abs=float(np.abs(value - other).max()))
                key = f"{name} {photo.shape[0]}x{photo.shape[1]} {mode}"
                report["photos"][key] = dict(torch_s=torch_s, ort_s=ort_s, differences=diffs)
                print(key, json.dumps(report["photos"][key]))
    write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()
