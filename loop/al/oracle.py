"""The oracle's knowledge: a COCO dataset's ground truth per image, as Label Studio regions (pure).

The simulated annotator (loop.clients.annotator) submits it through Label Studio, correcting the shown
prediction the way a person does (`corrected`); the simulation stage and the benchmarks use it where the
"human" is the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

from loop.al.effort import CATEGORIES, Effort, boxes, match
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


# The simulated annotator's clock, in seconds: a look at the image and Submit, then per box what it costs a
# person to keep it, move it, change its label, delete it or draw it. Assumed, not measured: it makes the
# demo's effort figures consistent (fewer edits, fewer seconds), not a claim about real annotators.
SECONDS = {"task": 4.0, "accepted": 1.0, "adjusted": 5.0, "relabeled": 3.0, "deleted": 2.0, "added": 8.0}


def corrected(predicted: list[dict], truth: list[dict]) -> tuple[list[dict], Effort, float]:
    """What a careful person submits when the labeling screen shows `predicted` and `truth` is right: good
    boxes kept as they are, near ones moved onto the truth, wrong labels changed, wrong boxes deleted, missed
    objects drawn. Returns (the result to submit, its effort, its lead time in seconds)."""
    rects = [r for r in predicted if boxes([r])]
    counts, pairs = match(boxes(rects), boxes(truth))
    final = [truth[t] for t in range(len(truth)) if t not in {f for _, f, _ in pairs}]
    for p, t, category in pairs:
        final.append(rects[p] if category == "accepted" else dict(truth[t], id=rects[p].get("id")))
    seconds = SECONDS["task"] + sum(SECONDS[c] * getattr(counts, c) for c in CATEGORIES)
    return [{k: v for k, v in r.items() if k != "score" and v is not None} for r in final], counts, seconds
