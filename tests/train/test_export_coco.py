"""Pure export logic: annotation choice, percent->pixel boxes and masks, sticky held-out split, stable category
ids, which controls export."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from loop.clients.labelstudio import brush_to_mask, mask_to_brush
from loop.common.label_configs import LabelConfigError, rectangle_labels_config, segmentation_labels_config
from loop.common.regions import bbox_to_region, brush_to_region, polygon_to_region, region_to_bbox
from train.export_coco import (
    assign_splits,
    build_coco,
    export_controls,
    pick_annotation,
    split_of,
    stable_categories,
)


def region(x, y, w, h, label="circle", W=200, H=100, rotation=0, from_name="label"):
    return {"type": "rectanglelabels", "from_name": from_name, "to_name": "image", "original_width": W,
            "original_height": H, "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation,
                                              "rectanglelabels": [label]}}


def test_ground_truth_wins_then_latest_non_cancelled():
    anns = [{"id": 1, "updated_at": "2026-01-03", "result": []},
            {"id": 2, "updated_at": "2026-01-05", "was_cancelled": True, "result": []},
            {"id": 3, "updated_at": "2026-01-04", "result": []}]
    assert pick_annotation(anns)["id"] == 3
    anns.append({"id": 4, "updated_at": "2026-01-01", "ground_truth": True, "result": []})
    assert pick_annotation(anns)["id"] == 4
    assert pick_annotation([{"id": 9, "was_cancelled": True}]) is None
    assert pick_annotation([]) is None


def test_percent_to_pixels_uses_original_size():
    assert region_to_bbox(region(10, 20, 50, 30), 1, 1) == [20.0, 20.0, 100.0, 30.0]
    r = region(10, 20, 50, 30)
    del r["original_width"], r["original_height"]
    assert region_to_bbox(r, 400, 200) == [40.0, 40.0, 200.0, 60.0]  # falls back to the real image size


def test_boxes_are_clipped_and_rotations_become_enclosing_boxes():
    assert region_to_bbox(region(90, 90, 20, 20), 0, 0) == [180.0, 90.0, 20.0, 10.0]
    assert region_to_bbox(region(100, 10, 5, 5), 0, 0) is None
    box = region_to_bbox(region(25, 25, 25, 50, W=100, H=100, rotation=90), 0, 0)
    assert box == pytest.approx([0.0, 25.0, 25.0, 25.0])  # 90 deg about the top-left corner, clipped at x=0


def test_split_is_deterministic_sticky_and_close_to_the_fraction():
    ids = range(1, 2001)
    first = assign_splits(ids, {}, 0.2)
    share = sum(s == "val" for s in first.values()) / len(first)
    assert 0.17 < share < 0.23
    assert first == assign_splits(ids, {}, 0.2)
    # A task once in validation stays there even if the fraction changes later.
    later = assign_splits(ids, {t: s for t, s in first.items() if t <= 1000}, 0.5)
    assert all(later[t] == first[t] for t in range(1, 1001))
    assert split_of(5, 0.0) == "train" and split_of(5, 1.0) == "val"


def test_category_ids_never_change():
    first = stable_categories(["cat", "dog"])
    assert first == [{"id": 1, "name": "cat", "supercategory": "object"},
                     {"id": 2, "name": "dog", "supercategory": "object"}]
    second = stable_categories(["bird", "dog", "cat"], first)
    assert {c["name"]: c["id"] for c in second} == {"cat": 1, "dog": 2, "bird": 3}
    third = stable_categories(["dog"], second)  # a removed label keeps its id reserved
    assert {c["name"]: c["id"] for c in third} == {"cat": 1, "dog": 2, "bird": 3}


def test_build_coco_keeps_negatives_and_skips_unknown_labels():
    cats = stable_categories(["circle", "square"])
    items = [
        {"task_id": 7, "file_name": "images/7.jpg", "width": 200, "height": 100,
         "annotation": {"result": [region(0, 0, 10, 10), region(50, 50, 10, 10, label="square"),
                                   region(1, 1, 1, 1, label="unknown"),
                                   region(2, 2, 2, 2, from_name="other")]}},
        {"task_id": 3, "file_name": "images/3.jpg", "width": 200, "height": 100, "annotation": {"result": []}},
    ]
    coco = build_coco(items, cats, control="label")
    assert [im["id"] for im in coco["images"]] == [3, 7]
    assert [(a["image_id"], a["category_id"], a["bbox"]) for a in coco["annotations"]] == [
        (7, 1, [0.0, 0.0, 20.0, 10.0]), (7, 2, [100.0, 50.0, 20.0, 10.0])]


def test_bbox_to_region_round_trips():
    r = bbox_to_region([12.5, 30, 40, 20.25], "star", 250, 120, score=0.5)
    assert r["original_width"] == 250 and r["value"]["rectanglelabels"] == ["star"] and r["score"] == 0.5
    assert region_to_bbox(r, 0, 0) == [12.5, 30.0, 40.0, 20.25]


def _disk(width, height, cx, cy, r):
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def test_build_coco_exports_polygons_and_brush_masks_with_boxes_from_their_pixels():
    """Polygon and brush regions become COCO instances: a polygon in pixels, a brush mask as RLE (counts as
    text); bbox and area are those of the pixels, as pycocotools reads them; rectangles of another control
    are not exported."""
    W, H = 120, 80
    cats = stable_categories(["circle", "triangle"])
    triangle = [(10.0, 10.0), (50.0, 12.5), (20.0, 60.0)]
    disk = _disk(W, H, 85, 40, 20)
    result = [polygon_to_region(triangle, "triangle", W, H),
              brush_to_region(mask_to_brush(disk), "circle", W, H),
              region(0, 0, 10, 10, W=W, H=H),  # a rectangle on "label": not one of the exported controls
              polygon_to_region([(1, 1), (2, 2), (3, 3)], "triangle", W, H),  # no pixel inside: skipped
              polygon_to_region(triangle, "unknown", W, H)]
    items = [{"task_id": 4, "file_name": "images/4.jpg", "width": W, "height": H, "annotation": {"result": result}}]
    coco = build_coco(items, cats, ["polygon", "brush"], decode_brush=brush_to_mask)
    poly, brush = coco["annotations"]
    assert (poly["category_id"], brush["category_id"]) == (2, 1) and poly["iscrowd"] == brush["iscrowd"] == 0

    assert poly["segmentation"] == [[v for p in triangle for v in p]]
    truth = mask_utils.merge(mask_utils.frPyObjects(poly["segmentation"], H, W))
    assert poly["bbox"] == list(mask_utils.toBbox(truth))
    assert poly["bbox"] == pytest.approx([10.0, 10.0, 40.0, 50.0], abs=1.0)  # the polygon's extent, to a pixel
    assert poly["area"] == float(mask_utils.area(truth))

    assert isinstance(brush["segmentation"]["counts"], str) and brush["segmentation"]["size"] == [H, W]
    assert np.array_equal(mask_utils.decode(brush["segmentation"]).astype(bool), disk)
    ys, xs = np.nonzero(disk)
    assert brush["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    assert brush["area"] == disk.sum()

    # the boxes path is unchanged: the rectangle control alone, or every rectangle without a control
    assert [a["bbox"] for a in build_coco(items, cats, "label")["annotations"]] == [[0.0, 0.0, 12.0, 8.0]]
    assert build_coco(items, cats)["annotations"] == build_coco(items, cats, "label")["annotations"]
    with pytest.raises(ValueError, match="decode_brush"):
        build_coco(items, cats, "brush")


def test_mask_controls_win_unless_a_control_is_named():
    labels = ["circle", "square"]
    assert [c["name"] for c in export_controls(rectangle_labels_config(labels))] == ["label"]
    both = segmentation_labels_config(labels, "PolygonLabels", boxes=True)
    assert [c["name"] for c in export_controls(both)] == ["polygon"]
    assert [c["name"] for c in export_controls(both, "label")] == ["label"]
    assert [c["kind"] for c in export_controls(segmentation_labels_config(labels, "BrushLabels"))] == ["BrushLabels"]
    with pytest.raises(LabelConfigError, match="no RectangleLabels, PolygonLabels or BrushLabels control named 'x'"):
        export_controls(both, "x")
