"""The oracle's knowledge: a COCO dataset's ground truth per image, as Label Studio regions (pure).

The simulated annotator (loop.clients.annotator) submits it through Label Studio; the simulation stage and
the benchmarks use it where the "human" is the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

from loop.common.regions import bbox_to_region


def coco_ground_truth(coco_file: Path):
    """(labels in category-id order, {image file name: (image entry, [(label, bbox), ...])})."""
    coco = json.loads(Path(coco_file).read_text())
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = {c["id"]: c["name"] for c in cats}
    by_id = {im["id"]: (im, []) for im in coco["images"]}
    for a in coco["annotations"]:
        by_id[a["image_id"]][1].append((names[a["category_id"]], a["bbox"]))
    return [c["name"] for c in cats], {Path(im["file_name"]).name: (im, b) for im, b in by_id.values()}


def regions(im: dict, boxes) -> list[dict]:
    return [bbox_to_region(b, label, im["width"], im["height"]) for label, b in boxes]
