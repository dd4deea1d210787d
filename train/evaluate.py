"""COCO evaluation with pycocotools on detections that mmdet's CocoMetric dumped.

CocoMetric gives the headline numbers during training; for a person's plots (PR curves, per-class AP) we
need COCOeval's precision array, so the same detections are evaluated again here, never by hand-written
matching.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def coco_eval(gt_file: Path, det_file: Path | None, iou_type: str = "bbox") -> dict[str, Any]:
    """mAP, mAP@50 (keys `<iou_type>_mAP`, `<iou_type>_mAP_50`), per-class AP and the precision array
    [T, R, K] (area all, 100 dets); `iou_type` bbox for boxes, segm for instance masks (COCO RLE dets)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dets = json.loads(Path(det_file).read_text()) if det_file and Path(det_file).exists() else []
        if not dets or not gt.getAnnIds():
            return {f"{iou_type}_mAP": 0.0, f"{iou_type}_mAP_50": 0.0, "per_class_AP": {}, "precision": None,
                    "classes": [c["name"] for c in gt.loadCats(gt.getCatIds())]}
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # T x R x K
    cats = gt.loadCats(gt.getCatIds())
    per_class = {}
    for k, cat in enumerate(cats):
        p = precision[:, :, k]
        per_class[cat["name"]] = float(np.mean(p[p > -1])) if (p > -1).any() else float("nan")
    return {f"{iou_type}_mAP": float(max(ev.stats[0], 0.0)), f"{iou_type}_mAP_50": float(max(ev.stats[1], 0.0)),
            "per_class_AP": per_class, "precision": precision, "classes": [c["name"] for c in cats]}


def segm_eval(gt_file: Path, result: dict[str, Any]) -> dict[str, Any] | None:
    """Segm mAP of the masks a training or evaluation run dumped (train.trainer's `segmentations`; 0 when it
    found nothing); None for a box model."""
    masks = result.get("segmentations")
    return None if not masks else coco_eval(gt_file, Path(masks), "segm")
