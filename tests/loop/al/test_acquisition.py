import numpy as np
import pytest

from loop.al.acquisition import (
    BATCH_WEIGHTED,
    COUNT_WEIGHT,
    EMPTY_IMAGE_SUM,
    HINDSIGHT,
    QUEUE_STRATEGIES,
    STRATEGIES,
    TWO_VIEW,
    balanced_batch,
    box_entropy,
    box_entropy_sum,
    cold,
    entropy_score,
    found_objects,
    image_score,
    least_confidence,
    queue_score,
    queue_strategy_error,
    random_score,
    rank,
    select,
)
from loop.al.class_weights import class_balance_weights
from tests.loop.al.test_diversity import unit


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
    for s in set(STRATEGIES) - set(QUEUE_STRATEGIES) - {"random", *TWO_VIEW, *BATCH_WEIGHTED, *HINDSIGHT}:
        assert "the model's features" in queue_strategy_error(s)
    assert "earlier picks" in queue_strategy_error("class_balanced_batch")
    assert "mirror" in queue_strategy_error("entropy_flip")
    assert "ground truth" in queue_strategy_error("oracle_error")
    assert "Uniform sampling" in queue_strategy_error("random")
    assert "is no strategy" in queue_strategy_error("entrop")


# Detection-specific scores: sums over boxes, class weights, cold start.

def test_the_sum_ranks_many_uncertain_objects_above_one_where_the_mean_cannot():
    many = [0.5, 0.5, 0.5, 0.95]  # three borderline objects and a sure one
    one = [0.5]
    assert entropy_score(one) > entropy_score(many)  # the mean favours the single borderline box
    assert box_entropy_sum(many) > box_entropy_sum(one) == pytest.approx(1.0)
    assert select("entropy_sum", 1, np.random.default_rng(0), [one, many]) == [1]
    assert select("entropy", 1, np.random.default_rng(0), [one, many]) == [0]


def test_the_sum_counts_only_boxes_at_or_above_the_threshold():
    junk = [0.06] * 100  # what a weak model gives every image at a 0.05 threshold
    real = [0.45, 0.55]
    assert box_entropy_sum(junk) > box_entropy_sum(real)  # junk would win without a threshold
    assert box_entropy_sum(junk, threshold=0.3) == EMPTY_IMAGE_SUM
    assert box_entropy_sum(real, threshold=0.3) > EMPTY_IMAGE_SUM
    assert select("entropy_sum", 1, np.random.default_rng(0), [junk, real], threshold=0.3) == [1]
    assert image_score("entropy_sum", junk, threshold=0.3) == EMPTY_IMAGE_SUM


def test_an_image_without_detections_scores_like_one_borderline_box():
    assert box_entropy_sum([]) == EMPTY_IMAGE_SUM == 1.0
    assert box_entropy_sum([0.99]) < box_entropy_sum([]) < box_entropy_sum([0.5, 0.5])
    assert box_entropy_sum([], labels=[], class_weights=[5.0, 0.1]) == EMPTY_IMAGE_SUM
    assert box_entropy([]).shape == (0,)
    np.testing.assert_allclose(box_entropy([0.5, 0.0, 1.0]), [1.0, 0.0, 0.0], atol=1e-9)


def test_class_balanced_entropy_puts_a_rare_or_hard_class_first():
    scores, labels = [[0.5], [0.5]], [[0], [2]]  # the same uncertainty, a common class vs a rare one
    weights = class_balance_weights(counts=[300, 200, 3])
    rng = np.random.default_rng(0)
    assert select("entropy_sum", 2, rng, scores) == [0, 1]  # a tie without weights
    assert select("class_balanced_entropy", 2, rng, scores, labels=labels, class_weights=weights) == [1, 0]
    hard = class_balance_weights(quality=[0.9, 0.9, 0.35])
    assert select("class_balanced_entropy", 1, rng, scores, labels=labels, class_weights=hard) == [1]
    # without labels or weights it is entropy_sum; a class outside the weights weighs 1
    assert image_score("class_balanced_entropy", [0.5]) == image_score("entropy_sum", [0.5])
    assert image_score("class_balanced_entropy", [0.5], [7], weights) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one class index per box"):
        image_score("class_balanced_entropy", [0.5, 0.4], [0], weights)


