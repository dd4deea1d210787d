"""Detections -> Label Studio prediction results (pure)."""

from __future__ import annotations

import numpy as np

from backend.labels import LabelMap
from backend.masks import POLYGON_TOLERANCE, mask_at, mask_polygon
from loop.clients.labelstudio import mask_to_brush
from loop.common.regions import bbox_to_region, brush_to_region, polygon_to_region


def to_prediction(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, label_map: LabelMap,
                  array_size: tuple[int, int], original_size: tuple[int, int], threshold: float,
                  model_version: str, masks: np.ndarray | None = None,
                  polygon_tolerance: float = POLYGON_TOLERANCE) -> dict:
    """One task's prediction: a region per detection and control in percent of the original image (boxes for
    RectangleLabels; for PolygonLabels and BrushLabels, when the model gives `masks`, the mask's polygon
    simplified to `polygon_tolerance` percent of the longer side, or the mask itself), per-region scores, and
    the task score (mean region score, 0 when nothing is found) Label Studio sorts by."""
    aw, ah = array_size
    ow, oh = original_size
    sx, sy = ow / aw, oh / ah
    regions = []
    for i, ((x0, y0, x1, y1), score, cls) in enumerate(zip(np.asarray(boxes, dtype=float), scores, labels)):
        if score < threshold:
            continue
        x0, x1 = np.clip([x0 * sx, x1 * sx], 0, ow)
        y0, y1 = np.clip([y0 * sy, y1 * sy], 0, oh)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            continue
        score = round(float(score), 4)
        polygon = brush = None
        for t in label_map.for_class(int(cls)):
            where = dict(from_name=t.from_name, to_name=t.to_name, score=score)
            if t.kind == "RectangleLabels":
                regions.append(bbox_to_region([x0, y0, x1 - x0, y1 - y0], t.label, ow, oh, **where))
            elif masks is not None and t.kind == "PolygonLabels":
                if polygon is None:
                    polygon = mask_polygon(masks[i], polygon_tolerance)
                    polygon = () if polygon is None else polygon * np.array([sx, sy])
                if len(polygon):
                    regions.append(polygon_to_region(polygon, t.label, ow, oh, **where))
            elif masks is not None and t.kind == "BrushLabels":
                brush = brush or (mask_to_brush(mask_at(masks[i], (ow, oh))) if masks[i].any() else [])
                if brush:
                    regions.append(brush_to_region(brush, t.label, ow, oh, **where))
    task_score = float(np.mean([r["score"] for r in regions])) if regions else 0.0
    return {"result": regions, "score": round(task_score, 4), "model_version": model_version}


def empty_prediction(model_version: str) -> dict:
    return {"result": [], "score": 0.0, "model_version": model_version}
