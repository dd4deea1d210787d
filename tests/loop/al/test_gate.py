import pytest

from loop.al.gate import due, gate_metric, should_promote


def test_first_version_is_promoted():
    assert should_promote(0.1, None) == (True, "first version")


def test_promotion_needs_champion_plus_margin():
    assert should_promote(0.50, 0.50)[0] is True
    assert should_promote(0.50, 0.50, margin=0.01)[0] is False
    assert should_promote(0.52, 0.50, margin=0.01)[0] is True
    assert should_promote(0.40, 0.50)[0] is False
    assert should_promote(float("nan"), 0.1)[0] is False


def test_retrain_is_due_on_enough_new_annotations_or_on_the_interval():
    assert due(30, 10, 20, None, 0) is not None
    assert due(29, 10, 20, None, 1e9) is None
    assert due(11, 10, None, 60, 61) is not None
    assert due(10, 10, None, 60, 1e9) is None  # nothing new: no retrain on the interval either
    assert due(11, 10, 20, 60, 30) is None


def test_the_gate_compares_segm_map_for_instance_segmentation_models_and_bbox_otherwise():
    assert gate_metric("auto", True, None) == "segm"    # the first segmenting version
    assert gate_metric("auto", True, True) == "segm"
    assert gate_metric("auto", True, False) == "bbox"   # a box champion has no segm mAP to compare with
    assert gate_metric("auto", False, None) == "bbox"
    assert gate_metric("bbox", True, True) == "bbox"
    with pytest.raises(ValueError, match="needs instance masks"):
        gate_metric("segm", False, None)
    with pytest.raises(ValueError, match="auto, bbox or segm"):
        gate_metric("mask", True, True)
    assert should_promote(0.3, 0.2, metric="segm")[1].startswith("segm mAP 0.3000 >= champion")
