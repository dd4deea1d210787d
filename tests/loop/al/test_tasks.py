from loop.al.tasks import stale


def test_stale_tasks_are_unlabeled_ones_without_a_prediction_from_this_version():
    v = "m:v2"
    assert stale({"predictions": []}, v, False)
    assert stale({"predictions": [{"id": 1, "model_version": "m:v1", "created_at": "2026-01-01"}]}, v, False)
    assert not stale({"predictions": [{"id": 1, "model_version": "m:v1", "created_at": "2026-01-01"},
                                      {"id": 2, "model_version": v, "created_at": "2026-01-02"}]}, v, False)
    labeled = {"annotations": [{"was_cancelled": False}], "predictions": []}
    assert not stale(labeled, v, False) and stale(labeled, v, True)
    assert stale({"annotations": [{"was_cancelled": True}], "predictions": []}, v, False)  # skipped: still unlabeled
