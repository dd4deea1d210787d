"""The oracle's knowledge: a COCO dataset's ground truth per image, as Label Studio regions (pure).

The simulated annotator (loop.clients.annotator) submits it through Label Studio, correcting the shown
prediction the way a person does (`corrected`); the simulation stage and the benchmarks use it where the
"human" is the ground truth. Objects with a COCO segmentation become polygons or brush masks where the
project's label config has PolygonLabels or BrushLabels controls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from loop.al.effort import CATEGORIES, Effort, boxes, match
from loop.common.regions import bbox_to_region, brush_to_region, polygon_to_region


def coco_ground_truth(coco_file: Path, segmentation: bool = False):
    """(labels in category-id order, {image file name: (image entry, [(label, bbox), ...])}); with
    `segmentation`, each object is (label, bbox, its COCO segmentation or None) for mask controls."""
    coco = json.loads(Path(coco_file).read_text())
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = {c["id"]: c["name"] for c in cats}
    by_id = {im["id"]: (im, []) for im in coco["images"]}
    for a in coco["annotations"]:
        obj = (names[a["category_id"]], a["bbox"])
        by_id[a["image_id"]][1].append(obj + (a.get("segmentation") or None,) if segmentation else obj)
    return [c["name"] for c in cats], {Path(im["file_name"]).name: (im, b) for im, b in by_id.values()}


def truth_mask(segmentation, bbox, width: int, height: int) -> np.ndarray:
    """An object's mask (bool H x W) from its COCO segmentation (polygons or RLE), or its box without one:
    rasterised as COCO readers (pycocotools, mmdet) do."""
    if not segmentation:
        x, y, w, h = bbox
        segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def _polygons(segmentation, bbox, width: int, height: int) -> list[list[tuple[float, float]]]:
    """An object's outline(s) in pixels, clipped to the image: its COCO polygons, the contours of an RLE mask
    (through its border pixels' centres), or its box."""
    if isinstance(segmentation, list) and segmentation:
        parts = [list(zip(p[0::2], p[1::2])) for p in segmentation if len(p) >= 6]
    elif segmentation:
        contours, _ = cv2.findContours(truth_mask(segmentation, bbox, width, height).astype(np.uint8),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        parts = [[(x + 0.5, y + 0.5) for x, y in c[:, 0]] for c in contours if len(c) >= 3]
    else:
        x, y, w, h = bbox
        parts = [[(x, y), (x + w, y), (x + w, y + h), (x, y + h)]]
    return [[(min(max(float(x), 0.0), width), min(max(float(y), 0.0), height)) for x, y in p] for p in parts]


def regions(im: dict, boxes, controls: list[dict] | None = None, *,
            encode_brush: Callable[[np.ndarray], list[int]] | None = None) -> list[dict]:
    """Label Studio regions of an image's objects, (label, bbox) or (label, bbox, segmentation), one per
    object and region control of the label config (loop.common.label_configs.region_controls): its box for a
    RectangleLabels control, its polygon(s) for PolygonLabels, its mask for BrushLabels, encoded by
    `encode_brush` (Label Studio's brush RLE is the SDK's, which this pure layer does not import). Without
    `controls`, boxes on the control "label" (the boxes config); an object without a segmentation is its box
    on a mask control too."""
    controls = controls or [{"kind": "RectangleLabels", "name": "label", "to_name": "image"}]
    if encode_brush is None and any(c["kind"] == "BrushLabels" for c in controls):
        raise ValueError("regions for a BrushLabels control need encode_brush (loop.clients.labelstudio.mask_to_brush)")
    w, h = im["width"], im["height"]
    out = []
    for label, bbox, *segmentation in boxes:
        seg = segmentation[0] if segmentation else None
        for c in controls:
            names = {"from_name": c["name"], "to_name": c["to_name"]}
            if c["kind"] == "RectangleLabels":
                out.append(bbox_to_region(bbox, label, w, h, **names))
            elif c["kind"] == "PolygonLabels":
                out.extend(polygon_to_region(p, label, w, h, **names) for p in _polygons(seg, bbox, w, h))
            else:
                out.append(brush_to_region(encode_brush(truth_mask(seg, bbox, w, h)), label, w, h, **names))
    return out


# The simulated annotator's clock, in seconds: a look at the image and Submit, then per box what it costs a
# person to keep it, move it, change its label, delete it or draw it. Assumed, not measured: it makes the
# demo's effort figures consistent (fewer edits, fewer seconds), not a claim about real annotators.
SECONDS = {"task": 4.0, "accepted": 1.0, "adjusted": 5.0, "relabeled": 3.0, "deleted": 2.0, "added": 8.0}


def corrected(predicted: list[dict], truth: list[dict]) -> tuple[list[dict], Effort, float]:
    """What a careful person submits when the labeling screen shows `predicted` and `truth` is right: good
    boxes kept as they are, near ones moved onto the truth, wrong labels changed, wrong boxes deleted, missed
    objects drawn. Returns (the result to submit, its effort, its lead time in seconds)."""
    rects = [r for r in predicted if r.get("type") in (None, "rectanglelabels") and boxes([r])]  # boxes only
    counts, pairs = match(boxes(rects), boxes(truth))
    final = [truth[t] for t in range(len(truth)) if t not in {f for _, f, _ in pairs}]
    for p, t, category in pairs:
        final.append(rects[p] if category == "accepted" else dict(truth[t], id=rects[p].get("id")))
    seconds = SECONDS["task"] + sum(SECONDS[c] * getattr(counts, c) for c in CATEGORIES)
    return [{k: v for k, v in r.items() if k != "score" and v is not None} for r in final], counts, seconds
