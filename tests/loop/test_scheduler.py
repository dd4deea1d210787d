from loop.scheduler import due


def test_retrain_is_due_on_enough_new_annotations_or_on_the_interval():
    assert due(30, 10, 20, None, 0) is not None
    assert due(29, 10, 20, None, 1e9) is None
    assert due(11, 10, None, 60, 61) is not None
    assert due(10, 10, None, 60, 1e9) is None  # nothing new: no retrain on the interval either
    assert due(11, 10, 20, 60, 30) is None
