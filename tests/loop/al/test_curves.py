import pytest

from loop.al.curves import labels_to_reach, mean_curves, summarise


def _rows(strategy, seed, points):
    return [dict(strategy=strategy, seed=seed, labeled=n, mAP=m) for n, m in points]


def test_mean_curves_average_seeds():
    rows = _rows("random", 0, [(10, 0.1), (20, 0.3)]) + _rows("random", 1, [(10, 0.3), (20, 0.5)])
    curve = mean_curves(rows)["random"]
    assert curve[10] == pytest.approx((0.2, 0.1, 2))
    assert curve[20][0] == pytest.approx(0.4)


def test_labels_to_reach_interpolates_and_says_never():
    assert labels_to_reach({10: 0.1, 20: 0.3, 30: 0.5}, 0.4) == pytest.approx(25.0)
    assert labels_to_reach({10: 0.1, 20: 0.3}, 0.05) == 10.0
    assert labels_to_reach({10: 0.1, 20: 0.3}, 0.9) is None


def test_summarise_compares_with_the_control():
    rows = (_rows("random", 0, [(10, 0.1), (20, 0.2), (30, 0.3), (40, 0.4)])
            + _rows("entropy", 0, [(10, 0.1), (20, 0.4), (30, 0.5), (40, 0.55)])
            + _rows("coreset", 0, [(10, 0.1), (20, 0.15), (30, 0.2), (40, 0.25)]))
    s = summarise(rows)
    assert s["random"]["labels_to_reach_control"] == 40.0
    assert s["entropy"]["labels_to_reach_control"] == pytest.approx(20.0)
    assert s["entropy"]["fraction_of_control_labels"] == pytest.approx(0.5)
    assert s["entropy"]["gain_at_budget"][40] == pytest.approx(0.15)
    assert s["entropy"]["mean_gain"] == pytest.approx((0.2 + 0.2 + 0.15) / 3)
    assert s["coreset"]["labels_to_reach_control"] is None
    with pytest.raises(ValueError, match="control"):
        summarise(_rows("entropy", 0, [(10, 0.1)]))
