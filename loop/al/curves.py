"""Learning-curve arithmetic for the active-learning benchmark (pure): what a strategy saves over random.

A curve is mAP against the number of labeled images; several seeds give several curves per strategy.
The two figures reported are the ones people quote in active-learning papers: labels needed to reach the
control's final quality, and quality at an equal labeling budget.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

import numpy as np


def mean_curves(rows: Iterable[Mapping]) -> dict[str, dict[int, tuple[float, float, int]]]:
    """{strategy: {labeled: (mean mAP, std over seeds, number of seeds)}} from rows with the keys
    strategy, seed, labeled, mAP."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        values[str(r["strategy"])][int(r["labeled"])].append(float(r["mAP"]))
    return {s: {n: (float(np.mean(v)), float(np.std(v)), len(v)) for n, v in sorted(by_n.items())}
            for s, by_n in values.items()}


def labels_to_reach(curve: Mapping[int, float], target: float) -> float | None:
    """Labeled images at which the (mean) curve first reaches `target`, interpolated linearly between
    measured points; None if it never does."""
    points = sorted(curve.items())
    for i, (n, m) in enumerate(points):
        if m >= target:
            if i == 0:
                return float(n)
            n0, m0 = points[i - 1]
            return float(n0 + (target - m0) / (m - m0) * (n - n0))
    return None


def summarise(rows: Iterable[Mapping], control: str = "random") -> dict[str, dict]:
    """Per strategy: final mean mAP, labels needed to reach the control's final mean mAP (and that as a
    fraction of the control's budget), and the mean mAP gain over the control at each shared budget."""
    curves = mean_curves(rows)
    if control not in curves:
        raise ValueError(f"the control strategy {control!r} was not run; add it to the strategies")
    ctrl = {n: m for n, (m, _, _) in curves[control].items()}
    budget = max(ctrl)
    target = ctrl[budget]
    out = {}
    for strategy, curve in curves.items():
        means = {n: m for n, (m, _, _) in curve.items()}
        reach = labels_to_reach(means, target)
        gains = {n: means[n] - ctrl[n] for n in means if n in ctrl}
        out[strategy] = {
            "final_labeled": max(means), "final_mAP": means[max(means)],
            "labels_to_reach_control": reach,
            "fraction_of_control_labels": None if reach is None else reach / budget,
            "gain_at_budget": gains,
            "mean_gain": float(np.mean([g for n, g in gains.items() if n != min(ctrl)])) if len(gains) > 1 else 0.0,
        }
    return out
