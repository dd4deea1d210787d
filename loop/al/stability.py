"""Localisation stability under a horizontal flip (pure): how much a detector's boxes move when the image is
mirrored.

Why: a detector's confidence says how sure it is that something is there, not where. A model that has learnt
an object's extent draws the same box on the mirrored image (flipped back); one that has not draws it
elsewhere, or finds it in one view only. That disagreement is uncertainty the scores do not show, after the
localisation-stability term of localisation-aware active learning (Kao et al., "Localization-Aware Active
Learning for Object Detection"), with a flip as the perturbation: it needs no noise model and costs one more
forward pass per image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def unflip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes found on the horizontally mirrored image (x0 y0 x1 y1), in the original image's pixels."""
    b = np.asarray(boxes, dtype=float).reshape(-1, 4).copy()
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """len(a) x len(b) intersection over union of x0 y0 x1 y1 boxes."""
    a, b = np.asarray(a, dtype=float).reshape(-1, 4), np.asarray(b, dtype=float).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def flip_instability(boxes: np.ndarray, scores: Sequence[float], labels: Sequence[int],
                     flipped_boxes: np.ndarray, flipped_scores: Sequence[float], flipped_labels: Sequence[int],
                     width: int, threshold: float = 0.0) -> float:
    """Sum, over the boxes scoring at least `threshold` in either view, of 1 − the IoU with the closest box of
    the same class in the other view (the mirrored view's boxes flipped back first). A box found in one view
    only counts 1; an image where neither view finds a box scores 0 (nothing to localise). `flipped_*` are the
    detections on the mirrored image, in its own pixels; `width` is the image's width."""
    s, fs = np.asarray(scores, dtype=float).reshape(-1), np.asarray(flipped_scores, dtype=float).reshape(-1)
    keep, fkeep = s >= threshold, fs >= threshold
    a = np.asarray(boxes, dtype=float).reshape(-1, 4)[keep]
    b = unflip_boxes(flipped_boxes, width)[fkeep]
    la = np.asarray(labels, dtype=int).reshape(-1)[keep]
    lb = np.asarray(flipped_labels, dtype=int).reshape(-1)[fkeep]
    if len(a) == 0 and len(b) == 0:
        return 0.0
    iou = pairwise_iou(a, b) * (la[:, None] == lb[None, :])
    best_a = iou.max(axis=1) if len(b) else np.zeros(len(a))
    best_b = iou.max(axis=0) if len(a) else np.zeros(len(b))
    return float((1 - best_a).sum() + (1 - best_b).sum())
