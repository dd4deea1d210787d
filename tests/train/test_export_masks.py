"""Instance masks through a real Label Studio: the simulated annotator submits the demo truth as polygons and as
brush masks through the SDK, and stage=export's COCO gives back the same objects (masks, boxes, categories)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from loop.al.oracle import truth_mask
from loop.common.label_configs import segmentation_labels_config
from tests.helpers import project_from_coco, submit_ground_truth
from train.export import export_project

pytestmark = pytest.mark.integration

IMAGES = 4


@pytest.fixture(scope="module", params=["PolygonLabels", "BrushLabels"])
def mask_project(request, ls_client, demo_data):
    """4 demo images in a project with a mask control (and, for polygons, a box control beside it), the
    truth submitted on every task."""
    kind = request.param
    boxes = kind == "PolygonLabels"
    project, gt, file_of = project_from_coco(ls_client, demo_data / "pool.json", demo_data, IMAGES,
                                             f"export-{kind}",
                                             lambda labels: segmentation_labels_config(labels, kind, boxes=boxes))
    submit_ground_truth(ls_client, gt, file_of, label_config=project.label_config)
    labels = [c["name"] for c in json.loads((demo_data / "pool.json").read_text())["categories"]]
    return {"kind": kind, "project": project, "gt": gt, "file_of": file_of, "labels": labels}


def _raster(segmentation, width, height) -> np.ndarray:
    if isinstance(segmentation, list):
        segmentation = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    return mask_utils.decode(segmentation).astype(bool)


def test_exported_masks_round_trip_the_truth(ls_client, mask_project, tmp_path):
    p = mask_project
    task = ls_client.tasks.get(next(iter(p["file_of"])))
    kinds = {r["type"] for r in task.annotations[0]["result"]}
    assert kinds == ({"polygonlabels", "rectanglelabels"} if p["kind"] == "PolygonLabels" else {"brushlabels"})

    result = export_project(ls_client, p["project"].id, tmp_path, val_fraction=0.0, progress=False)
    assert result["tasks"] == IMAGES
    coco = json.loads((tmp_path / "train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == p["labels"]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for image in coco["images"]:
        im, truth = p["gt"][p["file_of"][image["id"]]]
        got = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert len(got) == len(truth)  # one instance per object: the polygon project's boxes are not exported
        w, h = im["width"], im["height"]
        for label, bbox, segmentation in truth:
            ann = min(got, key=lambda a: max(abs(u - v) for u, v in zip(a["bbox"], bbox)))  # its object
            assert names[ann["category_id"]] == label
            if p["kind"] == "PolygonLabels":
                assert isinstance(ann["segmentation"], list) and len(ann["segmentation"]) == 1
            else:
                assert isinstance(ann["segmentation"]["counts"], str)
            mask, want = _raster(ann["segmentation"], w, h), truth_mask(segmentation, bbox, w, h)
            assert (mask & want).sum() / (mask | want).sum() >= 0.98
            assert max(abs(a - b) for a, b in zip(ann["bbox"], bbox)) <= 1.0
            assert ann["area"] == mask.sum()
