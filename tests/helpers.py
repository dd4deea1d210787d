"""Test helpers: annotators that submit the demo ground truth through the SDK."""

from __future__ import annotations

import json
from pathlib import Path

from loop import labelstudio as lsx
from loop.label_configs import rectangle_labels_config
from loop.regions import bbox_to_region


def demo_ground_truth(demo_data: Path, split: str = "pool"):
    """(labels, {file name: (image entry, [(label, bbox), ...])}) of a demo split."""
    coco = json.loads((demo_data / f"{split}.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_id = {im["id"]: (im, []) for im in coco["images"]}
    for a in coco["annotations"]:
        by_id[a["image_id"]][1].append((names[a["category_id"]], a["bbox"]))
    return [c["name"] for c in coco["categories"]], {im["file_name"].rsplit("/", 1)[1]: (im, b)
                                                      for im, b in by_id.values()}


def regions(im: dict, boxes) -> list[dict]:
    return [bbox_to_region(b, label, im["width"], im["height"]) for label, b in boxes]


def make_demo_project(client, demo_data: Path, n: int, title: str, split: str = "pool"):
    """A project with the first n demo images uploaded; returns (project, gt, {task_id: file name})."""
    labels, gt = demo_ground_truth(demo_data, split)
    project = lsx.create_project(client, title, rectangle_labels_config(labels))
    files = sorted(gt)[:n]
    task_ids = lsx.upload_images(client, project.id, [demo_data / "images" / f for f in files])
    tasks = {t["id"]: t for t in lsx.list_tasks(client, project.id)}
    file_of = {tid: tasks[tid]["data"]["image"].rsplit("/", 1)[1].split("-", 1)[1] for tid in task_ids}
    return project, gt, file_of


def submit_ground_truth(client, gt, file_of, task_ids=None) -> None:
    for tid in task_ids if task_ids is not None else file_of:
        im, boxes = gt[file_of[tid]]
        lsx.submit_annotation(client, tid, regions(im, boxes))
