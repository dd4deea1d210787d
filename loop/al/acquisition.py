"""Acquisition scores for active learning (pure): which unlabeled images to send to people first.

Each score takes one image's detections and returns a number where higher means "label this sooner".
- `random_score`: the control every strategy is measured against.
- `least_confidence`: 1 - mean of the detections' confidences. Cheap; favours images where the model is
  unsure of what it found. An image with no detection counts as fully uncertain (1.0): the model may be
  missing everything in it.
- `entropy_score`: mean binary entropy of the detections' confidences (a box at 0.5 is the least certain);
  with per-class probabilities (`class_probs`) it uses the classification entropy instead, which also
  catches boxes torn between two classes.
- `k_center_greedy`: picks a batch that covers the embedding space, so one batch does not spend its budget
  on near-duplicates; combine with an uncertainty score by pre-filtering the most uncertain candidates.

`select` turns those into one labeling batch per strategy (`STRATEGIES`):
- `random`: the control.
- `least_confidence`, `entropy`: the k most uncertain images. Strong when the batch is small compared with
  the pool; with large batches they tend to pick many images of one hard kind.
- `coreset`: k-center greedy over the model's backbone embeddings, ignoring uncertainty. Good at the start,
  when the model's scores mean little.
- `entropy_diverse`: the `prefilter` x k most uncertain images by entropy, then k-center greedy among
  them: uncertain *and* not near-duplicates of each other or of what is already labeled.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def random_score(rng: np.random.Generator) -> float:
    return float(rng.random())


def least_confidence(scores: Sequence[float]) -> float:
    scores = np.asarray(scores, dtype=float)
    return 1.0 if scores.size == 0 else float(1.0 - scores.mean())


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    p = np.clip(p, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=axis)


def entropy_score(scores: Sequence[float], class_probs: np.ndarray | None = None) -> float:
    """Mean per-box entropy, normalised to [0, 1]."""
    if class_probs is not None:
        probs = np.asarray(class_probs, dtype=float)
        if probs.size == 0:
            return 1.0
        probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
        return float(_entropy(probs).mean() / np.log(probs.shape[1])) if probs.shape[1] > 1 else 0.0
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        return 1.0
    return float(_entropy(np.stack([s, 1 - s], axis=1)).mean() / np.log(2))


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


STRATEGIES = ("random", "least_confidence", "entropy", "coreset", "entropy_diverse")


# Strategies Label Studio's queue can follow: a per-image score written to each task. coreset and
# entropy_diverse choose a batch jointly from image embeddings, which the served model does not report.
QUEUE_STRATEGIES = ("entropy", "least_confidence")


def queue_strategy_error(strategy: str | None) -> str | None:
    """Why `strategy` cannot order Label Studio's queue (None where it can, or when the queue is off)."""
    if strategy is None or strategy in QUEUE_STRATEGIES:
        return None
    if strategy == "random":
        return ("preannotate.queue_strategy=random: set it to null (no queue) and choose Uniform sampling in "
                "the project's settings; use " + " or ".join(QUEUE_STRATEGIES) + " for an ordered queue")
    if strategy in STRATEGIES:
        return (f"preannotate.queue_strategy={strategy} picks a batch jointly from image embeddings, which the "
                f"served model does not report, so it cannot order Label Studio's queue; use "
                f"{' or '.join(QUEUE_STRATEGIES)} (or null for no queue), or compare {strategy} with stage=simulate")
    return (f"preannotate.queue_strategy={strategy!r} is no strategy; use {' or '.join(QUEUE_STRATEGIES)} "
            "(or null for no queue)")


def image_score(strategy: str, scores: Sequence[float]) -> float:
    """The per-image uncertainty a strategy ranks by (the score a prediction carries for Label Studio's
    queue; the shortlist of entropy_diverse)."""
    if strategy == "least_confidence":
        return least_confidence(scores)
    if strategy in ("entropy", "entropy_diverse"):
        return entropy_score(scores)
    raise ValueError(f"strategy {strategy!r} has no per-image score; choose one of {STRATEGIES}")


def select(strategy: str, k: int, rng: np.random.Generator, scores: Sequence[Sequence[float]] | None = None,
           embeddings: np.ndarray | None = None, labeled_embeddings: np.ndarray | None = None,
           prefilter: int = 3) -> list[int]:
    """Positions of the k candidates to label next. `scores[i]` are candidate i's detection confidences,
    `embeddings[i]` its feature vector; `labeled_embeddings` describe what is already labeled."""
    n = len(scores) if scores is not None else len(embeddings) if embeddings is not None else 0
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    k = min(k, n)
    if strategy == "random":
        return [int(i) for i in rng.permutation(n)[:k]]
    if strategy in ("coreset", "entropy_diverse") and embeddings is None:
        raise ValueError(f"strategy {strategy} needs embeddings")
    if strategy == "coreset":
        return k_center_greedy(embeddings, k, labeled_embeddings)
    if scores is None:
        raise ValueError(f"strategy {strategy} needs detection scores")
    order = rank([image_score(strategy, s) for s in scores])
    if strategy != "entropy_diverse":
        return order[:k]
    shortlist = order[:max(k, prefilter * k)]
    picked = k_center_greedy(np.asarray(embeddings)[shortlist], k, labeled_embeddings)
    return [shortlist[i] for i in picked]


def rank(scores: Sequence[float]) -> list[int]:
    """Positions sorted by score, highest first; ties keep their order."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable")]
