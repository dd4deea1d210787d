import csv
import json

import pytest

from loop.common.errors import LoopError
from loop.stages.simulate_merge import main, merge_rows, one_curve_per_variant
from loop.stages.simulate_report import write_report


def _rows(strategy, seed, points):
    return [dict(strategy=strategy, seed=str(seed), round=str(i), labeled=str(n), mAP=str(m))
            for i, (n, m) in enumerate(points)]


def test_parts_sharing_the_control_merge_into_one_table():
    control = _rows("random", 0, [(10, 0.1), (20, 0.2)])
    merged = merge_rows([control + _rows("entropy", 0, [(10, 0.1), (20, 0.4)]),
                         control + _rows("coreset", 0, [(10, 0.1), (20, 0.3)])])
    assert [(r["strategy"], r["labeled"]) for r in merged] == [
        ("random", "10"), ("random", "20"), ("coreset", "10"), ("coreset", "20"), ("entropy", "10"), ("entropy", "20")]


def test_parts_made_with_other_settings_are_refused():
    with pytest.raises(LoopError, match="random, seed 0, 20 labels.*cannot be merged"):
        merge_rows([_rows("random", 0, [(10, 0.1), (20, 0.2)]), _rows("random", 0, [(10, 0.1), (20, 0.25)])])


def test_the_command_writes_table_summary_and_plot(tmp_path, caplog):
    parts = {"a": _rows("random", 0, [(10, 0.1), (20, 0.2)]) + _rows("entropy", 0, [(10, 0.1), (20, 0.4)]),
             "b": _rows("random", 0, [(10, 0.1), (20, 0.2)]) + _rows("coreset", 0, [(10, 0.1), (20, 0.15)])}
    for name, rows in parts.items():
        (tmp_path / name).mkdir()
        with open(tmp_path / name / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    out = tmp_path / "merged"
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"random", "entropy", "coreset"}
    assert summary["entropy"]["labels_to_reach_control"] == pytest.approx(10 + 10 / 3)
    assert summary["coreset"]["labels_to_reach_control"] is None
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert (out / "curves.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "missing"), "--out", str(out)])


def test_two_variants_of_one_strategy_give_two_curves(tmp_path):
    """class_balanced_entropy with and without difficulty weights, run apart, merge into two curves; the same
    variant measured twice must still agree."""
    control = _rows("random", 0, [(10, 0.1), (20, 0.2)])
    rarity = [{**r, "variant": "rarity"} for r in _rows("class_balanced_entropy", 0, [(10, 0.1), (20, 0.4)])]
    both = [{**r, "variant": "rarity+difficulty"} for r in _rows("class_balanced_entropy", 0, [(10, 0.1), (20, 0.3)])]
    merged = merge_rows([control + rarity, control + both])
    assert len(merged) == 6 and {r["variant"] for r in merged} == {"", "rarity", "rarity+difficulty"}
    summary = write_report(one_curve_per_variant(merged), tmp_path)
    assert set(summary) == {"random", "class_balanced_entropy (rarity)", "class_balanced_entropy (rarity+difficulty)"}
    assert summary["class_balanced_entropy (rarity)"]["final_mAP"] == pytest.approx(0.4)
    # a strategy run in one variant keeps its plain name
    assert {r["strategy"] for r in one_curve_per_variant(control + rarity)} == {"random", "class_balanced_entropy"}
    changed = [{**r, "mAP": "0.35"} if r["labeled"] == "20" else r for r in rarity]
    with pytest.raises(LoopError, match=r"class_balanced_entropy \(rarity\), seed 0, 20 labels"):
        merge_rows([control + rarity, control + changed])
