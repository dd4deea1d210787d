"""Benchmark: serving an instance segmentation model (RTMDet-Ins) — what masks cost next to boxes.

    .venv/bin/python bench/seg_bench.py --checkpoint PATH [--images 32]

On the same demo test images read from disk (no Label Studio: the model and the regions alone), every path
with the same warm-up (one pass over every image first), in ms per image:
(a) mmdet's `inference_detector` loop, with the model config's own test settings (what users run);
(b) ours in torch, the same model serving a RectangleLabels project (boxes only), (c) a PolygonLabels
    project (boxes, masks, polygons simplified at backend.polygon_tolerance), (d) a BrushLabels project
    (masks in Label Studio's RLE);
(e), (f), (g) as (b), (c), (d) with the network in ONNX Runtime (backend.runtime=auto).
Each row prints how many regions it produced and the share of its time spent turning masks into regions.
Goal: masks make serving no more than 1.5x slower than the same model's boxes alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.images import decode  # noqa: E402
from backend.labels import build_label_map  # noqa: E402
from backend.onnx_runtime import load_onnx  # noqa: E402
from backend.predictor import Predictor  # noqa: E402
from backend.results import to_prediction  # noqa: E402
from loop.common.demo_data import ensure  # noqa: E402
from loop.common.label_configs import rectangle_labels_config, segmentation_labels_config  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402
from loop.common.shapes import CLASSES  # noqa: E402

THRESHOLD = 0.3


def _serve(model, images, label_map) -> tuple[float, float, int]:
    """(ms per image, share of it turning detections into regions, regions)."""
    started, regions_s, regions = time.perf_counter(), 0.0, 0
    for img in images:
        det = model.predict([img], classes=label_map.classes)[0]
        t = time.perf_counter()
        size = (img.shape[1], img.shape[0])
        result = to_prediction(det.boxes, det.scores, det.labels, label_map, size, size, THRESHOLD, "bench",
                               det.masks)
        regions_s += time.perf_counter() - t
        regions += len(result["result"])
    total = time.perf_counter() - started
    return 1000 * total / len(images), regions_s / total, regions


def _naive(checkpoint: Path, images) -> tuple[float, float, int]:
    from mmdet.apis import inference_detector, init_detector

    predictor = Predictor.load(str(checkpoint))  # the config it carries, at its own test settings
    model = init_detector(predictor.model.cfg, device="cpu")
    model.load_state_dict(predictor.model.state_dict(), strict=False)
    model.dataset_meta = {"classes": tuple(predictor.classes)}
    started, found = time.perf_counter(), 0
    for img in images:
        found += len(inference_detector(model, img).pred_instances)
    return 1000 * (time.perf_counter() - started) / len(images), 0.0, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="an RTMDet-Ins checkpoint (slim or Runner)")
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    demo = ensure(REPO_ROOT / "data" / "demo")
    images = [decode(p.read_bytes()).bgr for p in sorted((demo / "images").glob("test_*.jpg"))[:args.images]]
    maps = {"boxes": build_label_map(rectangle_labels_config(CLASSES), list(CLASSES)),
            "polygons": build_label_map(segmentation_labels_config(CLASSES), list(CLASSES)),
            "brush": build_label_map(segmentation_labels_config(CLASSES, "BrushLabels"), list(CLASSES))}
    torch_model = Predictor.load(str(args.checkpoint), score_threshold=THRESHOLD)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = load_onnx(torch_model, Path(tmp))
        rows = [("(a) naive inference_detector loop", lambda: _naive(args.checkpoint, images))]
        for runtime, model, letters in (("torch", torch_model, "bcd"), ("ONNX Runtime", onnx_model, "efg")):
            for letter, (what, label_map) in zip(letters, maps.items()):
                rows.append((f"({letter}) ours, {runtime}, {what}",
                             lambda m=model, lm=label_map: _serve(m, images, lm)))
        results = {}
        for name, run in rows:
            run()  # the same warm-up for every path: one pass over every image
            results[name] = run()
    print(f"{len(images)} demo test images from disk, {torch_model.model_class} at {torch_model.input_size} px, "
          f"score threshold {THRESHOLD}")
    print(f"{'path':44} {'ms/image':>9} {'regions':>8} {'to regions':>11}")
    for name, (ms, share, regions) in results.items():
        print(f"{name:44} {ms:9.1f} {regions:8d} {share:10.0%}")
    for runtime, letters in (("torch", "bcd"), ("ONNX Runtime", "efg")):
        boxes, polygons, brush = (next(v[0] for k, v in results.items() if k.startswith(f"({x})")) for x in letters)
        print(f"{runtime}: polygons {polygons / boxes:.2f}x, brush {brush / boxes:.2f}x the boxes alone "
              "(goal <= 1.5x)")


if __name__ == "__main__":
    main()
