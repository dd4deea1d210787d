"""Diversity for acquisition (pure): batches that cover the pool, not near-duplicates of one hard kind.

`k_center_greedy` works on one embedding per image (coreset, and the *_diverse strategies' second stage over an
uncertainty shortlist); `object_coverage` on the model's per-object features, since a detector learns objects,
not scenes (object_diverse); `object_representation` on the same features, but for the objects that stand
for many others, not the farthest ones (object_representative).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def k_center_greedy(embeddings: np.ndarray, k: int, labeled: np.ndarray | None = None) -> list[int]:
    """Indices of k rows of `embeddings` that greedily maximise the distance to everything chosen so far
    (and to the already labeled rows `labeled`, if given)."""
    x = np.asarray(embeddings, dtype=float)
    n = len(x)
    k = min(k, n)
    if k <= 0:
        return []
    if labeled is not None and len(labeled):
        d = np.min(np.linalg.norm(x[:, None, :] - np.asarray(labeled, float)[None, :, :], axis=2), axis=1)
        chosen: list[int] = []
    else:
        chosen = [int(np.argmax(np.linalg.norm(x - x.mean(0), axis=1)))]
        d = np.linalg.norm(x - x[chosen[0]], axis=1)
    while len(chosen) < k:
        d[chosen] = -1.0
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(x - x[i], axis=1))
    return chosen


def object_coverage(objects: Sequence[np.ndarray], k: int, labeled: np.ndarray | None = None) -> list[int]:
    """Positions of k images, chosen greedily: each time the one whose objects add the most novelty, the sum
    over its objects of the distance to the nearest object already covered (the `labeled` images' objects,
    then those of the images picked). `objects[i]` is image i's n_i x D per-object features; rows are
    L2-normalised, so a distance is at most 2.

    Why the sum: the budget is counted in images and each new-looking object in an image is one more thing
    the model learns from it (the reason entropy_sum sums). Why greedy coverage: once an image is picked,
    the objects like its own are covered, so the next pick goes to another kind. An image with no object
    adds nothing and is picked last (in the given order, which is the shortlist's uncertainty order). With
    nothing labeled the first pick is the image whose objects lie farthest from the mean object."""
    n = len(objects)
    k = min(k, n)
    feats = [_rows(o) for o in objects]
    dim = next((f.shape[1] for f in feats if f.size), None)
    if dim is None:
        return list(range(k))  # no image has an object: keep the given order
    fresh = labeled is None or not len(labeled)  # nothing covered yet: the first pick goes by the centre
    if fresh:
        centre = np.concatenate([f for f in feats if f.size]).mean(axis=0, keepdims=True)
        nearest = [_nearest(f, centre) for f in feats]
    else:
        covered = _unit(np.asarray(labeled, dtype=float).reshape(-1, dim))
        nearest = [_nearest(f, covered) for f in feats]
    chosen: list[int] = []
    while len(chosen) < k:
        gain = [-1.0 if i in chosen else float(d.sum()) for i, d in enumerate(nearest)]
        i = int(np.argmax(gain))
        chosen.append(i)
        if feats[i].size:
            nearest = [_nearest(f, feats[i]) if fresh else np.minimum(d, _nearest(f, feats[i]))
                       for f, d in zip(feats, nearest)]
            fresh = False
    return chosen


def object_representation(objects: Sequence[np.ndarray], k: int, labeled: np.ndarray | None = None) -> list[int]:
    """Positions of k images, chosen greedily to represent the candidates' objects (facility location): each
    time the image whose objects raise the most the similarity of every candidate object to its nearest
    covered one (the `labeled` images' objects, then those of the images picked). Similarity is
    exp(-d^2 / h^2) for L2-normalised rows at distance d, with h the candidates' median distance from an
    object to its nearest other object, so that "near" means what it means in this pool.

    Why: greedy coverage (`object_coverage`) goes to the objects farthest from everything covered, which on
    few labels are often the odd ones (clutter, a half-visible shape) that teach little about the rest. An
    image whose objects stand for many uncovered objects of the shortlist teaches the model about all of them;
    its own uncovered objects count fully, so an image of several new objects still ranks high. Greedy, so the
    first k picks do not depend on how many are asked for. Images with no object add nothing and come last,
    in the given order."""
    n = len(objects)
    k = min(k, n)
    feats = [_rows(o) for o in objects]
    if not any(f.size for f in feats):
        return list(range(k))  # no image has an object: keep the given order
    every = np.concatenate([f for f in feats if f.size])
    apart = np.linalg.norm(every[:, None, :] - every[None, :, :], axis=2)
    h = _bandwidth(apart)
    near = np.exp(-(apart / h) ** 2)  # near[u, v]: how well object v stands for object u
    # stands[i][u]: how well image i's best object stands for object u (0 for an image without objects)
    ends = np.cumsum([len(f) for f in feats])
    stands = [near[:, end - len(f):end].max(axis=1) if len(f) else np.zeros(len(every))
              for f, end in zip(feats, ends)]
    covered = np.zeros(len(every))
    if labeled is not None and len(labeled):
        done = _unit(np.asarray(labeled, dtype=float).reshape(-1, every.shape[1]))
        covered = np.exp(-(_nearest(every, done) / h) ** 2)
    chosen: list[int] = []
    while len(chosen) < k:
        gain = [-1.0 if i in chosen else float(np.clip(v - covered, 0, None).sum()) for i, v in enumerate(stands)]
        i = int(np.argmax(gain))
        chosen.append(i)
        covered = np.maximum(covered, stands[i])
    return chosen


def _bandwidth(apart: np.ndarray) -> float:
    """The median distance from a row to its nearest other row (1.0 for a single row or identical rows)."""
    if len(apart) < 2:
        return 1.0
    others = apart + np.diag(np.full(len(apart), np.inf))
    h = float(np.median(others.min(axis=1)))
    return h if h > 1e-6 else 1.0


def _rows(objects) -> np.ndarray:
    a = np.asarray(objects, dtype=float)
    return _unit(a.reshape(len(a), -1)) if a.size else np.zeros((0, 0))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None) if x.size else x


def _nearest(x: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each row of x, its distance to the nearest row of `others`."""
    if not x.size:
        return np.zeros(0)
    return np.min(np.linalg.norm(x[:, None, :] - others[None, :, :], axis=2), axis=1)
