import numpy as np
import pytest

from loop.al.class_weights import class_balance_weights, class_confidence, difficulty_weights, rarity_weights


def test_rarity_weights_favour_classes_rare_in_the_labeled_set_and_average_one():
    w = rarity_weights([400, 40, 0])
    assert w[0] < w[1] < w[2]
    assert w.mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(np.sqrt(401 / 41))  # alpha 0.5: 10x rarer weighs about 3x
    assert rarity_weights([5, 5, 5]) == pytest.approx(np.ones(3))
    assert rarity_weights([0, 0]) == pytest.approx(np.ones(2))
    with pytest.raises(ValueError, match=">= 0"):
        rarity_weights([3, -1])
    strong = rarity_weights([400, 40, 0], alpha=1.0)  # alpha 1: 10x rarer weighs 10x
    assert strong[1] / strong[0] == pytest.approx(401 / 41)
    assert rarity_weights([400, 40, 0], alpha=0.0) == pytest.approx(np.ones(3))
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        rarity_weights([3, 1], alpha=-0.5)


def test_difficulty_weights_favour_classes_the_model_is_unsure_of():
    w = difficulty_weights([0.9, 0.5, np.nan])  # never detected counts as the hardest
    assert w[0] < w[1] < w[2]
    assert w.mean() == pytest.approx(1.0)
    assert difficulty_weights([1.0, 1.0])[0] > 0  # a class the model is sure of still counts
    assert difficulty_weights([0.7, 0.7]) == pytest.approx(np.ones(2))


def test_class_balance_weights_combine_rarity_and_difficulty():
    assert class_balance_weights() is None
    counts, quality = [100, 100, 5], [0.9, 0.4, 0.9]
    w = class_balance_weights(counts=counts, quality=quality)
    assert w.mean() == pytest.approx(1.0)
    assert w[0] < w[1] and w[0] < w[2]  # the hard class and the rare class both weigh more than the easy, common one
    np.testing.assert_allclose(class_balance_weights(counts=counts), rarity_weights(counts))
    np.testing.assert_allclose(class_balance_weights(quality=quality), difficulty_weights(quality))
    with pytest.raises(ValueError, match="one per class"):
        class_balance_weights(counts=[1, 2], quality=[0.5, 0.5, 0.5])


def test_class_confidence_is_the_mean_score_per_class_over_the_pool():
    scores = [np.array([0.9, 0.5, 0.1]), np.array([0.7]), np.array([])]
    labels = [np.array([0, 1, 2]), np.array([0]), np.array([], int)]
    q = class_confidence(scores, labels, 3, threshold=0.3)
    np.testing.assert_allclose(q[:2], [0.8, 0.5])
    assert np.isnan(q[2])  # its one box is below the threshold