def test_class_balanced_diverse_skips_near_duplicates_of_the_shortlist():
    scores = [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5], [0.99]]
    labels = [[0, 0], [0, 0], [0, 0], [1], [0]]
    emb = np.array([[0.0, 0.0], [0.0, 0.01], [0.01, 0.0], [5.0, 5.0], [9.0, 9.0]])
    rng = np.random.default_rng(0)
    weights = np.ones(2)
    assert select("class_balanced_entropy", 2, rng, scores, labels=labels, class_weights=weights) == [0, 1]
    picked = select("class_balanced_diverse", 2, rng, scores, emb, prefilter=2, labels=labels, class_weights=weights)
    assert 3 in picked and len({0, 1, 2} & set(picked)) == 1
    with pytest.raises(ValueError, match="needs embeddings"):
        select("class_balanced_diverse", 2, rng, scores, labels=labels)


def test_the_cold_rule_says_when_the_model_finds_nothing_on_most_of_the_pool():
    assert cold([[], [0.1], [0.2, 0.35]], threshold=0.3)  # 2 of 3 images without a box >= 0.3
    assert not cold([[], [0.4], [0.35]], threshold=0.3)
    assert not cold([[], [0.4]], threshold=0.3)  # exactly half is not most
    assert not cold([], threshold=0.3)
    assert cold([[0.4], [0.4], []], threshold=0.3, fraction=0.2)


def test_a_cold_model_hands_the_batch_to_the_fallback():
    scores = [[], [0.1], [], [0.2], [0.5]]  # cold at 0.3: four of five empty
    emb = np.array([[0.0, 0.0], [0.0, 0.01], [5.0, 5.0], [0.01, 0.0], [9.0, 9.0]])
    for strategy in ("entropy", "least_confidence", "entropy_sum", "class_balanced_entropy", "entropy_diverse",
                     "class_balanced_diverse"):
        got = select(strategy, 3, np.random.default_rng(4), scores, emb, threshold=0.3, cold_start="random")
        assert got == select("random", 3, np.random.default_rng(4), scores), strategy
        got = select(strategy, 2, np.random.default_rng(4), scores, emb, threshold=0.3, cold_start="coreset")
        assert got == select("coreset", 2, np.random.default_rng(4), scores, emb), strategy
    # off: empty images tie with the one borderline box, and pool order decides (what the rule avoids)
    assert select("entropy_sum", 2, np.random.default_rng(4), scores, threshold=0.3) == [0, 1]
    # a warm model: the strategy itself
    warm = [[0.5], [0.4], [0.9], [], [0.35]]
    assert select("entropy_sum", 1, np.random.default_rng(4), warm, threshold=0.3, cold_start="random") == [0]
    with pytest.raises(ValueError, match="needs embeddings"):
        select("entropy", 2, np.random.default_rng(4), scores, threshold=0.3, cold_start="coreset")
    with pytest.raises(ValueError, match="cold_start='bald'"):
        select("entropy", 2, np.random.default_rng(4), scores, cold_start="bald")


def test_every_strategy_is_either_a_queue_score_or_refused_with_the_fix():
    rng = np.random.default_rng(0)
    for strategy in STRATEGIES:
        why = queue_strategy_error(strategy)
        if strategy in QUEUE_STRATEGIES:
            assert why is None
            assert isinstance(queue_score(strategy, [0.5], [0], [3, 1]), float)  # a per-image score exists
        else:
            assert "use entropy, least_confidence, entropy_sum, class_balanced_entropy, class_balanced_count, " \
                "object_diverse, class_balanced_object_diverse or object_representative" in why, strategy
        assert len(select(strategy, 2, rng, [[0.5], [0.4], [0.9]], np.eye(3), labels=[[0], [1], [0]],
                          class_weights=np.ones(2), instability=[0.0, 1.0, 0.5],
                          objects=[np.eye(3)[i:i + 1] for i in range(3)], errors=[0.0, 1.0, 2.0])) == 2
    assert set(QUEUE_STRATEGIES) <= set(STRATEGIES)


