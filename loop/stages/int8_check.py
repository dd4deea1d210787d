"""The retrain-time int8 check: quantize a new version's ONNX network, calibrated on its held-out images,
and compare int8 with fp32 where it matters, held-out COCO mAP, plus how many fp32 detections int8 keeps.
The result travels with the version (model/int8_check.json, tags `int8_check`): the server serves int8 only
for a version whose check passed."""

from __future__ import annotations

import json
from pathlib import Path

from backend.images import decode
from backend.onnx_runtime import detection_agreement, open_onnx
from backend.predictor import Predictor
from backend.quantize import INT8_CHECK, INT8_FILE, int8_verdict, quantize_int8
from train.evaluate import coco_eval


def _detections_file(detections, images: list[dict], category_ids: list[int], out: Path) -> Path:
    rows = [{"image_id": im["id"], "category_id": category_ids[int(label)], "score": float(score),
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
            for im, det in zip(images, detections) for b, score, label in zip(det.boxes, det.scores, det.labels)]
    out.write_text(json.dumps(rows))
    return out


def int8_check(model_dir: Path, exported: Path, score_threshold: float, tolerance: float,
               calibration_images: int = 32) -> tuple[str, str]:
    """(passed | failed | inconclusive | unsupported, why); writes model.int8.onnx and int8_check.json."""
    if not (model_dir / "model.onnx").exists():
        return "unsupported", "no ONNX network for this model"
    reference = Predictor.load(str(model_dir / "model.pth"))  # the config's own score_thr: mAP needs the tail
    size = reference.input_size
    fp32 = open_onnx(reference, model_dir / "model.onnx", size)
    val = json.loads((exported / "val.json").read_text())
    arrays = [decode((exported / im["file_name"]).read_bytes()).bgr for im in val["images"]]
    quantize_int8(model_dir / "model.onnx", model_dir / INT8_FILE,
                  (fp32.network_input([a]) for a in arrays[:calibration_images]))
    int8 = open_onnx(reference, model_dir / INT8_FILE, size, precision="int8")
    ids = sorted(c["id"] for c in val["categories"])
    maps, outputs = {}, {}
    for name, detector in (("fp32", fp32), ("int8", int8)):
        outputs[name] = detector.predict(arrays)
        det_file = _detections_file(outputs[name], val["images"], ids, model_dir.parent / f"heldout_{name}.json")
        maps[name] = coco_eval(exported / "val.json", det_file)["bbox_mAP"]
    state, detail = int8_verdict(maps["fp32"], maps["int8"], sum(len(d.scores) for d in outputs["fp32"]), tolerance)
    kept, total = detection_agreement(outputs["fp32"], outputs["int8"], score_threshold)
    detail += (f"; int8 keeps {kept} of the {total} fp32 detections scoring >= {score_threshold} (same label, "
               "IoU >= 0.5)")
    (model_dir / INT8_CHECK).write_text(json.dumps({"state": state, "detail": detail, "fp32_mAP": maps["fp32"],
                                                    "int8_mAP": maps["int8"], "kept": kept, "compared": total}))
    return state, detail
