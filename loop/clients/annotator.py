"""A simulated annotator: submits a COCO dataset's ground truth through Label Studio as people would.

Used by the demo, the simulation stage, the benchmarks and the tests, where the "human" is the ground truth:
boxes, and instance masks as polygons or brush strokes where the project's label config asks for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from loop.al.effort import Effort
from loop.al.oracle import coco_ground_truth, corrected, regions
from loop.al.tasks import latest_prediction
from loop.clients import labelstudio
from loop.common.label_configs import rectangle_labels_config, region_controls

LabelConfig = str | Callable[[list[str]], str]


def project_from_coco(client, coco_file: Path, image_root: Path, n: int | None, title: str,
                      label_config: LabelConfig | None = None):
    """A project with the first n images of a COCO file uploaded; returns (project, gt, {task_id: file name}).

    `label_config` is the project's XML, or a function of the dataset's labels that writes it (e.g.
    loop.common.label_configs.segmentation_labels_config); default, boxes. With a PolygonLabels or BrushLabels
    control, gt's objects carry their segmentation: (label, bbox, segmentation)."""
    labels, _ = coco_ground_truth(coco_file)
    xml = rectangle_labels_config(labels) if label_config is None else (
        label_config(labels) if callable(label_config) else label_config)
    masks = any(c["kind"] != "RectangleLabels" for c in region_controls(xml))
    _, gt = coco_ground_truth(coco_file, segmentation=masks)
    project = labelstudio.create_project(client, title, xml)
    files = sorted(gt)[:n]
    coco = json.loads(Path(coco_file).read_text())
    path_of = {Path(im["file_name"]).name: Path(image_root) / im["file_name"] for im in coco["images"]}
    task_ids = labelstudio.upload_images(client, project.id, [path_of[f] for f in files])
    tasks = {t["id"]: t for t in labelstudio.list_tasks(client, project.id)}
    # Label Studio stores uploads as <8-char hash>-<original name>.
    file_of = {tid: tasks[tid]["data"]["image"].rsplit("/", 1)[1].split("-", 1)[1] for tid in task_ids}
    return project, gt, file_of


def submit_ground_truth(client, gt, file_of, task_ids=None, label_config: str | None = None) -> None:
    """Submit the truth of these tasks (default: all): as regions of every region control of the project's
    `label_config` (masks need gt from project_from_coco with that config), boxes on "label" without one."""
    controls = region_controls(label_config) if label_config else None
    for tid in task_ids if task_ids is not None else file_of:
        im, boxes = gt[file_of[tid]]
        labelstudio.submit_annotation(client, tid, regions(im, boxes, controls, encode_brush=labelstudio.mask_to_brush))


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
