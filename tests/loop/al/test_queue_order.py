"""The object strategies' queue order: a bounded shortlist over a stream, coverage (or representation) order
written as scores, and the same batch as stage=simulate's select over the same pool."""

from __future__ import annotations

import numpy as np
import pytest

from loop.al.acquisition import image_score, select
from loop.al.diversity import object_coverage, object_representation
from loop.al.queue_order import Shortlist, coverage_scores, reservoir


def test_the_shortlist_keeps_the_highest_scores_and_hands_back_the_rest():
    shortlist = Shortlist(3)
    out = []
    for name, score in [("a", 0.2), ("b", 0.9), ("c", 0.5), ("d", 0.1), ("e", 0.7), ("f", 0.5)]:
        out += shortlist.offer(score, name)
    assert out == [(0.1, "d"), (0.2, "a"), (0.5, "f")]  # f ties with c and came later: c stays
    assert shortlist.ranked() == [(0.9, "b"), (0.7, "e"), (0.5, "c")]
    assert len(shortlist) == 3
    with pytest.raises(ValueError, match="at least one"):
        Shortlist(0)


def test_equal_scores_keep_the_order_they_came_in():
    shortlist = Shortlist(2)
    dropped = [x for i in range(5) for x in shortlist.offer(1.0, i)]
    assert shortlist.ranked() == [(1.0, 0), (1.0, 1)] and dropped == [(1.0, 2), (1.0, 3), (1.0, 4)]


def test_coverage_scores_follow_the_coverage_order_above_every_first_stage_score():
    rng = np.random.default_rng(0)
    objects = [rng.normal(size=(int(rng.integers(0, 4)), 5)) for _ in range(6)]
    first = [3.0, 2.5, 2.5, 1.0, 0.5, 0.2]
    labeled = rng.normal(size=(4, 5))
    new = coverage_scores(first, objects, labeled)
    assert sorted(range(6), key=lambda i: -new[i]) == object_coverage(objects, 6, labeled)
    assert min(new) > max(first) and max(new) == pytest.approx(4.0)
    by_representation = coverage_scores(first, objects, labeled, object_representation)
    assert sorted(range(6), key=lambda i: -by_representation[i]) == object_representation(objects, 6, labeled)
    assert coverage_scores([], []) == []
    with pytest.raises(ValueError, match="2 shortlisted tasks but 1"):
        coverage_scores([1.0, 2.0], [np.zeros((0, 0))])


@pytest.mark.parametrize("strategy, order", [("object_diverse", object_coverage),
                                             ("object_representative", object_representation)])
def test_a_streamed_shortlist_gives_the_batch_the_simulation_picks(strategy, order):
    """The production queue (a stream of tasks through a bounded shortlist, then coverage scores) and
    stage=simulate's select order the same pool alike: its first k are select's k, pick for pick."""
    rng = np.random.default_rng(3)
    n, k, prefilter = 60, 5, 3
    scores = [rng.uniform(0.3, 1.0, size=int(rng.integers(0, 6))) for _ in range(n)]
    objects = [rng.normal(size=(len(s), 8)) for s in scores]
    labeled = rng.normal(size=(10, 8))
    picked = select(strategy, k, rng, scores, objects=objects, labeled_objects=labeled, prefilter=prefilter)

    shortlist, rest = Shortlist(prefilter * k), []
    for i, s in enumerate(scores):
        rest += shortlist.offer(image_score(strategy, s), i)
    ranked = shortlist.ranked()
    new = coverage_scores([s for s, _ in ranked], [objects[i] for _, i in ranked], labeled, order)
    queue = sorted([(score, i) for score, (_, i) in zip(new, ranked)] + rest, key=lambda x: -x[0])
    assert [i for _, i in queue[:k]] == picked
    assert len(queue) == n and len(rest) == n - prefilter * k


def test_reservoir_draws_every_item_alike_from_a_stream():
    assert reservoir(range(3), 5, np.random.default_rng(0)) == [0, 1, 2]
    rng = np.random.default_rng(1)
    counts = np.zeros(20)
    for _ in range(4000):
        sample = reservoir(iter(range(20)), 5, rng)
        assert len(set(sample)) == 5
        counts[sample] += 1
    assert np.allclose(counts / 4000, 5 / 20, atol=0.03)  # each item in a quarter of the samples