def test_class_balanced_count_adds_the_objects_found_by_their_class_weight():
    # two images alike in uncertainty (one box at 0.4 each); the second also holds two confident objects
    sparse, full = [0.4], [0.4, 0.95, 0.9]
    assert found_objects(sparse) == 0 and found_objects(full) == 2
    assert image_score("class_balanced_count", full, [0, 0, 0], None, 0.3) > \
        image_score("class_balanced_count", sparse, [0], None, 0.3) + 1.9
    # the entropy sum alone ranks them nearly alike: two confident boxes add little entropy
    assert image_score("class_balanced_entropy", full, [0, 0, 0], None, 0.3) < \
        image_score("class_balanced_entropy", sparse, [0], None, 0.3) + 0.8
    # a rare class's objects count more, a box under 0.5 does not count as an object
    weights = [0.5, 1.5]
    assert found_objects([0.9, 0.8], [1, 1], weights) == 3.0 and found_objects([0.9, 0.8], [0, 0], weights) == 1.0
    assert found_objects([0.49, 0.3], [1, 1], weights) == 0.0
    exact = box_entropy_sum([0.4, 0.9], [1, 0], weights, 0.3) + COUNT_WEIGHT * 0.5
    assert image_score("class_balanced_count", [0.4, 0.9], [1, 0], weights, 0.3) == pytest.approx(exact)
    with pytest.raises(ValueError, match="one class index per box"):
        found_objects([0.9, 0.8], [1], weights)


def test_the_queue_weighs_class_balanced_entropy_by_the_checkpoints_class_counts():
    counts = [500, 20]
    assert queue_score("class_balanced_entropy", [0.5], [1], counts) > queue_score("class_balanced_entropy", [0.5],
                                                                                    [0], counts)
    # a checkpoint without counts: every class weighs 1, i.e. entropy_sum
    assert queue_score("class_balanced_entropy", [0.5, 0.4], [1, 0], None) == queue_score("entropy_sum", [0.5, 0.4])
    # the other queue strategies ignore labels and counts, as they always have
    assert queue_score("entropy", [0.5, 0.9], [1, 0], counts) == image_score("entropy", [0.5, 0.9])
    assert queue_score("least_confidence", [], [], counts) == 1.0


def test_entropy_flip_adds_the_flip_instability_to_the_sum():
    scores = [[0.5], [0.5], [0.9, 0.9]]
    rng = np.random.default_rng(0)
    assert select("entropy_flip", 1, rng, scores, instability=[0.0, 1.5, 0.0]) == [1]
    assert select("entropy_flip", 1, rng, scores, instability=[0.0, 0.0, 0.0]) == [0]  # entropy_sum's order
    with pytest.raises(ValueError, match="flip instability"):
        select("entropy_flip", 1, rng, scores)


def test_object_diverse_shortlists_by_entropy_sum_then_covers_objects():
    scores = [[0.5, 0.5], [0.5, 0.5], [0.5], [0.95]]
    objects = [unit(0, 0), unit(1, 2), unit(120), unit(240)]
    rng = np.random.default_rng(0)
    # the shortlist (prefilter 3 x 2) holds all; images 0 and 1 have the most novelty (two objects each, far
    # from the labeled one), but they hold the same kind of object: the second pick goes to image 2's kind
    first, second = select("object_diverse", 2, rng, scores, objects=objects, labeled_objects=unit(300),
                           threshold=0.3)
    assert first in (0, 1) and second == 2
    # boxes under the threshold do not count as objects
    assert select("object_diverse", 1, rng, [[0.5], [0.1, 0.5]], objects=[unit(0), unit(180, 0)],
                  labeled_objects=unit(0), threshold=0.3, prefilter=2) == [0]
    with pytest.raises(ValueError, match="per-object features"):
        select("object_diverse", 1, rng, scores)


