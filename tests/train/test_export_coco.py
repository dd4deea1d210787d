"""Pure export logic: annotation choice, percent->pixel boxes, sticky held-out split, stable category ids."""

from __future__ import annotations

import pytest

from loop.common.regions import bbox_to_region, region_to_bbox
from train.export_coco import (
    assign_splits,
    build_coco,
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
