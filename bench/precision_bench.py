"""Benchmark: what backend.precision=int8 and bf16 cost in detections, against fp32, on a trained model.

    .venv/bin/python bench/precision_bench.py [--checkpoint PATH] [--data data/demo] [--ann test.json]

Without --checkpoint it uses the model the test suite trains on the demo data
(runs/test-cache/demo-model-*/model.pth, made by `make test`). For fp32 (ONNX Runtime's CPU kernels), int8
(ONNX Runtime, the network quantized as retrain does it, calibrated on 32 images of the pool split, not the
evaluated ones) and bf16 (OpenVINO, where its provider offers BF16 on this CPU) it prints the network's time
per image and COCO mAP / mAP@50 on the annotated images, at a low score threshold (0.05: the ranking) and at
the serving threshold; then, detection by detection, how far each moves from fp32: boxes matched (same
label, best IoU), score differences, boxes that come or go, and for bf16 whether every detection clear of
the threshold is kept (same label, IoU >= 0.98, score within 0.02). bf16 depends on the CPU's bfloat16 units, so
this is where it is checked; the tests check only that bf16 is accepted or refused as OpenVINO reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from backend.ort_session import bf16_refusal_here  # noqa: E402
from bench.serve_bench import network_only  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402


def coco_dets(gt: dict, outputs) -> list[dict]:
    cats = [c["id"] for c in gt["categories"]]
    return [{"image_id": im["id"], "category_id": cats[int(label)], "score": float(score),
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            for im, d in zip(gt["images"], outputs) for b, score, label in zip(d.boxes, d.scores, d.labels)]


def compare(reference, candidate) -> dict:
    """For every reference detection: the same-label candidate box with the best IoU and its score gap."""
    from backend.onnx_runtime import box_iou

    ious, gaps, lost = [], [], []
    for r, c in zip(reference, candidate):
        for box, score, label in zip(r.boxes, r.scores, r.labels):
            pairs = [(box_iou(box, cb), abs(score - cs))
                     for cb, cs, cl in zip(c.boxes, c.scores, c.labels) if cl == label]
            iou, gap = max(pairs, default=(0.0, 1.0))
            if iou < 0.5:
                lost.append(float(score))
            else:
                ious.append(iou)
                gaps.append(gap)
    return {"matched": len(gaps), "lost": lost, "iou": np.array(ious), "gap": np.array(gaps)}


def kept_clear(reference, candidate, threshold: float, margin: float = 0.02) -> tuple[int, int]:
    """(kept, clear): of the reference detections clear of the threshold (score >= threshold + margin), how
    many the candidate keeps with the same label, IoU >= 0.98 and a score within `margin`. A lower precision
    may let boxes at the threshold come or go, but should keep every clear one."""
    from backend.onnx_runtime import box_iou

    kept = clear = 0
    for r, c in zip(reference, candidate):
        for box, score, label in zip(r.boxes, r.scores, r.labels):
            if score < threshold + margin:
                continue
            clear += 1
            kept += any(cl == label and box_iou(box, cb) >= 0.98 and abs(score - cs) <= margin
                        for cb, cs, cl in zip(c.boxes, c.scores, c.labels))
    return kept, clear


def trained_checkpoint(given: Path | None) -> Path:
    """`given`, else the model the test suite trains on the demo data (runs/test-cache/demo-model-*/model.pth,
    made by `make test`); exits with how to get one where there is neither."""
    cached = sorted((REPO_ROOT / "runs" / "test-cache").glob("demo-model-*/model.pth"))
    ckpt = given or next(iter(cached), None)
    if ckpt is None:
        sys.exit("no trained model: pass --checkpoint PATH, or run `make test` once (it trains the demo model)")
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "demo")
    ap.add_argument("--ann", default="test.json")
    ap.add_argument("--score-threshold", type=float, default=0.3)
    args = ap.parse_args()
    refusal = bf16_refusal_here()
    precisions = ["fp32", "int8"] + ([] if refusal else ["bf16"])
    if refusal:
        print(f"bf16 left out on this machine: {refusal}")
    ckpt = trained_checkpoint(args.checkpoint)

    from backend.images import decode
    from backend.loading import configure_threads
    from backend.onnx_runtime import load_onnx
    from backend.predictor import Predictor
    from backend.quantize import quantize_int8
    from train.evaluate import coco_eval

    configure_threads(None)
    gt_file = args.data / args.ann
    gt = json.loads(gt_file.read_text())
    images = [decode((args.data / im["file_name"]).read_bytes()).bgr for im in gt["images"]]
    tmp = Path(tempfile.mkdtemp(prefix="precision-bench-"))
    pool = json.loads((args.data / "pool.json").read_text())["images"][:32]
    calibration = [decode((args.data / im["file_name"]).read_bytes()).bgr for im in pool]
    print(f"model {ckpt}, {len(images)} images from {gt_file}")
    outputs, int8_file = {}, None
    for threshold in (0.05, args.score_threshold):
        torch_model = Predictor.load(str(ckpt), score_threshold=threshold)
        for precision in precisions:
            det = load_onnx(torch_model, tmp, score_threshold=threshold)
            if precision == "int8":
                int8_file = int8_file or quantize_int8(det.path, tmp / "model.int8.onnx",
                                                       (det.network_input([img]) for img in calibration))
                det = load_onnx(torch_model, tmp, score_threshold=threshold, onnx_file=int8_file, precision="int8")
            elif precision == "bf16":
                det = load_onnx(torch_model, tmp, score_threshold=threshold, precision="bf16")
            net_ms = network_only(det, [det.network_input([img]) for img in images])
            out = outputs[threshold, precision] = det.predict(images)
            dets = tmp / f"{precision}-{threshold}.json"
            dets.write_text(json.dumps(coco_dets(gt, out)))
            ev = coco_eval(gt_file, dets)
            print(f"score >= {threshold:<4} {precision}: {sum(len(o.scores) for o in out):5d} detections, "
                  f"mAP {ev['bbox_mAP']:.4f}, mAP@50 {ev['bbox_mAP_50']:.4f}; network {net_ms:.1f} ms per image "
                  f"({det.session.get_providers()[0]})")
        for precision in precisions[1:]:
            report(precision, outputs[threshold, "fp32"], outputs[threshold, precision], threshold)


def report(precision: str, fp32, other, threshold: float) -> None:
    c = compare(fp32, other)
    gained = compare(other, fp32)["lost"]
    near = sum(s < threshold + 0.02 for s in c["lost"])
    print(f"  {precision} against fp32: {c['matched']} matched, IoU min {c['iou'].min():.4f} / 1st pct "
          f"{np.percentile(c['iou'], 1):.4f}; score gap median {np.median(c['gap']):.1e}, 99th pct "
          f"{np.percentile(c['gap'], 99):.1e}, max {c['gap'].max():.1e}; {len(c['lost'])} fp32 boxes without a "
          f"{precision} match ({near} of them within 0.02 of the threshold), {len(gained)} {precision} boxes "
          f"without an fp32 match ({sum(s < threshold + 0.02 for s in gained)} within 0.02 of the threshold)")
    if precision != "bf16":  # int8 moves scores further by design; retrain's agreement check gates it
        return
    kept, clear = kept_clear(fp32, other, threshold)
    print(f"  {precision} keeps {kept} of the {clear} fp32 detections clear of the threshold (score >= "
          f"{threshold + 0.02:.2f}: same label, IoU >= 0.98, score within 0.02)" + ("" if kept == clear else
                                                                                    ": NOT all"))


if __name__ == "__main__":
    main()
