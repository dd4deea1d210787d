"""stage=simulate's report: the summary and the plot from the rows, and the log's one line per strategy, for
strategies that start from their own first batch (first_batch=strategy) as well as from the shared one."""

import json

from loop.stages.simulate_report import describe, write_report


def _rows(strategy, points):
    return [dict(strategy=strategy, seed=0, round=i, labeled=n, mAP=m) for i, (n, m) in enumerate(points)]


def test_the_summary_says_what_each_strategy_saves_and_the_log_says_it_in_one_line(tmp_path):
    rows = (_rows("random", [(20, 0.6), (40, 0.7), (60, 0.8)])
            + _rows("entropy_sum", [(20, 0.7), (40, 0.8), (60, 0.9)])
            + _rows("coreset", [(20, 0.6), (40, 0.65), (60, 0.7)]))
    summary = write_report(rows, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert (tmp_path / "curves.png").stat().st_size > 5000
    # entropy_sum's own first batch already scores what random scores at 40: it reaches random's 0.8 at 40
    assert summary["entropy_sum"]["labels_to_reach_control"] == 40
    assert summary["entropy_sum"]["gain_at_budget"][20] > 0.09  # the first batch's gain is reported...
    assert abs(summary["entropy_sum"]["mean_gain"] - 0.1) < 1e-9  # ...and the mean counts the later rounds
    lines = describe(summary)
    assert len(lines) == 3
    assert lines[1].startswith("entropy_sum") and "with 40 labels (67%)" in lines[1] and "+0.100" in lines[1]
    assert "never" in lines[2] and "-0.075" in lines[2]  # -0.05 and -0.10
