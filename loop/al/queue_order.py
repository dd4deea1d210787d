"""A batch order for Label Studio's queue (pure): an object strategy's shortlist (object_diverse and the others of
loop.al.acquisition.OBJECT_STRATEGIES), chosen over a stream of predictions and ordered by the objects' features
(coverage, or representation for object_representative), written as scores.

Label Studio's queue tab sorts tasks by one number per prediction, so a strategy that picks a batch jointly
(object_diverse: the images whose detected objects are farthest from everything covered) cannot be a per-task
score. Bulk pre-annotation runs the model over every unlabeled task anyway, so it can do what stage=simulate
does over the pool: keep the `prefilter` x `batch` tasks with the highest first-stage score (entropy_sum) as
they stream past (`Shortlist`, bounded memory, whatever the project's size), order those by coverage
(`loop.al.diversity.object_coverage`) once the stream ends, and write that order as scores above every other
task's (`coverage_scores`). The tasks outside the shortlist keep their first-stage score, the order in which
object_diverse's shortlists would take them up (until the next version re-orders the queue).

Greedy coverage picks its first k the same whatever the number asked for, so ordering the whole shortlist
gives the simulation's batch of `batch` first, then the next picks.
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from loop.al.diversity import object_coverage


class Shortlist:
    """The `size` items with the highest scores offered so far; of equal scores, the ones offered first.

    Why bounded: pre-annotation streams projects of any size page by page; only the shortlist waits for the
    end of the stream, everything else is final (and stored) when it falls out."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a shortlist holds at least one task, not {size}")
        self.size = size
        self._heap: list[tuple[float, int, Any]] = []  # (score, -arrival, item): the root is the first to drop
        self._arrival = count()

    def offer(self, score: float, item: Any) -> list[tuple[float, Any]]:
        """Add `item`; returns what no longer makes the shortlist (the item itself, or the one it displaces, or
        nothing while the shortlist is not full), as (score, item)."""
        entry = (float(score), -next(self._arrival), item)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
            return []
        if entry[:2] <= self._heap[0][:2]:
            return [(entry[0], item)]
        dropped = heapq.heapreplace(self._heap, entry)
        return [(dropped[0], dropped[2])]

    def __len__(self) -> int:
        return len(self._heap)

    def ranked(self) -> list[tuple[float, Any]]:
        """(score, item), highest score first, ties in the order offered."""
        return [(s, item) for s, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]


def coverage_scores(scores: Sequence[float], objects: Sequence[np.ndarray],
                    labeled_objects: np.ndarray | None = None, order: Callable = object_coverage) -> list[float]:
    """New scores for a shortlist (`scores[i]`: item i's first-stage score, `objects[i]`: its detected objects'
    features, ranked by score) such that sorting by them, highest first, gives `order`'s picks (object coverage,
    or any greedy order of loop.al.diversity with its signature), and every one is above every first-stage
    score of the shortlist and so above everything left out of it: the j-th pick of n gets
    max(scores) + (n - j) / n."""
    n = len(scores)
    if len(objects) != n:
        raise ValueError(f"{n} shortlisted tasks but {len(objects)} sets of object features")
    if not n:
        return []
    top = float(max(scores))
    out = [0.0] * n
    for position, i in enumerate(order(list(objects), n, labeled_objects)):
        out[i] = top + (n - position) / n
    return out


def reservoir(items: Iterable[Any], k: int, rng: np.random.Generator) -> list[Any]:
    """k items drawn uniformly from a stream of unknown length, in one pass and O(k) memory (all of them if
    there are fewer): the labeled tasks whose objects count as covered, in a project of any size."""
    sample: list[Any] = []
    for seen, item in enumerate(items):
        if len(sample) < k:
            sample.append(item)
        else:
            j = int(rng.integers(0, seen + 1))
            if j < k:
                sample[j] = item
    return sample
