"""Instance masks into Label Studio regions (pure): polygons that cover the mask's pixels, brush masks at the
image's size, and which control gets what."""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from backend.labels import build_label_map
from backend.masks import mask_at, mask_polygon
from backend.results import to_prediction
from loop.clients.labelstudio import brush_to_mask
from loop.common.label_configs import segmentation_labels_config
from loop.common.regions import region_to_polygon


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _raster(points, height: int, width: int) -> np.ndarray:
    """A polygon in continuous pixel coordinates rasterised the way COCO tools do."""
    rle = coco_mask.frPyObjects([np.asarray(points, float).ravel().tolist()], height, width)
    return coco_mask.decode(coco_mask.merge(rle)).astype(bool)


def _disc(r: int, shape=(120, 160), centre=(80, 60)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre, r, 1, -1)
    return mask.astype(bool)


def test_a_polygon_covers_the_pixels_of_its_mask():
    for r in (5, 16, 40):
        disc = _disc(r)
        exact = mask_polygon(disc, tolerance=0)
        assert _iou(_raster(exact, *disc.shape), disc) == 1.0  # pushed out half a pixel: not a pixel lost
        simplified = mask_polygon(disc, tolerance=0.5)
        assert len(simplified) < len(exact) and _iou(_raster(simplified, *disc.shape), disc) >= 0.9
    rect = np.zeros((50, 60), bool)
    rect[10:20, 30:45] = True
    corners = mask_polygon(rect, tolerance=1.0)  # 0.6 px: the straight edges reduce to their corners
    assert sorted(map(tuple, np.round(corners).astype(int).tolist())) == [(30, 10), (30, 20), (45, 10), (45, 20)]


def test_a_mask_in_parts_is_one_polygon_whose_parts_are_bridged_and_specks_are_left_out():
    two = _disc(20) | _disc(8, centre=(140, 20))
    for tolerance in (0, 0.2):
        assert _iou(_raster(mask_polygon(two, tolerance), *two.shape), two) >= 0.98
    speck = _disc(20) | _disc(1, centre=(140, 20))  # 5 px against 1,257: under 2 % of the mask
    assert _iou(_raster(mask_polygon(speck, 0), *speck.shape), _disc(20)) == 1.0
    assert mask_polygon(np.zeros((30, 30), bool)) is None


def test_a_mask_goes_to_the_original_image_size():
    small = _disc(10, shape=(60, 80), centre=(40, 30))
    big = mask_at(small, (160, 120))
    assert big.shape == (120, 160) and _iou(big, _disc(20)) > 0.9
    assert mask_at(small, (80, 60)) is not small and (mask_at(small, (80, 60)) == small).all()


def test_each_control_gets_its_own_kind_of_region():
    disc = _disc(16)
    boxes, scores, labels = np.array([[64.0, 44.0, 97.0, 77.0]]), np.array([0.9]), np.array([1])
    both = build_label_map(segmentation_labels_config(["circle", "square"], boxes=True), ["square", "circle"])
    result = to_prediction(boxes, scores, labels, both, (160, 120), (320, 240), 0.3, "v1", masks=disc[None])
    kinds = sorted(r["type"] for r in result["result"])
    assert kinds == ["polygonlabels", "rectanglelabels"] and result["score"] == 0.9
    polygon = next(r for r in result["result"] if r["type"] == "polygonlabels")
    assert polygon["value"]["polygonlabels"] == ["circle"] and polygon["from_name"] == "polygon"
    assert _iou(_raster(region_to_polygon(polygon, 320, 240), 240, 320), mask_at(disc, (320, 240))) >= 0.95

    brush_map = build_label_map(segmentation_labels_config(["circle"], "BrushLabels"), ["square", "circle"])
    (brush,) = to_prediction(boxes, scores, labels, brush_map, (160, 120), (320, 240), 0.3, "v1", disc[None])["result"]
    assert brush["type"] == "brushlabels" and brush["value"]["format"] == "rle"
    assert _iou(brush_to_mask(brush["value"]["rle"], 320, 240), mask_at(disc, (320, 240))) == 1.0
    # a box model on a mask-only project gives no regions rather than boxes drawn as something else
    assert to_prediction(boxes, scores, labels, brush_map, (160, 120), (320, 240), 0.3, "v1")["result"] == []
