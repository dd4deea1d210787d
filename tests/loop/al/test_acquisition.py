import numpy as np
import pytest

from loop.al.acquisition import (
    QUEUE_STRATEGIES,
    STRATEGIES,
    entropy_score,
    k_center_greedy,
    least_confidence,
    queue_strategy_error,
    random_score,
    rank,
    select,
)


def test_least_confidence_prefers_unsure_images():
    assert least_confidence([0.9, 0.95]) < least_confidence([0.4, 0.5]) < least_confidence([])
    assert least_confidence([]) == 1.0


def test_entropy_peaks_at_one_half_and_with_split_classes():
    assert entropy_score([0.5]) == pytest.approx(1.0)
    assert entropy_score([0.99]) < entropy_score([0.7]) < entropy_score([0.5])
    assert entropy_score([], class_probs=np.zeros((0, 3))) == 1.0
    split = entropy_score([], class_probs=np.array([[0.5, 0.5, 0.0]]))
    sure = entropy_score([], class_probs=np.array([[0.98, 0.01, 0.01]]))
    assert sure < split <= 1.0


def test_k_center_greedy_avoids_near_duplicates():
    cluster_a = np.random.default_rng(0).normal(0, 0.01, (10, 2))
    cluster_b = np.random.default_rng(1).normal(5, 0.01, (10, 2))
    far = np.array([[-5.0, 5.0]])
    x = np.vstack([cluster_a, cluster_b, far])
    picked = k_center_greedy(x, 3)
    groups = {0 if i < 10 else 1 if i < 20 else 2 for i in picked}
    assert groups == {0, 1, 2}
    assert len(set(k_center_greedy(x, 25))) == 21
    # Already labeled points count as covered.
    picked = k_center_greedy(x, 1, labeled=np.vstack([cluster_a[:1], far]))
    assert 10 <= picked[0] < 20


def test_rank_and_random():
    assert rank([0.1, 0.9, 0.5]) == [1, 2, 0]
    rng = np.random.default_rng(3)
    assert 0 <= random_score(rng) < 1


def test_select_uncertainty_strategies_pick_the_most_uncertain():
    scores = [[0.99, 0.98], [0.5], [0.9], [0.55, 0.45], []]
    rng = np.random.default_rng(0)
    assert select("entropy", 3, rng, scores) == [1, 4, 3]
    assert select("least_confidence", 2, rng, scores) == [4, 1]
    picked = select("random", 5, rng, scores)
    assert sorted(picked) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="choose one of"):
        select("bald", 2, rng, scores)
    with pytest.raises(ValueError, match="needs embeddings"):
        select("coreset", 2, rng, scores)


def test_entropy_diverse_skips_near_duplicate_uncertain_images():
    # Three equally uncertain near-duplicates and one slightly less uncertain image elsewhere.
    scores = [[0.5], [0.5], [0.5], [0.6], [0.99]]
    emb = np.array([[0.0, 0.0], [0.0, 0.01], [0.01, 0.0], [5.0, 5.0], [9.0, 9.0]])
    rng = np.random.default_rng(0)
    assert select("entropy", 2, rng, scores, emb) == [0, 1]
    picked = select("entropy_diverse", 2, rng, scores, emb, prefilter=2)
    assert 3 in picked and len({0, 1, 2} & set(picked)) == 1
    # Images like what is already labeled come last.
    assert select("coreset", 1, rng, scores, emb, labeled_embeddings=np.array([[9.0, 9.0], [5.0, 5.0]])) == [0]
    assert set(STRATEGIES) >= {"random", "least_confidence", "entropy", "coreset", "entropy_diverse"}


def test_only_per_image_scores_can_order_the_queue():
    assert all(queue_strategy_error(s) is None for s in (None, *QUEUE_STRATEGIES))
    for s in set(STRATEGIES) - set(QUEUE_STRATEGIES) - {"random"}:
        assert "image embeddings" in queue_strategy_error(s)
    assert "Uniform sampling" in queue_strategy_error("random")
    assert "is no strategy" in queue_strategy_error("entrop")
