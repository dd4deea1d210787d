import numpy as np
import pytest

from loop.al.hindsight import detection_error

TRUTH = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)


def test_an_image_the_model_gets_right_costs_nothing():
    assert detection_error(TRUTH, [0.9, 0.8], [0, 1], TRUTH, [0, 1]) == 0.0
    assert detection_error(np.zeros((0, 4)), [], [], np.zeros((0, 4)), []) == 0.0


def test_a_missed_object_costs_one_and_a_loose_box_the_thresholds_it_misses():
    assert detection_error(TRUTH[:1], [0.9], [0], TRUTH, [0, 1]) == pytest.approx(1.0)
    # IoU 100/120 = 0.83: it misses 0.85, 0.90 and 0.95 of the ten thresholds
    assert detection_error(np.array([[0, 0, 10, 12]]), [0.9], [0], TRUTH[:1], [0]) == pytest.approx(0.3)
    # IoU 0.4: no match at all, so a missed object and a false positive
    assert detection_error(np.array([[0, 0, 4, 10]]), [0.6], [0], TRUTH[:1], [0]) == pytest.approx(1.6)


def test_false_positives_cost_their_score_and_boxes_under_the_threshold_do_not_count():
    # the second box names the wrong class: its object is missed and the box is a false positive
    assert detection_error(TRUTH, [0.9, 0.8], [0, 0], TRUTH, [0, 1]) == pytest.approx(1.8)
    assert detection_error(TRUTH, [0.9, 0.2], [0, 1], TRUTH, [0, 1], threshold=0.3) == pytest.approx(1.0)
    # a box on an empty image
    assert detection_error(TRUTH[:1], [0.7], [0], np.zeros((0, 4)), []) == pytest.approx(0.7)


def test_the_highest_score_matches_first_as_in_coco():
    loose, tight = [0, 0, 10, 12], [0, 0, 10, 10]
    # the loose box scores higher, so it takes the object and the tight duplicate is a false positive
    assert detection_error(np.array([loose, tight]), [0.9, 0.5], [0, 0], TRUTH[:1], [0]) == pytest.approx(0.3 + 0.5)
    assert detection_error(np.array([loose, tight]), [0.5, 0.9], [0, 0], TRUTH[:1], [0]) == pytest.approx(0.5)


def test_fit_only_counts_how_loosely_the_found_objects_fit_and_nothing_else():
    loose = np.array([[0, 0, 10, 12]])  # IoU 0.83 with the first object: 0.3; the second object is missed
    assert detection_error(loose, [0.9], [0], TRUTH, [0, 1], fit_only=True) == pytest.approx(0.3)
    assert detection_error(loose, [0.9], [0], TRUTH, [0, 1]) == pytest.approx(1.3)
    # a false positive and a box of the wrong class cost nothing here
    assert detection_error(np.array([[0, 0, 10, 12], [50, 50, 60, 60]]), [0.9, 0.8], [0, 0], TRUTH[:1], [0],
                           fit_only=True) == pytest.approx(0.3)
    assert detection_error(TRUTH, [0.9, 0.8], [1, 0], TRUTH, [0, 1], fit_only=True) == 0.0
