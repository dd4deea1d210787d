"""A simulated annotator: submits a COCO dataset's ground truth through Label Studio as people would.

Used by the demo, the simulation stage, the benchmarks and the tests, where the "human" is the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

from loop.al.effort import Effort
from loop.al.oracle import coco_ground_truth, corrected, regions
from loop.al.tasks import latest_prediction
from loop.clients import labelstudio
from loop.common.label_configs import rectangle_labels_config


def project_from_coco(client, coco_file: Path, image_root: Path, n: int | None, title: str):
    """A project with the first n images of a COCO file uploaded; returns (project, gt, {task_id: file name})."""
    labels, gt = coco_ground_truth(coco_file)
    project = labelstudio.create_project(client, title, rectangle_labels_config(labels))
    files = sorted(gt)[:n]
    coco = json.loads(Path(coco_file).read_text())
    path_of = {Path(im["file_name"]).name: Path(image_root) / im["file_name"] for im in coco["images"]}
    task_ids = labelstudio.upload_images(client, project.id, [path_of[f] for f in files])
    tasks = {t["id"]: t for t in labelstudio.list_tasks(client, project.id)}
    # Label Studio stores uploads as <8-char hash>-<original name>.
    file_of = {tid: tasks[tid]["data"]["image"].rsplit("/", 1)[1].split("-", 1)[1] for tid in task_ids}
    return project, gt, file_of


def submit_ground_truth(client, gt, file_of, task_ids=None) -> None:
    for tid in task_ids if task_ids is not None else file_of:
        im, boxes = gt[file_of[tid]]
        labelstudio.submit_annotation(client, tid, regions(im, boxes))


def submit_corrected(client, task: dict, gt, file_of) -> Effort:
    """Label one task as a person would with the model's boxes on screen: correct the prediction shown
    (loop.al.oracle.corrected) and submit it with its lead time and the prediction it started from."""
    im, truth = gt[file_of[task["id"]]]
    if "predictions" not in task:  # /next answers without them on some Label Studio versions
        task = labelstudio.get_task(client, task["id"])
    shown = latest_prediction(task)
    result, effort, seconds = corrected((shown or {}).get("result") or [], regions(im, truth))
    labelstudio.submit_annotation(client, task["id"], result, lead_time=seconds,
                                  parent_prediction=shown.get("id") if shown else None)
    return effort
