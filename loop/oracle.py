"""A simulated annotator: submits a COCO dataset's ground truth through Label Studio as people would.

Used by the benchmarks, the tests and the simulation stage, where the "human" is the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

from loop import labelstudio as lsx
from loop.label_configs import rectangle_labels_config
from loop.regions import bbox_to_region


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


def project_from_coco(client, coco_file: Path, image_root: Path, n: int | None, title: str):
    """A project with the first n images of a COCO file uploaded; returns (project, gt, {task_id: file name})."""
    labels, gt = coco_ground_truth(coco_file)
    project = lsx.create_project(client, title, rectangle_labels_config(labels))
    files = sorted(gt)[:n]
    coco = json.loads(Path(coco_file).read_text())
    path_of = {Path(im["file_name"]).name: Path(image_root) / im["file_name"] for im in coco["images"]}
    task_ids = lsx.upload_images(client, project.id, [path_of[f] for f in files])
    tasks = {t["id"]: t for t in lsx.list_tasks(client, project.id)}
    # Label Studio stores uploads as <8-char hash>-<original name>.
    file_of = {tid: tasks[tid]["data"]["image"].rsplit("/", 1)[1].split("-", 1)[1] for tid in task_ids}
    return project, gt, file_of


def submit_ground_truth(client, gt, file_of, task_ids=None) -> None:
    for tid in task_ids if task_ids is not None else file_of:
        im, boxes = gt[file_of[tid]]
        lsx.submit_annotation(client, tid, regions(im, boxes))
