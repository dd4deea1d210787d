"""Acquisition scores for active learning (pure): which unlabeled images to send to people first.

Each score takes one image's detections and returns a number where higher means "label this sooner".
- `random_score`: the control every strategy is measured against.
- `least_confidence`: 1 - mean of the detections' confidences. Cheap; favours images where the model is
  unsure of what it found. An image with no detection counts as fully uncertain (1.0): the model may be
  missing everything in it.
- `entropy_score`: mean binary entropy of the detections' confidences (a box at 0.5 is the least certain);
  with per-class probabilities (`class_probs`) it uses the classification entropy instead, which also
  catches boxes torn between two classes.
- `k_center_greedy` (`loop.al.diversity`): picks a batch that covers the embedding space, so one batch does
  not spend its budget on near-duplicates; combine with an uncertainty score by pre-filtering the most
  uncertain candidates.

`select` turns those into one labeling batch per strategy (`STRATEGIES`):
- `random`: the control.
- `least_confidence`, `entropy`: the k most uncertain images. Strong when the batch is small compared with
  the pool; with large batches they tend to pick many images of one hard kind.
- `coreset`: k-center greedy over the model's backbone embeddings, ignoring uncertainty. Good at the start,
  when the model's scores mean little.
- `entropy_diverse`: the `prefilter` x k most uncertain images by entropy, then k-center greedy among
  them: uncertain *and* not near-duplicates of each other or of what is already labeled.

Detection-specific scores (`box_entropy_sum`, after Plug and Play Active Learning, Yang et al., "difficulty
calibrated uncertainty sampling"):
- `entropy_sum`: the SUM, not the mean, of the binary entropies of the boxes scoring at least a threshold.
  The budget is counted in images, and a labeled image teaches the model about every object in it: an image
  with five borderline objects is worth more than one with a single borderline object, which the mean
  cannot see (it scores both alike).
- `class_balanced_entropy`: the same sum with each box's entropy multiplied by its predicted class's
  weight (`loop.al.class_weights`): rare classes in the labeled set (`rarity_weights`) and classes the model
  is unsure of (`difficulty_weights`) weigh more, so the batch goes to where the model is weakest, not to
  the frequent classes that fill most boxes. Label Studio's queue (`queue_score`) has the rarity part only.
- `class_balanced_count`: `class_balanced_entropy` plus the objects the model finds (`found_objects`: boxes
  at >= 0.5, each by its class weight): of two images alike in uncertainty, the one with more objects to
  label, since every labeled box teaches the model.
- `class_balanced_diverse`: `class_balanced_entropy`'s shortlist, then k-center greedy, as entropy_diverse.
- `class_balanced_batch`: `class_balanced_entropy` picked one image at a time (`balanced_batch`), the rarity
  weights updated after each pick with the objects the model finds in it: a batch of the top-k images can
  still fill up with one class, since their weights are those of the labeled set before the batch.
- `entropy_flip`: `entropy_sum` plus the image's localisation instability under a horizontal flip
  (`loop.al.stability`): the boxes the model would draw elsewhere on the mirrored image, which the scores
  do not show. It needs a second forward pass per image.

Object-level diversity (`loop.al.diversity.object_coverage`):
- `object_diverse`: `entropy_sum`'s shortlist (`prefilter` x k), then the images whose detected objects are
  farthest from every object already labeled or picked, in the model's per-box features. A detector learns
  objects, not scenes: the image-level embeddings of the _diverse strategies see two images of one
  background as alike whatever objects they hold, and a batch of uncertain images can repeat one hard kind
  of object many times.
- `class_balanced_object_diverse`: the same coverage over `class_balanced_entropy`'s shortlist: the two
  strongest ideas measured apart (rare classes first; objects not seen yet) in one batch.
- `object_representative`: `entropy_sum`'s shortlist, then the images whose objects stand for the most
  uncovered objects of the shortlist (`loop.al.diversity.object_representation`, facility location): the
  typical uncertain objects first, where coverage goes to the farthest ones.

References (`loop.al.hindsight`), not strategies a project can run:
- `oracle_error`: the images the model gets most wrong by their ground truth (`detection_error`), which the
  simulation has and a project does not: how far picking the model's worst images goes, what every
  uncertainty score above tries to guess.
- `oracle_fit`: the same, counting only how loosely the boxes fit the objects they found (mAP@[.5:.95]'s
  thresholds they miss): the ideal of a score that targets box fit.

Cold start (`cold`): while the model finds nothing on most of the pool, every uncertainty score ranks
images by the same "nothing found" value, i.e. by pool order. `select(..., cold_start="random" or
"coreset")` then chooses the batch by that strategy instead.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from loop.al.class_weights import RARITY_ALPHA, class_balance_weights
from loop.al.diversity import k_center_greedy, object_coverage, object_representation


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


def box_entropy(scores: Sequence[float]) -> np.ndarray:
    """Each box's binary entropy of its confidence, normalised to [0, 1] (1 at 0.5): how unsure the model is
    that the box is an object of its class."""
    s = np.clip(np.asarray(scores, dtype=float).reshape(-1), 0.0, 1.0)
    if s.size == 0:
        return np.zeros(0)
    return _entropy(np.stack([s, 1 - s], axis=1)) / np.log(2)


# What an image with no box to sum scores: one box at 0.5 of a class of average weight.
EMPTY_IMAGE_SUM = 1.0


def box_entropy_sum(scores: Sequence[float], labels: Sequence[int] | None = None,
                    class_weights: Sequence[float] | None = None, threshold: float = 0.0) -> float:
    """Sum over the boxes scoring at least `threshold` of their binary entropy, each times its predicted
    class's weight when `labels` and `class_weights` are given (a class outside the weights weighs 1).

    Why the sum: the budget is counted in images, and a labeled image teaches the model about every object
    in it, so an image with many uncertain objects should rank above one with a single one; the mean scores
    both alike. Why the threshold: a box the model barely believes in (a score near 0 is a confident
    "background") still adds some entropy, and a hundred of them would outweigh the real objects: count
    the boxes a person would be shown (the backend's score threshold). An image with no such box scores
    EMPTY_IMAGE_SUM: the model may be missing everything in it (the convention of the mean scores, where it
    counts as fully uncertain), yet it ranks below an image with two or more borderline objects."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    keep = s >= threshold
    if not keep.any():
        return EMPTY_IMAGE_SUM
    return float((box_entropy(s[keep]) * _box_weights(len(s), labels, class_weights)[keep]).sum())


def _box_weights(n: int, labels: Sequence[int] | None, class_weights: Sequence[float] | None) -> np.ndarray:
    """Each of n boxes' class weight (1 without labels and weights, or for a class outside the weights)."""
    if labels is None or class_weights is None:
        return np.ones(n)
    lab = np.asarray(labels, dtype=int).reshape(-1)
    if len(lab) != n:
        raise ValueError(f"{n} scores but {len(lab)} labels: give one class index per box")
    w = np.asarray(class_weights, dtype=float).reshape(-1)
    if not len(w):
        return np.ones(n)
    return np.where((lab >= 0) & (lab < len(w)), w[np.clip(lab, 0, len(w) - 1)], 1.0)


# class_balanced_count's objects: the boxes scoring at least this, each adding COUNT_WEIGHT times its class weight.
COUNT_THRESHOLD = 0.5
COUNT_WEIGHT = 1.0


def found_objects(scores: Sequence[float], labels: Sequence[int] | None = None,
                  class_weights: Sequence[float] | None = None, threshold: float = COUNT_THRESHOLD) -> float:
    """How many objects the model finds in an image: its boxes scoring at least `threshold`, each counted by
    its predicted class's weight.

    Why: the budget is counted in images, and the labels of an image with four objects teach the model four
    boxes where one with a single object teaches one; uncertainty alone does not see that, since a confident
    box adds little entropy. The threshold (0.5, above the entropy sum's 0.3) counts what is likely an
    object: on the demo pool the start model's count at 0.5 follows the true count best (correlation 0.76,
    against 0.71 at 0.3, where false positives add up, and 0.68 at 0.7). Measured
    (docs/active-learning-benchmarks.md): fuller images, yet level with class_balanced_entropy per image and
    worth less per box."""
    s = np.asarray(scores, dtype=float).reshape(-1)
    return float((_box_weights(len(s), labels, class_weights) * (s >= threshold)).sum())


def balanced_batch(scores: Sequence[Sequence[float]], labels: Sequence[Sequence[int]], k: int,
                   counts: Sequence[float], quality: Sequence[float] | None = None,
                   rarity_alpha: float = RARITY_ALPHA, threshold: float = 0.0) -> list[int]:
    """Positions of k images, picked greedily by class_balanced_entropy's score, where after each pick the
    labeled set's boxes per class (`counts`) grow by the objects the model finds in the picked image (its
    boxes at >= COUNT_THRESHOLD, by predicted class) and the rarity weights are computed again.

    Why: the top k by one set of weights all see the classes as rare as they were before the batch, so ten
    images full of one rare class can fill a batch of ten, and the tenth teaches much less about that class
    than the first did. Counting what the batch will likely add makes the next pick go where the labeled
    set will then be thinnest. `quality` (per class, as difficulty_weights takes) stays fixed: the model
    does not change within a batch. Ties keep the given order, as `rank` does."""
    grown = np.asarray(counts, dtype=float).reshape(-1).copy()
    left = list(range(len(scores)))
    chosen: list[int] = []
    while left and len(chosen) < k:
        weights = class_balance_weights(grown, quality, rarity_alpha)
        values = [box_entropy_sum(scores[i], labels[i], weights, threshold) for i in left]
        best = left.pop(int(np.argmax(values)))
        chosen.append(best)
        s = np.asarray(scores[best], dtype=float).reshape(-1)
        lab = np.asarray(labels[best], dtype=int).reshape(-1)[s >= COUNT_THRESHOLD]
        np.add.at(grown, lab[(lab >= 0) & (lab < len(grown))], 1.0)
    return chosen


def cold(scores: Sequence[Sequence[float]], threshold: float, fraction: float = 0.5) -> bool:
    """Is the model cold: on more than `fraction` of the images, no box scores at least `threshold`?

    Why: every uncertainty score gives an image with nothing found the same value, so when that is most of
    the pool the ranking is a tie broken by pool order, a biased pick. Then a batch chosen without the
    model's scores (random, or coreset over embeddings) is the better bet; `select(cold_start=...)`."""
    if not len(scores):
        return False
    empty = sum(1 for s in scores if not (np.asarray(s, dtype=float) >= threshold).any())
    return empty > fraction * len(scores)


STRATEGIES = ("random", "least_confidence", "entropy", "coreset", "entropy_diverse", "entropy_sum",
              "class_balanced_entropy", "class_balanced_count", "class_balanced_diverse", "class_balanced_batch",
              "entropy_flip", "object_diverse", "class_balanced_object_diverse", "object_representative",
              "oracle_error", "oracle_fit")
# Two-stage strategies: the shortlist's per-image score, then k-center greedy among the shortlist over image
# embeddings, or OBJECT_ORDER's order over per-object features for OBJECT_STRATEGIES.
SHORTLIST_SCORE = {"entropy_diverse": "entropy", "class_balanced_diverse": "class_balanced_entropy",
                   "object_diverse": "entropy_sum", "class_balanced_object_diverse": "class_balanced_entropy",
                   "object_representative": "entropy_sum"}
# Strategies that need each detected box's features (the predictor's embed="objects").
OBJECT_STRATEGIES = ("object_diverse", "class_balanced_object_diverse", "object_representative")
# How each of them orders its shortlist by the objects' features (loop.al.diversity).
OBJECT_ORDER = {"object_diverse": object_coverage, "class_balanced_object_diverse": object_coverage,
                "object_representative": object_representation}
# Strategies that need image embeddings (the predictor's pooled neck features).
EMBEDDING_STRATEGIES = ("coreset", *(x for x in SHORTLIST_SCORE if x not in OBJECT_STRATEGIES))
# Strategies whose score weighs each box by its class (labels and class weights).
CLASS_WEIGHTED = ("class_balanced_entropy", "class_balanced_count", "class_balanced_diverse", "class_balanced_batch",
                  "class_balanced_object_diverse")
# Strategies that weigh the classes again after each pick (balanced_batch): they take the labeled set's
# boxes per class, not fixed weights.
BATCH_WEIGHTED = ("class_balanced_batch",)
# Strategies that also score each image's mirror (`instability` in select: loop.al.stability).
TWO_VIEW = ("entropy_flip",)
# Strategies that rank by the ground truth's error (`errors` in select: loop.al.hindsight): the benchmark's
# reference, never the queue's.
HINDSIGHT = ("oracle_error", "oracle_fit")
# What select may fall back to while the model is cold (see `cold`).
COLD_START = ("random", "coreset")


# Strategies Label Studio's queue can follow: a per-image score written to each task; the OBJECT_STRATEGIES'
# batch is chosen jointly, by bulk pre-annotation over the whole pool (its shortlist's scores rewritten to the batch's
# order, loop.al.queue_order; a task predicted alone gets its shortlist score). coreset and the other _diverse
# strategies choose a batch jointly from image embeddings, which the served model does not report.
QUEUE_STRATEGIES = ("entropy", "least_confidence", "entropy_sum", "class_balanced_entropy", "class_balanced_count",
                    *OBJECT_STRATEGIES)


def _queue_choices() -> str:
    return ", ".join(QUEUE_STRATEGIES[:-1]) + " or " + QUEUE_STRATEGIES[-1]


def queue_strategy_error(strategy: str | None) -> str | None:
    """Why `strategy` cannot order Label Studio's queue (None where it can, or when the queue is off)."""
    if strategy is None or strategy in QUEUE_STRATEGIES:
        return None
    if strategy == "random":
        return ("preannotate.queue_strategy=random: set it to null (no queue) and choose Uniform sampling in "
                "the project's settings; use " + _queue_choices() + " for an ordered queue")
    if strategy in TWO_VIEW:
        return (f"preannotate.queue_strategy={strategy} also runs the model on each image's mirror, which the "
                f"backend does not; use {_queue_choices()} (or null for no queue), or compare {strategy} with "
                "stage=simulate")
    if strategy in HINDSIGHT:
        return (f"preannotate.queue_strategy={strategy} ranks images by their ground truth, which unlabeled tasks "
                f"do not have: it is stage=simulate's reference, not a strategy; use {_queue_choices()} (or null "
                "for no queue)")
    if strategy in BATCH_WEIGHTED:
        return (f"preannotate.queue_strategy={strategy} weighs each pick by what the batch's earlier picks add, "
                f"and Label Studio's queue scores each task alone; use {_queue_choices()} (or null for no queue), "
                f"or compare {strategy} with stage=simulate")
    if strategy in STRATEGIES:
        return (f"preannotate.queue_strategy={strategy} picks a batch jointly from the model's features, which the "
                f"served model does not report, so it cannot order Label Studio's queue; use "
                f"{_queue_choices()} (or null for no queue), or compare {strategy} with stage=simulate")
    return (f"preannotate.queue_strategy={strategy!r} is no strategy; use {_queue_choices()} "
            "(or null for no queue)")


def image_score(strategy: str, scores: Sequence[float], labels: Sequence[int] | None = None,
                class_weights: Sequence[float] | None = None, threshold: float = 0.0,
                instability: float | None = None) -> float:
    """The per-image uncertainty a strategy ranks by (the score a prediction carries for Label Studio's
    queue; the shortlist of the _diverse strategies). `labels` (one class index per box) and
    `class_weights` (one per class) count for class_balanced_* only; `threshold`: the boxes the sum scores
    count (the mean scores take the boxes they are given, already cut by the predictor's threshold);
    `instability`: entropy_flip's localisation term (loop.al.stability.flip_instability)."""
    strategy = SHORTLIST_SCORE.get(strategy, strategy)
    if strategy == "least_confidence":
        return least_confidence(scores)
    if strategy == "entropy":
        return entropy_score(scores)
    if strategy == "entropy_sum":
        return box_entropy_sum(scores, threshold=threshold)
    if strategy in ("class_balanced_entropy", *BATCH_WEIGHTED):
        return box_entropy_sum(scores, labels, class_weights, threshold)
    if strategy == "class_balanced_count":
        return box_entropy_sum(scores, labels, class_weights, threshold) + \
            COUNT_WEIGHT * found_objects(scores, labels, class_weights)
    if strategy == "entropy_flip":
        if instability is None:
            raise ValueError("entropy_flip needs each image's flip instability (loop.al.stability)")
        return box_entropy_sum(scores, threshold=threshold) + float(instability)
    raise ValueError(f"strategy {strategy!r} has no per-image score; choose one of {STRATEGIES}")


def queue_score(strategy: str, scores: Sequence[float], labels: Sequence[int] | None = None,
                class_counts: Sequence[float] | None = None) -> float:
    """One task's score in Label Studio's queue, from its detections (already cut at the backend's score
    threshold) and what the served checkpoint knows.

    class_balanced_entropy weighs by rarity only here, from `class_counts` (the boxes per class of the
    labeled set the served version was trained on, stored in its checkpoint; None for checkpoints without:
    every class weighs 1). Difficulty needs every task's detections at once (per-class mean confidence over
    the pool), which a per-task score does not see; stage=simulate measures this variant with
    stage.difficulty_weights=false. The OBJECT_STRATEGIES score a task by their shortlist's score (SHORTLIST_SCORE):
    the batch order among the shortlist is bulk pre-annotation's (loop.al.queue_order)."""
    weights = class_balance_weights(counts=class_counts) if strategy in CLASS_WEIGHTED else None
    return image_score(strategy, scores, labels, weights)


def select(strategy: str, k: int, rng: np.random.Generator, scores: Sequence[Sequence[float]] | None = None,
           embeddings: np.ndarray | None = None, labeled_embeddings: np.ndarray | None = None,
           prefilter: int = 3, labels: Sequence[Sequence[int]] | None = None,
           class_weights: Sequence[float] | None = None, threshold: float = 0.0,
           cold_start: str | None = None, instability: Sequence[float] | None = None,
           objects: Sequence[np.ndarray] | None = None, labeled_objects: np.ndarray | None = None,
           class_counts: Sequence[float] | None = None, class_quality: Sequence[float] | None = None,
           rarity_alpha: float = RARITY_ALPHA, errors: Sequence[float] | None = None) -> list[int]:
    """Positions of the k candidates to label next. `scores[i]` are candidate i's detection confidences,
    `labels[i]` their class indices (class_balanced_*, with `class_weights`, one per class), `embeddings[i]`
    its feature vector; `labeled_embeddings` describe what is already labeled. `threshold`: the boxes the
    sum scores and the cold-start rule count. `cold_start` (random or coreset; None: never): while the model
    is cold (`cold`), every strategy but random and coreset picks the batch that way instead. `instability[i]`:
    candidate i's localisation instability under a flip (entropy_flip). `objects[i]`: candidate i's per-box
    features, one row per box of `scores[i]`; `labeled_objects`: those of the labeled images (object_diverse).
    class_balanced_batch takes the labeled set's boxes per class (`class_counts`), the model's quality per
    class (`class_quality`, or None: rarity only) and `rarity_alpha` instead of `class_weights`; without
    counts (the model's classes are not the project's) it ranks as class_balanced_entropy does. `errors[i]`:
    candidate i's error by its ground truth (oracle_*, loop.al.hindsight); the cold-start rule does not
    apply to it, since it needs no confident box to rank."""
    n = len(scores) if scores is not None else len(embeddings) if embeddings is not None else 0
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if cold_start not in (None, *COLD_START):
        raise ValueError(f"cold_start={cold_start!r}: use {' or '.join(COLD_START)}, or None for no fallback")
    k = min(k, n)
    if strategy in HINDSIGHT:
        if errors is None or len(errors) != n:
            raise ValueError(f"strategy {strategy} needs one ground-truth error per candidate")
        return rank(errors)[:k]
    if cold_start and strategy not in COLD_START and scores is not None and cold(scores, threshold):
        if cold_start == "coreset" and embeddings is None:
            raise ValueError(f"the model is cold and {strategy} falls back to coreset, which needs embeddings")
        strategy = cold_start
    if strategy == "random":
        return [int(i) for i in rng.permutation(n)[:k]]
    if strategy in EMBEDDING_STRATEGIES and embeddings is None:
        raise ValueError(f"strategy {strategy} needs embeddings")
    if strategy == "coreset":
        return k_center_greedy(embeddings, k, labeled_embeddings)
    if scores is None:
        raise ValueError(f"strategy {strategy} needs detection scores")
    if labels is not None and len(labels) != len(scores):
        raise ValueError(f"{len(scores)} candidates' scores but {len(labels)} candidates' labels")
    per_image = labels if labels is not None else [None] * len(scores)
    if strategy in TWO_VIEW and (instability is None or len(instability) != len(scores)):
        raise ValueError(f"strategy {strategy} needs one flip instability per candidate")
    unstable = instability if strategy in TWO_VIEW else [None] * len(scores)
    if strategy in BATCH_WEIGHTED and class_counts is not None:
        if labels is None:
            raise ValueError(f"strategy {strategy} needs each candidate's box labels")
        return balanced_batch(scores, labels, k, class_counts, class_quality, rarity_alpha, threshold)
    order = rank([image_score(strategy, s, lab, class_weights, threshold, u)
                  for s, lab, u in zip(scores, per_image, unstable)])
    if strategy not in SHORTLIST_SCORE:
        return order[:k]
    shortlist = order[:max(k, prefilter * k)]
    if strategy in OBJECT_STRATEGIES:
        if objects is None or len(objects) != len(scores):
            raise ValueError(f"strategy {strategy} needs each candidate's per-object features")
        kept = [np.asarray(objects[i])[np.asarray(scores[i], dtype=float) >= threshold] for i in shortlist]
        picked = OBJECT_ORDER[strategy](kept, k, labeled_objects)
    else:
        picked = k_center_greedy(np.asarray(embeddings)[shortlist], k, labeled_embeddings)
    return [shortlist[i] for i in picked]


def rank(scores: Sequence[float]) -> list[int]:
    """Positions sorted by score, highest first; ties keep their order."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable")]
