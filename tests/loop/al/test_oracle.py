"""The oracle's ground truth as Label Studio regions: boxes as ever, polygons and brush masks per the config."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from loop.al.oracle import coco_ground_truth, regions, truth_mask
from loop.common.label_configs import rectangle_labels_config, region_controls, segmentation_labels_config
from loop.common.regions import bbox_to_region, region_to_polygon


def flat(points):
    return [v for point in points for v in point]


IM = {"id": 1, "file_name": "images/a.jpg", "width": 100, "height": 50}
TRIANGLE = [10.0, 10.0, 40.0, 10.0, 25.0, 40.0]


@pytest.fixture
def coco_file(tmp_path):
    coco = {"images": [IM], "categories": [{"id": 2, "name": "tri"}, {"id": 1, "name": "box"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30],
                             "segmentation": [TRIANGLE]},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 5, 20, 10]}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(coco))
    return path


def test_boxes_only_ground_truth_is_as_before(coco_file):
    labels, gt = coco_ground_truth(coco_file)
    assert labels == ["box", "tri"]
    im, objects = gt["a.jpg"]
    assert objects == [("tri", [10, 10, 30, 30]), ("box", [60, 5, 20, 10])]
    assert regions(im, objects) == [bbox_to_region(b, label, 100, 50) for label, b in objects]
    assert regions(im, objects, region_controls(rectangle_labels_config(labels))) == regions(im, objects)


def test_polygon_config_gets_a_polygon_per_object_and_a_box_beside_it(coco_file):
    labels, gt = coco_ground_truth(coco_file, segmentation=True)
    im, objects = gt["a.jpg"]
    assert objects[0] == ("tri", [10, 10, 30, 30], [TRIANGLE]) and objects[1][2] is None
    controls = region_controls(segmentation_labels_config(labels, "PolygonLabels", boxes=True))
    out = regions(im, objects, controls)
    assert [(r["type"], r["from_name"]) for r in out] == [("rectanglelabels", "label"),
                                                          ("polygonlabels", "polygon")] * 2
    assert flat(region_to_polygon(out[1], 100, 50)) == pytest.approx(TRIANGLE)
    assert out[1]["value"]["polygonlabels"] == ["tri"]
    # no segmentation: its box is the polygon
    assert flat(region_to_polygon(out[3], 100, 50)) == pytest.approx([60, 5, 80, 5, 80, 15, 60, 15])


def test_brush_config_encodes_each_truth_mask_through_the_given_encoder(coco_file):
    labels, gt = coco_ground_truth(coco_file, segmentation=True)
    im, objects = gt["a.jpg"]
    controls = region_controls(segmentation_labels_config(labels, "BrushLabels"))
    with pytest.raises(ValueError, match="encode_brush"):
        regions(im, objects, controls)
    seen = []
    out = regions(im, objects, controls, encode_brush=lambda mask: seen.append(mask) or [len(seen)])
    assert [(r["type"], r["value"]["rle"], r["value"]["brushlabels"]) for r in out] == [
        ("brushlabels", [1], ["tri"]), ("brushlabels", [2], ["box"])]
    assert seen[0].shape == (50, 100) and np.array_equal(seen[0], truth_mask([TRIANGLE], None, 100, 50))
    assert seen[1].sum() == 200 and seen[1][5:15, 60:80].all()


def test_an_rle_truth_becomes_a_polygon_around_its_pixels():
    mask = np.zeros((50, 100), np.uint8)
    mask[10:30, 20:60] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    controls = region_controls(segmentation_labels_config(["a"], "PolygonLabels"))
    (region,) = regions(IM, [("a", [20, 10, 40, 20], rle)], controls)
    points = region_to_polygon(region, 100, 50)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx((20.5, 10.5, 59.5, 29.5))
