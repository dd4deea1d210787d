"""Localisation stability under a flip: boxes flipped back, matched by class and IoU."""

from __future__ import annotations

import numpy as np
import pytest

from loop.al.stability import flip_instability, pairwise_iou, unflip_boxes

W = 100


def test_boxes_found_on_the_mirror_are_flipped_back_into_the_image():
    np.testing.assert_allclose(unflip_boxes(np.array([[0, 5, 10, 20], [90, 0, 100, 10]]), W),
                               [[90, 5, 100, 20], [0, 0, 10, 10]])
    assert unflip_boxes(np.zeros((0, 4)), W).shape == (0, 4)


def test_iou():
    iou = pairwise_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_a_box_drawn_in_the_same_place_on_the_mirror_is_stable():
    box, mirror = [[10, 10, 30, 40]], [[70, 10, 90, 40]]  # the same box, seen in the mirrored image
    assert flip_instability(box, [0.9], [1], mirror, [0.8], [1], W) == pytest.approx(0.0)


def test_a_moved_box_counts_what_it_does_not_share_in_both_views():
    box, mirror = [[10, 10, 30, 40]], [[60, 10, 80, 40]]  # flipped back: 20..40, half overlapping 10..30
    iou = 1 / 3  # 10 x 30 shared of 30 x 30
    assert flip_instability(box, [0.9], [1], mirror, [0.9], [1], W) == pytest.approx(2 * (1 - iou))


def test_a_box_in_one_view_only_or_of_another_class_counts_one_per_box():
    box, mirror = [[10, 10, 30, 40]], [[70, 10, 90, 40]]
    assert flip_instability(box, [0.9], [1], np.zeros((0, 4)), [], [], W) == pytest.approx(1.0)
    assert flip_instability(box, [0.9], [1], mirror, [0.9], [2], W) == pytest.approx(2.0)  # torn between classes


def test_only_boxes_at_or_above_the_threshold_count_and_an_empty_image_is_stable():
    box, mirror = [[10, 10, 30, 40]], [[70, 10, 90, 40]]
    assert flip_instability(box, [0.9], [1], mirror, [0.2], [1], W, threshold=0.3) == pytest.approx(1.0)
    assert flip_instability(box, [0.1], [1], mirror, [0.2], [1], W, threshold=0.3) == 0.0
    assert flip_instability(np.zeros((0, 4)), [], [], np.zeros((0, 4)), [], [], W) == 0.0
