import numpy as np

from loop.al.diversity import k_center_greedy, object_coverage


def unit(*angles):
    """Per-object features on the unit circle, one row per angle (degrees)."""
    return np.array([[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in angles]).reshape(-1, 2)


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


def test_object_coverage_picks_images_of_objects_not_yet_covered():
    labeled = unit(0, 5)
    objects = [unit(2), unit(90), unit(88, 92), unit(180), unit()]
    # image 2 holds two objects of the uncovered kind at 90 degrees: the most novelty; then image 3 (at 180)
    # beats image 1, whose object image 2 already covers; the image without objects comes last
    assert object_coverage(objects, 4, labeled) == [2, 3, 1, 0]
    assert object_coverage(objects, 5, labeled)[-1] == 4
    # nothing labeled: the first pick is the image farthest from the mean object
    assert object_coverage([unit(0), unit(10), unit(180)], 1) == [2]
    assert object_coverage([unit(), unit()], 1) == [0]  # no objects anywhere: the given order
    # the scale of the features does not matter (rows are normalised)
    assert object_coverage([o * 7 for o in objects], 4, labeled * 3) == [2, 3, 1, 0]
