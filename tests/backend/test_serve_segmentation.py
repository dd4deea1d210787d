"""An instance segmentation model (RTMDet-Ins) served to real Label Studio projects: Retrieve Predictions
stores polygons (with boxes beside them where the config has both controls) or brush masks that match the
model's own masks after the round trip through Label Studio."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from backend.images import decode
from backend.onnx_runtime import agreement, load_onnx
from backend.predictor import Predictor
from loop.clients import labelstudio
from loop.common.label_configs import segmentation_labels_config
from loop.common.regions import region_to_bbox, region_to_polygon
from loop.common.shapes import CLASSES
from tests.helpers import make_demo_project

pytestmark = pytest.mark.integration

THRESHOLD = 0.3


@pytest.fixture(scope="module")
def seg_backend(start_backend, ls_server, ls_token, demo_seg_model):
    return start_backend(f"backend.checkpoint={demo_seg_model['checkpoint']}", f"labelstudio.url={ls_server.url}",
                         f"backend.score_threshold={THRESHOLD}", api_key=ls_token)


@pytest.fixture(scope="module")
def model_masks(demo_seg_model, demo_data):
    """What the model itself finds on each test image, in this process (torch)."""
    predictor = Predictor.load(str(demo_seg_model["checkpoint"]), score_threshold=THRESHOLD)

    def masks_of(file_name: str):
        det = predictor.predict([decode((demo_data / "images" / file_name).read_bytes()).bgr])[0]
        keep = det.scores >= THRESHOLD
        return det.masks[keep], det.labels[keep]
    return masks_of


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _polygon_mask(region: dict) -> np.ndarray:
    w, h = region["original_width"], region["original_height"]
    points = np.asarray(region_to_polygon(region, w, h), float).ravel().tolist()
    return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([points], h, w))).astype(bool)


def _served(ls_client, demo_data, backend, kind: str, boxes: bool, title: str):
    project, _, file_of = make_demo_project(ls_client, demo_data, 4, title, split="test")
    ls_client.projects.update(project.id, label_config=segmentation_labels_config(CLASSES, kind, boxes=boxes))
    labelstudio.connect_ml_backend(ls_client, project.id, backend["url"])
    labelstudio.retrieve_predictions(ls_client, project.id)
    tasks = labelstudio.list_tasks(ls_client, project.id)
    assert all(t["predictions"] for t in tasks), "every task got a prediction"
    return [(t["predictions"][0], file_of[t["id"]]) for t in tasks]


def test_polygons_and_boxes_match_the_models_masks_after_the_round_trip(seg_backend, ls_client, demo_data,
                                                                        model_masks):
    health = httpx.get(f"{seg_backend['url']}/health").json()
    assert health["model_class"] == "RTMDet" and health["runtime"] == "onnxruntime" and health["masks"], health
    compared = 0
    for prediction, file_name in _served(ls_client, demo_data, seg_backend, "PolygonLabels", True, "seg-polygons"):
        masks, labels = model_masks(file_name)
        polygons = [r for r in prediction["result"] if r["type"] == "polygonlabels"]
        rects = [r for r in prediction["result"] if r["type"] == "rectanglelabels"]
        assert len(polygons) == len(rects) == len(masks)  # one of each per object
        for region in polygons:
            drawn = _polygon_mask(region)
            same_label = [i for i in range(len(masks)) if [CLASSES[int(labels[i])]] == region["value"]["polygonlabels"]]
            best = max((_iou(masks[i], drawn) for i in same_label), default=0.0)
            assert best >= 0.95, (file_name, best)
            compared += 1
        for region in rects:
            assert region_to_bbox(region, region["original_width"], region["original_height"]) is not None
    assert compared >= 4  # the model outlines shapes on the test images: the comparison covered real masks


def test_brush_masks_are_the_models_masks(seg_backend, ls_client, demo_data, model_masks):
    compared = 0
    for prediction, file_name in _served(ls_client, demo_data, seg_backend, "BrushLabels", False, "seg-brush"):
        masks, labels = model_masks(file_name)
        assert [r["type"] for r in prediction["result"]] == ["brushlabels"] * len(masks)
        for region in prediction["result"]:
            drawn = labelstudio.brush_to_mask(region["value"]["rle"], region["original_width"],
                                              region["original_height"])
            same_label = [i for i in range(len(masks)) if [CLASSES[int(labels[i])]] == region["value"]["brushlabels"]]
            assert max((_iou(masks[i], drawn) for i in same_label), default=0.0) >= 0.99
            compared += 1
    assert compared >= 4


def test_onnx_runtime_gives_the_models_masks(demo_seg_model, demo_data, tmp_path):
    """The network in ONNX Runtime, the masks assembled by the model's own head: same boxes, scores, labels
    and masks as torch (what the promotion-time ONNX check compares for such a version)."""
    images = [decode(p.read_bytes()).bgr for p in sorted((demo_data / "images").glob("test_*.jpg"))[:6]]
    torch_model = Predictor.load(str(demo_seg_model["checkpoint"]), score_threshold=THRESHOLD)
    onnx_model = load_onnx(torch_model, tmp_path)
    assert torch_model.masks and onnx_model.masks and onnx_model.runtime == "onnxruntime"
    reference, candidate = torch_model.predict(images), onnx_model.predict(images)
    ok, reason = agreement(reference, candidate)
    assert ok and "boxes and masks" in reason and sum(len(d.scores) for d in reference) >= 6, reason
    eroded = [type(d)(d.boxes, d.scores, d.labels, None, d.masks & np.roll(d.masks, 3, axis=2)) for d in candidate]
    ok, reason = agreement(reference, eroded)
    assert not ok and "mask" in reason
