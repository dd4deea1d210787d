"""Which unlabeled images the model labels itself, and with which boxes (loop.al.pseudo)."""

from __future__ import annotations

import numpy as np
import pytest

from loop.al.pseudo import confident_images, image_doubt, pseudo_boxes


def test_an_image_is_as_doubtful_as_its_most_uncertain_box_above_the_floor():
    assert image_doubt([0.99, 0.5, 0.02], floor=0.05) == pytest.approx(1.0)
    assert image_doubt([0.99, 0.02], floor=0.05) < image_doubt([0.99, 0.9], floor=0.05) < 0.5
    assert image_doubt([0.04, 0.01], floor=0.05) == 0.0 and image_doubt([], floor=0.05) == 0.0


def test_the_surest_images_with_a_confident_box_come_first():
    scores = [[0.95, 0.5],   # 0: a borderline box
              [0.99],        # 1: sure
              [0.2, 0.1],    # 2: no box at the threshold: not a candidate however sure
              [0.97, 0.06],  # 3: sure, a faint box
              [0.99],        # 4: as sure as 1: the lower index first
              []]            # 5: nothing found
    assert confident_images(scores, 3, threshold=0.5, floor=0.05) == [1, 4, 3]
    assert confident_images(scores, 10, threshold=0.5, floor=0.05) == [1, 4, 3, 0]
    assert confident_images(scores, 0, threshold=0.5, floor=0.05) == []


def test_only_boxes_at_the_threshold_become_labels():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]], float)
    kept, labels = pseudo_boxes(boxes, [0.9, 0.49, 0.5], [2, 1, 0], threshold=0.5)
    np.testing.assert_array_equal(kept, boxes[[0, 2]])
    assert labels.tolist() == [2, 0]
    kept, labels = pseudo_boxes(np.zeros((0, 4)), [], [], threshold=0.5)
    assert kept.shape == (0, 4) and labels.size == 0
