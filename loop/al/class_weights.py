"""Class weights for the class-balanced acquisition scores (pure): how much a box of each class counts.

A detector is weakest where its labeled set is thin (a rare class) and where it doubts its own boxes (a hard
class); an uncertainty score that weighs every box alike keeps picking the frequent classes that fill most
boxes. `class_balance_weights` multiplies the two parts, `rarity_weights` from the labeled set's boxes per
class and `difficulty_weights` from the model's quality per class (`class_confidence` over a scored pool).
The production queue has the rarity part only, since a per-task score never sees the pool.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# rarity_weights' exponent where none is given, the production queue's (see rarity_weights for why).
RARITY_ALPHA = 0.5


def rarity_weights(counts: Sequence[float], alpha: float = RARITY_ALPHA) -> np.ndarray:
    """One weight per class, proportional to (total / (count_c + 1)) ** alpha and normalised to mean 1, from
    the labeled set's boxes per class (`counts`).

    Why: a detector learns little about a class it has seen a handful of times, and an uncertainty score
    alone keeps picking the frequent classes that fill most boxes. The +1 gives a class with no labeled box
    yet the largest finite weight; alpha 0.5 (a square root) keeps a class 100x rarer at 10x, not 100x,
    so one rare class does not take the whole batch."""
    c = np.asarray(counts, dtype=float).reshape(-1)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"rarity alpha must be a finite number >= 0 (0: every class alike), got {alpha}")
    if c.size == 0:
        return np.ones(0)
    if (c < 0).any() or not np.isfinite(c).all():
        raise ValueError(f"class counts must be finite and >= 0, got {c.tolist()}")
    raw = (max(c.sum(), 1.0) / (c + 1.0)) ** alpha
    return raw / raw.mean()


def difficulty_weights(quality: Sequence[float], alpha: float = 1.0, floor: float = 0.1) -> np.ndarray:
    """One weight per class, proportional to (1 - q_c + floor) ** alpha and normalised to mean 1, where q_c in
    [0, 1] says how well the model does on class c: the mean confidence of its detections of c over the pool
    being scored, or c's AP on held-out images.

    Why (Plug and Play Active Learning's "difficulty calibrated uncertainty sampling", Yang et al.): the
    same box entropy means more on a class the model is weak at; its confident-looking boxes of that class
    are still often wrong. A class with no quality (NaN: the model never finds it) counts as the hardest
    (q = 0). `floor` keeps a class the model is sure of (q = 1) in play: its borderline boxes still count."""
    q = np.asarray(quality, dtype=float).reshape(-1)
    if q.size == 0:
        return np.ones(0)
    q = np.where(np.isnan(q), 0.0, np.clip(q, 0.0, 1.0))
    raw = (1.0 - q + floor) ** alpha
    return raw / raw.mean()


def class_balance_weights(counts: Sequence[float] | None = None, quality: Sequence[float] | None = None,
                  rarity_alpha: float = RARITY_ALPHA, difficulty_alpha: float = 1.0) -> np.ndarray | None:
    """The class weights of class_balanced_entropy: rarity (from the labeled set's `counts` per class) times
    difficulty (from the model's `quality` per class), either one alone when the other is unknown,
    normalised to mean 1 (so the sum scores keep their scale). None when neither is known: every class
    weighs 1."""
    parts = []
    if counts is not None:
        parts.append(rarity_weights(counts, rarity_alpha))
    if quality is not None:
        parts.append(difficulty_weights(quality, difficulty_alpha))
    if not parts:
        return None
    if len({len(p) for p in parts}) > 1:
        raise ValueError(f"{len(parts[0])} class counts but {len(parts[1])} class qualities: give one per class")
    w = np.prod(parts, axis=0)
    return w / w.mean() if w.size else w


def class_confidence(scores: Sequence[Sequence[float]], labels: Sequence[Sequence[int]], num_classes: int,
                     threshold: float = 0.0) -> np.ndarray:
    """Per class, the mean confidence of its boxes scoring at least `threshold` over all these images (NaN
    for a class with none): the per-class quality difficulty_weights takes when the whole pool is scored at
    once, as stage=simulate does (a per-task score never sees the pool)."""
    total, n = np.zeros(num_classes), np.zeros(num_classes)
    for s, lab in zip(scores, labels):
        s, lab = np.asarray(s, dtype=float).reshape(-1), np.asarray(lab, dtype=int).reshape(-1)
        keep = (s >= threshold) & (lab >= 0) & (lab < num_classes)
        np.add.at(total, lab[keep], s[keep])
        np.add.at(n, lab[keep], 1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)
