import numpy as np

from loop.al.diversity import k_center_greedy, object_coverage, object_representation


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


def test_object_representation_picks_the_image_that_stands_for_many_uncovered_objects():
    labeled = unit(0, 5)
    # four images of one uncovered kind (near 90 degrees) and one odd object at 200 degrees
    objects = [unit(86), unit(88), unit(90), unit(92), unit(200), unit()]
    # coverage goes to the odd one, the farthest from everything labeled; representation to the middle of the
    # group, which stands for three other images' objects
    assert object_coverage(objects, 1, labeled) == [4]
    first, second = object_representation(objects, 2, labeled)
    assert first in (1, 2) and second == 4  # the group is covered now: the odd object is the most left
    # an image of two new objects stands for both: it beats an image of one
    assert object_representation([unit(90), unit(90, 270), unit(270)], 1, labeled) == [1]
    # what is labeled counts as covered: an image of labeled objects comes after one of new objects
    assert object_representation([unit(1), unit(140)], 1, labeled) == [1]
    # images without objects come last, in the given order; none anywhere: the given order
    assert object_representation([unit(), unit(90), unit()], 3, labeled) == [1, 0, 2]
    assert object_representation([unit(), unit()], 1) == [0]
    # greedy: the first picks do not depend on how many are asked for, and the scale of the features does not matter
    assert object_representation(objects, 6, labeled)[:2] == [first, second]
    assert object_representation([o * 7 for o in objects], 2, labeled * 3) == [first, second]