def test_object_representative_shortlists_by_entropy_sum_then_represents_the_shortlists_objects():
    # three images of one kind of object and one of an odd kind, all alike to entropy_sum, and a confident one
    # that the shortlist (prefilter 4 x 1) leaves out
    scores = [[0.5], [0.5], [0.5], [0.5], [0.95]]
    objects = [unit(200), unit(88), unit(90), unit(92), unit(90)]
    rng = np.random.default_rng(0)
    args = dict(objects=objects, labeled_objects=unit(0), threshold=0.3)
    assert select("object_representative", 1, rng, scores, prefilter=4, **args) == [2]
    # object_diverse goes to the odd object first; object_representative to the middle of the group
    assert select("object_diverse", 1, rng, scores, **args) == [0]
    # the shortlist is entropy_sum's: with prefilter 1 only the first-ranked of the tied images is left
    assert select("object_representative", 1, rng, scores, prefilter=1, **args) == [0]
    assert queue_score("object_representative", [0.5, 0.4]) == queue_score("entropy_sum", [0.5, 0.4])
    with pytest.raises(ValueError, match="per-object features"):
        select("object_representative", 1, rng, scores)


def test_class_balanced_object_diverse_shortlists_by_the_rarity_weighted_sum():
    # two images alike to entropy_sum, one box each; image 1's box is of the rare class. With a shortlist of
    # one (prefilter 1, k 1) object_diverse keeps the first, the class-balanced variant the rare class's image
    scores, labels, weights = [[0.5], [0.5]], [[0], [1]], [0.5, 1.5]
    objects = [unit(0), unit(90)]
    rng = np.random.default_rng(0)
    args = dict(objects=objects, labeled_objects=unit(100), threshold=0.3, prefilter=1, labels=labels,
                class_weights=weights)
    assert select("object_diverse", 1, rng, scores, **args) == [0]
    assert select("class_balanced_object_diverse", 1, rng, scores, **args) == [1]
    # with a shortlist of both, coverage decides: image 0's object lies farther from the labeled one (at 100°)
    args.update(prefilter=2)
    assert select("class_balanced_object_diverse", 1, rng, scores, **args) == [0]
    # in the queue its score is the rarity-weighted sum's, from the checkpoint's class counts
    counts = [500, 20]
    assert queue_score("class_balanced_object_diverse", [0.5, 0.4], [1, 0], counts) == \
        queue_score("class_balanced_entropy", [0.5, 0.4], [1, 0], counts)
    assert queue_score("class_balanced_object_diverse", [0.5], [1], counts) > \
        queue_score("object_diverse", [0.5], [1], counts)


def test_balanced_batch_counts_what_its_earlier_picks_add():
    # Three images full of borderline class-0 objects, one with two borderline class-1 objects. With
    # nothing labeled the weights are flat and the top two by class_balanced_entropy are both class-0 images;
    # once the first is picked, its three likely objects (>= 0.5) make class 0 common and the class-1 image
    # comes next.
    scores = [[0.55, 0.55, 0.55], [0.55, 0.55, 0.55], [0.55, 0.55, 0.4], [0.5, 0.5]]
    labels = [[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 1]]
    flat = class_balance_weights(counts=[0, 0])
    assert select("class_balanced_entropy", 2, np.random.default_rng(0), scores, labels=labels,
                  class_weights=flat) == [0, 1]
    assert balanced_batch(scores, labels, 2, [0, 0]) == [0, 3]
    assert select("class_balanced_batch", 2, np.random.default_rng(0), scores, labels=labels,
                  class_counts=[0, 0]) == [0, 3]
    # Boxes under 0.5 are no likely object and add nothing: the class-0 images keep their lead.
    unsure = [[0.45, 0.45, 0.45], [0.45, 0.45, 0.45], [0.2], [0.45, 0.45]]
    assert balanced_batch(unsure, [[0, 0, 0], [0, 0, 0], [0], [1, 1]], 2, [0, 0]) == [0, 1]
    # Without counts (a model of other classes) it ranks as class_balanced_entropy.
    assert select("class_balanced_batch", 2, np.random.default_rng(0), scores, labels=labels) == [0, 1]
    assert balanced_batch(scores, labels, 9, [0, 0]) == [0, 3, 1, 2]  # k beyond the pool: every image once


def test_oracle_error_ranks_by_the_ground_truth_error_even_while_the_model_is_cold():
    rng = np.random.default_rng(0)
    scores = [[], [0.1], []]  # no box at 0.3 anywhere: cold
    assert select("oracle_error", 2, rng, scores, errors=[0.5, 2.0, 1.0], threshold=0.3,
                  cold_start="random") == [1, 2]
    with pytest.raises(ValueError, match="ground-truth error"):
        select("oracle_error", 1, rng, scores, errors=[1.0])
