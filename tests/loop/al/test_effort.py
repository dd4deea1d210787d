"""What people did with a version's predictions, counted per category (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from loop.al.effort import NO_PREDICTION, Effort, boxes, effort_by_version, iou_matrix, match, shown_prediction
from loop.al.oracle import SECONDS, corrected


def rect(label, x, y, w, h, **extra):
    return {"type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}, **extra}


PREDICTED = [rect("circle", 10, 10, 20, 20), rect("square", 50, 50, 20, 20), rect("circle", 5, 60, 10, 10),
             rect("triangle", 70, 5, 10, 10)]
FINAL = [rect("circle", 10, 10, 20, 20.2),          # accepted (IoU 0.99)
         rect("square", 52, 52, 20, 20),            # adjusted (IoU 0.82)
         rect("star", 5, 60, 10, 10),               # relabeled
         rect("square", 80, 80, 10, 10)]            # added; the triangle was deleted


def test_each_region_lands_in_exactly_one_category():
    counts, pairs = match(boxes(PREDICTED), boxes(FINAL))
    assert (counts.accepted, counts.adjusted, counts.relabeled, counts.deleted, counts.added) == (1, 1, 1, 1, 1)
    assert sorted(pairs) == [(0, 0, "accepted"), (1, 1, "adjusted"), (2, 2, "relabeled")]
    assert counts.predicted == 4 and counts.accepted_share == 0.25


def test_the_thresholds_are_where_the_docstring_says():
    base = [("a", (0.0, 0.0, 100.0, 100.0))]
    for width, expected in [(100.0 / 0.95 + 0.01, "adjusted"), (100.0 / 0.95 - 0.01, "accepted"),
                            (199.0, "adjusted"), (201.0, "deleted")]:
        counts = match(base, [("a", (0.0, 0.0, width, 100.0))])[0]
        assert getattr(counts, expected) == 1, (width, counts)
    assert iou_matrix(base, [("a", (200.0, 0.0, 10.0, 10.0))])[0, 0] == 0.0


def test_same_label_pairs_win_over_a_better_iou_with_another_label():
    predicted = [("cat", (0.0, 0.0, 10.0, 10.0))]
    final = [("dog", (0.0, 0.0, 10.0, 10.0)), ("cat", (1.0, 0.0, 10.0, 10.0))]
    counts = match(predicted, final)[0]
    assert (counts.adjusted, counts.relabeled, counts.added) == (1, 0, 1)


def test_only_regions_are_read():
    other = {"type": "choices", "value": {"choices": ["x"]}}
    assert boxes([other, rect("a", 1, 2, 3, 4)]) == [("a", (1.0, 2.0, 3.0, 4.0))]


def polygon(label, *points):
    return {"type": "polygonlabels", "from_name": "polygon", "to_name": "image",
            "value": {"points": [list(p) for p in points], "closed": True, "polygonlabels": [label]}}


def brush(label, mask):
    """A brush region whose 'RLE' the test decoder below reads back: the mask itself, flattened."""
    return {"type": "brushlabels", "from_name": "brush", "to_name": "image", "original_width": mask.shape[1],
            "original_height": mask.shape[0], "value": {"format": "rle", "rle": mask.ravel().astype(int).tolist(),
                                                        "brushlabels": [label]}}


def decode(rle, width, height):
    return np.asarray(rle, bool).reshape(height, width)


def test_polygons_are_counted_by_the_iou_of_their_pixels():
    square = [(10, 10), (50, 10), (50, 50), (10, 50)]
    predicted = [polygon("circle", *square), polygon("square", (60, 60), (90, 60), (90, 90)),
                 polygon("star", (5, 70), (20, 70), (20, 90), (5, 90))]
    final = [polygon("circle", *square),                                   # accepted: the same outline
             polygon("square", (60, 60), (90, 60), (90, 90), (75, 92)),    # adjusted: a corner added
             polygon("star", (70, 5), (90, 5), (90, 20))]                  # added; the last one was deleted
    counts, pairs = match(boxes(predicted), boxes(final))
    assert sorted(pairs) == [(0, 0, "accepted"), (1, 1, "adjusted")]
    assert (counts.deleted, counts.added) == (1, 1)
    # a rectangle drawn over the same square as a polygon: pixels against pixels
    assert iou_matrix(boxes([rect("circle", 10, 10, 40, 40)]), boxes([polygon("circle", *square)]))[0, 0] > 0.99


def test_brush_masks_are_counted_on_their_own_pixel_grid():
    mask = np.zeros((40, 60), bool)
    mask[10:30, 12:42] = True
    moved = np.roll(mask, 6, axis=1)  # 24 of 30 columns overlap: IoU 24/36
    predicted = [brush("cat", mask), rect("dog", 0, 0, 10, 10)]
    final = [brush("cat", moved), rect("dog", 0, 0, 10, 10)]
    table = effort_by_version([{"predictions": [{"id": 1, "model_version": "m:v1", "result": predicted}],
                                "annotations": [{"parent_prediction": 1, "result": final}]}], decode_brush=decode)
    counts = table.by_version["m:v1"]
    assert (counts.accepted, counts.adjusted, counts.deleted, counts.added) == (1, 1, 0, 0)
    assert iou_matrix(boxes([brush("cat", mask)], decode), boxes([brush("cat", moved)], decode))[0, 0] == \
        pytest.approx(24 / 36)
    with pytest.raises(ValueError, match="decode_brush"):
        boxes([brush("cat", mask)])


def test_the_shown_prediction_is_the_parent_else_the_newest_before_the_annotation():
    task = {"predictions": [{"id": 1, "created_at": "2026-01-01T10:00:00Z", "model_version": "m:v1"},
                            {"id": 2, "created_at": "2026-01-02T10:00:00Z", "model_version": "m:v2"},
                            {"id": 3, "created_at": "2026-01-04T10:00:00Z", "model_version": "m:v3"}]}
    assert shown_prediction(task, {"parent_prediction": 1})["id"] == 1
    assert shown_prediction(task, {"created_at": "2026-01-03T00:00:00Z"})["id"] == 2
    assert shown_prediction(task, {"created_at": "2025-12-31T00:00:00Z"}) is None
    assert shown_prediction({"predictions": []}, {}) is None


def test_effort_by_version_sums_annotations_and_keeps_the_baseline_apart():
    tasks = [
        {"predictions": [{"id": 7, "model_version": "m:v1", "result": PREDICTED, "created_at": "1"}],
         "annotations": [{"result": FINAL, "parent_prediction": 7, "lead_time": 20.0, "created_at": "2"},
                         {"result": [], "was_cancelled": True, "lead_time": 99.0}]},
        {"predictions": [{"id": 8, "model_version": "m:v1", "result": PREDICTED[:1], "created_at": "1"}],
         "annotations": [{"result": PREDICTED[:1], "lead_time": 4.0, "created_at": "2"}]},
        {"predictions": [], "annotations": [{"result": FINAL, "lead_time": 60.0}, {"result": FINAL}]},
    ]
    table = effort_by_version(tasks)
    v1, alone = table.by_version["m:v1"], table.by_version[NO_PREDICTION]
    assert (v1.tasks, v1.accepted, v1.adjusted, v1.relabeled, v1.deleted, v1.added) == (2, 2, 1, 1, 1, 1)
    assert v1.seconds_per_task == 12.0 and v1.accepted_share == pytest.approx(2 / 5)
    assert (alone.tasks, alone.added, alone.seconds_per_task) == (2, 8, 60.0)  # one annotation had no lead_time
    assert table.records()[0]["model_version"] == "m:v1"
    assert Effort().metrics() == {f"effort_{k}": 0.0 for k in
                                  ("accepted", "adjusted", "relabeled", "deleted", "added", "tasks")}


def test_the_simulated_annotator_corrects_as_counted_and_submits_the_truth_where_it_edits():
    truth = [rect("circle", 10, 10, 20, 20.2), rect("square", 52, 52, 20, 20), rect("star", 5, 60, 10, 10),
             rect("square", 80, 80, 10, 10)]
    predicted = [dict(r, id=f"p{i}", score=0.9) for i, r in enumerate(PREDICTED)]
    result, counts, seconds = corrected(predicted, truth)
    assert (counts.accepted, counts.adjusted, counts.relabeled, counts.deleted, counts.added) == (1, 1, 1, 1, 1)
    assert seconds == SECONDS["task"] + sum(SECONDS[c] for c in ("accepted", "adjusted", "relabeled", "deleted",
                                                                  "added"))
    # the accepted box is the prediction as it was; every other final box is the truth
    assert result[-3]["value"] == PREDICTED[0]["value"] and "score" not in result[-3]
    assert sorted(str(r["value"]) for r in result) == sorted(str(r["value"]) for r in [PREDICTED[0]] + truth[1:])
    # and counting what it submitted against what it was shown gives the same figures
    again = match(boxes(predicted), boxes(result))[0]
    assert (again.accepted, again.adjusted, again.relabeled, again.deleted, again.added) == (1, 1, 1, 1, 1)
    # with nothing shown, everything is drawn
    alone = corrected([], truth)
    assert alone[1].added == 4 and alone[2] == SECONDS["task"] + 4 * SECONDS["added"]
