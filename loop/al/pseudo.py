"""Which unlabeled images the model may label itself, and with which boxes (pure).

Why: a round's model learns only from the images people labeled, yet it already detects most objects of
the rest with confidence. Training on the unlabeled images it is surest of, with its own confident boxes
as labels (pseudo-labels, as in cost-effective active learning: people label the uncertain images, the
model the certain ones), shows it more of the data for no labeling effort. The risk is teaching it its own
mistakes: a wrong class, a box in clutter, an object it missed, which becomes background. So only images
without a doubtful box are taken, and only boxes above a high threshold are kept.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loop.al.acquisition import box_entropy


def image_doubt(scores: Sequence[float], floor: float) -> float:
    """The image's most uncertain box among those scoring at least `floor` (binary entropy, 1 at 0.5): 0 when
    every box is either near certain or below the floor. The maximum, not a sum, because one doubtful box is
    enough to make the image's pseudo-labels wrong: either a false box or a missed object."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    s = s[s >= floor]
    return float(box_entropy(s).max()) if s.size else 0.0


def confident_images(scores: Sequence[Sequence[float]], k: int, threshold: float, floor: float) -> list[int]:
    """Indices of up to `k` images to pseudo-label: those with at least one box at `threshold` or more (an
    image with none would teach only background, which clutter makes unsafe), least doubtful first (ties by
    index, so the choice is the same on every machine)."""
    if k <= 0:
        return []
    candidates = [i for i, s in enumerate(scores) if np.any(np.asarray(s, dtype=float) >= threshold)]
    doubt = {i: image_doubt(scores[i], floor) for i in candidates}
    return sorted(candidates, key=lambda i: (doubt[i], i))[:k]


def pseudo_boxes(boxes: np.ndarray, scores: Sequence[float], labels: Sequence[int],
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (x0 y0 x1 y1) and class indices kept as labels: those scoring at least `threshold`."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    keep = s >= threshold
    return np.asarray(boxes, dtype=float).reshape(-1, 4)[keep], np.asarray(labels, dtype=int).reshape(-1)[keep]
