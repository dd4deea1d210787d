"""Label Studio tasks -> COCO, as pure functions (no I/O): which annotation counts, where boxes are in
pixels, which tasks are held out, and category ids that never change between exports.

Label Studio's own COCO converter is not used: it numbers categories alphabetically from 0, writes one
image per annotation (duplicating tasks with two annotations) and unreliable file names.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from loop.common.regions import region_to_bbox

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


def regions_of(annotation: dict[str, Any], control: str | None = None) -> list[dict[str, Any]]:
    """The rectangle regions of an annotation (of one control, if named)."""
    return [r for r in annotation.get("result") or []
            if r.get("type") == "rectanglelabels" and (control is None or r.get("from_name") == control)]


def image_size_hint(annotation: dict[str, Any]) -> tuple[int, int] | None:
    """The image size Label Studio recorded with the regions, if any."""
    for r in annotation.get("result") or []:
        if r.get("original_width") and r.get("original_height"):
            return int(r["original_width"]), int(r["original_height"])
    return None


def build_coco(items: list[dict[str, Any]], categories: list[dict[str, Any]], control: str | None = None
               ) -> dict[str, Any]:
    """A COCO dict from exported items.

    Each item: {"task_id", "file_name", "width", "height", "annotation"} where annotation is the picked one.
    Image ids are task ids, so a box can always be traced back to its Label Studio task. Regions whose label
    is not a category are skipped; an annotation without boxes is a negative image and stays.
    """
    cat_id = {c["name"]: c["id"] for c in categories}
    images, anns = [], []
    for item in sorted(items, key=lambda i: i["task_id"]):
        images.append({"id": item["task_id"], "file_name": item["file_name"], "width": item["width"],
                       "height": item["height"]})
        for region in regions_of(item["annotation"], control):
            labels = region["value"].get("rectanglelabels") or []
            if not labels or labels[0] not in cat_id:
                continue
            box = region_to_bbox(region, item["width"], item["height"])
            if box is None:
                continue
            anns.append({"id": len(anns) + 1, "image_id": item["task_id"], "category_id": cat_id[labels[0]],
                         "bbox": box, "area": round(box[2] * box[3], 2), "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": categories}
