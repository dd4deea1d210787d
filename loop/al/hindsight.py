"""What a model gets wrong on an image, known only with its ground truth (pure).

Why: every uncertainty score is a guess at where the model is wrong. The simulation knows the answer (the
pool's ground truth), so it can rank the pool by the error itself (`oracle_error` in
loop.al.acquisition). That is no strategy a project can run, since its unlabeled images have no labels;
it is the benchmark's reference for how far picking the model's worst images can go, and so for whether a
better uncertainty score is worth looking for at all.

The error counts what COCO's mAP@[.5:.95] charges: each true object costs the share of the ten IoU
thresholds (0.50, 0.55, ... 0.95) its matched box misses (1 when no box of its class matches), and each
box left without an object costs its score (a confident false positive hurts precision more). `fit_only`
(`oracle_fit`) keeps the first part for the objects a box found: how far the boxes are from fitting, the part
of the error that mAP@50 does not see.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loop.al.stability import pairwise_iou

# COCO's IoU thresholds for mAP@[.5:.95]
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def detection_error(boxes: np.ndarray, scores: Sequence[float], labels: Sequence[int], truth_boxes: np.ndarray,
                    truth_labels: Sequence[int], threshold: float = 0.0, fit_only: bool = False) -> float:
    """The image's error (see the module): boxes scoring at least `threshold` (x0 y0 x1 y1, class indices) are
    matched to the true objects as COCO matches them, highest score first, each to the unmatched object of
    its class it overlaps most (IoU ≥ 0.5). An image with neither boxes nor objects scores 0. `fit_only`: the
    matched objects' share of missed thresholds only (no misses, no false positives)."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    keep = s >= threshold
    order = np.argsort(-s[keep], kind="stable")
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)[keep][order]
    lab = np.asarray(labels, dtype=int).reshape(-1)[keep][order]
    s = s[keep][order]
    t = np.asarray(truth_boxes, dtype=float).reshape(-1, 4)
    tl = np.asarray(truth_labels, dtype=int).reshape(-1)
    iou = pairwise_iou(b, t) * (lab[:, None] == tl[None, :])
    best = np.zeros(len(t))   # each object's matched IoU (0: none)
    taken = np.zeros(len(t), dtype=bool)
    false = 0.0
    for i in range(len(b)):
        free = np.where(taken, -1.0, iou[i]) if len(t) else np.zeros(0)
        j = int(np.argmax(free)) if len(t) else -1
        if j < 0 or free[j] < IOU_THRESHOLDS[0]:
            false += s[i]
            continue
        taken[j], best[j] = True, free[j]
    missed = (best[:, None] < IOU_THRESHOLDS[None, :]).mean(axis=1)
    if fit_only:
        return float(missed[taken].sum())
    return float(missed.sum() + false)
