"""Label Studio tasks -> COCO, as pure functions (no I/O): which annotation counts, where boxes and masks are
in pixels, which tasks are held out, and category ids that never change between exports.

Label Studio's own COCO converter is not used: it numbers categories alphabetically from 0, writes one
image per annotation (duplicating tasks with two annotations) and unreliable file names.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable

import numpy as np
from pycocotools import mask as mask_utils

from loop.common.label_configs import LabelConfigError, region_controls
from loop.common.regions import region_to_bbox, region_to_polygon

SPLIT_SALT = "labelloop-heldout-v1"


def pick_annotation(annotations: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The one annotation that stands for a task: a ground-truth one if any, else the latest submitted.

    Cancelled (skipped) annotations never count; a task with only those is not labeled.
    """
    valid = [a for a in annotations if not a.get("was_cancelled")]
    if not valid:
        return None
    pool = [a for a in valid if a.get("ground_truth")] or valid
    return max(pool, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def split_of(task_id: int, val_fraction: float, salt: str = SPLIT_SALT) -> str:
    """'val' or 'train' from a hash of the task id: the same task always lands in the same split."""
    digest = hashlib.sha256(f"{salt}:{task_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def assign_splits(task_ids: Iterable[int], previous: dict[int, str], val_fraction: float) -> dict[int, str]:
    """Splits for these tasks; a task keeps the split it had, so validation never leaks into training."""
    return {int(t): previous.get(int(t)) or split_of(int(t), val_fraction) for t in task_ids}


def stable_categories(labels: Iterable[str], previous: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """COCO categories for `labels` (label-config order); ids from an earlier export are kept, new labels
    get the next free ids, and labels that left the config keep their id reserved."""
    cats = [dict(c) for c in previous or []]
    known = {c["name"] for c in cats}
    next_id = max((c["id"] for c in cats), default=0) + 1
    for name in labels:
        if name not in known:
            cats.append({"id": next_id, "name": name, "supercategory": "object"})
            known.add(name)
            next_id += 1
    return cats


REGION_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels")
MASK_KINDS = ("PolygonLabels", "BrushLabels")


def export_controls(label_config: str, control: str | None = None) -> list[dict[str, Any]]:
    """The region controls whose regions export (loop.common.label_configs.region_controls): the one named
    `control`; by default the mask controls (PolygonLabels, BrushLabels) when the config has any, so every
    object is an instance with its segmentation and a box drawn from its mask (rectangles beside them are
    not exported: mask controls win), else the first RectangleLabels control (boxes, as ever). Raises
    LabelConfigError."""
    controls = region_controls(label_config)
    if control is not None:
        named = [c for c in controls if c["name"] == control]
        if not named:
            raise LabelConfigError(f"no RectangleLabels, PolygonLabels or BrushLabels control named {control!r}; "
                                   f"it has {[c['name'] for c in controls]}")
        return named
    masks = [c for c in controls if c["kind"] in MASK_KINDS]
    return masks or [c for c in controls if c["kind"] == "RectangleLabels"][:1]


def regions_of(annotation: dict[str, Any], control: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The regions of an annotation of these controls (a name or names), rectangles, polygons or brush masks;
    without a control, every rectangle region."""
    result = annotation.get("result") or []
    if control is None:
        return [r for r in result if r.get("type") == "rectanglelabels"]
    names = {control} if isinstance(control, str) else set(control)
    return [r for r in result if r.get("from_name") in names and r.get("type") in REGION_TYPES]


def _instance(segmentation, rle: dict[str, Any]) -> dict[str, Any] | None:
    """A mask's COCO fields: its segmentation, with the box and area of its pixels (pycocotools, the way
    COCO readers rasterise it); None if it covers no pixel."""
    area = float(mask_utils.area(rle))
    if area <= 0:
        return None
    return {"segmentation": segmentation, "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
            "area": area}


def region_instance(region: dict[str, Any], width: int, height: int,
                    decode_brush: Callable[[list[int], int, int], np.ndarray] | None = None
                    ) -> dict[str, Any] | None:
    """A region as COCO annotation fields in pixels: a rectangle's bbox and area; a polygon's segmentation
    (one polygon) or a brush mask's (RLE, counts as text), each with the bbox and area of its pixels. None if
    it is empty. `decode_brush(rle, width, height)` turns Label Studio's brush RLE into a bool mask
    (loop.clients.labelstudio.brush_to_mask): this module stays pure."""
    kind = region.get("type")
    if kind == "rectanglelabels":
        box = region_to_bbox(region, width, height)
        return None if box is None else {"bbox": box, "area": round(box[2] * box[3], 2)}
    w = int(region.get("original_width") or width)
    h = int(region.get("original_height") or height)
    if kind == "polygonlabels":
        points = region_to_polygon(region, width, height)
        if points is None:
            return None
        polygon = [round(v, 2) for point in points for v in point]
        return _instance([polygon], mask_utils.merge(mask_utils.frPyObjects([polygon], h, w)))
    if decode_brush is None:
        raise ValueError("brush regions need decode_brush (loop.clients.labelstudio.brush_to_mask)")
    rle = mask_utils.encode(np.asfortranarray(decode_brush(region["value"]["rle"], w, h).astype(np.uint8)))
    return _instance({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}, rle)


def image_size_hint(annotation: dict[str, Any]) -> tuple[int, int] | None:
    """The image size Label Studio recorded with the regions, if any."""
    for r in annotation.get("result") or []:
        if r.get("original_width") and r.get("original_height"):
            return int(r["original_width"]), int(r["original_height"])
    return None


def build_coco(items: list[dict[str, Any]], categories: list[dict[str, Any]],
               control: str | Iterable[str] | None = None,
               decode_brush: Callable[[list[int], int, int], np.ndarray] | None = None) -> dict[str, Any]:
    """A COCO dict from exported items.

    Each item: {"task_id", "file_name", "width", "height", "annotation"} where annotation is the picked one.
    Image ids are task ids, so a box can always be traced back to its Label Studio task. The regions of
    `control` (a name or names; default every rectangle) become annotations: rectangles as boxes, polygons
    and brush masks as instances with a segmentation (see region_instance). Regions whose label is not a
    category are skipped; an annotation without regions is a negative image and stays.
    """
    cat_id = {c["name"]: c["id"] for c in categories}
    images, anns = [], []
    for item in sorted(items, key=lambda i: i["task_id"]):
        images.append({"id": item["task_id"], "file_name": item["file_name"], "width": item["width"],
                       "height": item["height"]})
        for region in regions_of(item["annotation"], control):
            labels = region["value"].get(region["type"]) or []
            if not labels or labels[0] not in cat_id:
                continue
            fields = region_instance(region, item["width"], item["height"], decode_brush)
            if fields is None:
                continue
            anns.append({"id": len(anns) + 1, "image_id": item["task_id"], "category_id": cat_id[labels[0]],
                         **fields, "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": categories}
