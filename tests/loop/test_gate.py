from loop.gate import should_promote


def test_first_version_is_promoted():
    assert should_promote(0.1, None) == (True, "first version")


def test_promotion_needs_champion_plus_margin():
    assert should_promote(0.50, 0.50)[0] is True
    assert should_promote(0.50, 0.50, margin=0.01)[0] is False
    assert should_promote(0.52, 0.50, margin=0.01)[0] is True
    assert should_promote(0.40, 0.50)[0] is False
    assert should_promote(float("nan"), 0.1)[0] is False
