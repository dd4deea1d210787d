"""stage=simulate's settings, read and checked the same way by both modes (loop.stages.simulate's fast mode,
loop.stages.simulate_full's Label Studio mode): which strategies run, in how many processes, with which
rarity weight, and which data. Each refusal says which setting to change, before anything is written."""

from __future__ import annotations

import math
from pathlib import Path

from loop.al.acquisition import CLASS_WEIGHTED
from loop.al.class_weights import RARITY_ALPHA
from loop.common.demo_data import VARIANTS, ensure
from loop.common.errors import LoopError
from loop.common.paths import resolve


def strategies_of(stage) -> list[str]:
    """stage.strategies, with random first when it is not among them: the control every figure is relative to."""
    strategies = list(stage.strategies)
    if "random" not in strategies:
        strategies.insert(0, "random")
    return strategies


def job_count(stage) -> int:
    """stage.jobs: how many processes run the seeds (1: one after another, in this process)."""
    jobs = stage.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise LoopError(f"stage.jobs={jobs}: give the number of processes to run seeds in (1: one after another)")
    return jobs


def rarity_alpha(stage) -> float:
    """stage.rarity_alpha, the exponent of class_balanced_*'s rarity weights; null: the queue's
    (loop.al.class_weights.RARITY_ALPHA)."""
    alpha = stage.get("rarity_alpha")
    if alpha is None:
        return RARITY_ALPHA
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        alpha = math.nan
    if not (math.isfinite(alpha) and alpha >= 0):
        raise LoopError(f"stage.rarity_alpha={stage.get('rarity_alpha')}: give a number >= 0 (1: a class 10x rarer "
                        f"weighs 10x; 0: every class alike), or null for the queue's {RARITY_ALPHA}")
    return alpha


def strategy_variant(strategy: str, difficulty_weights: bool, alpha: float = RARITY_ALPHA, pseudo_ratio: float = 0,
                     pseudo_threshold: float = 0.5) -> str:
    """results.csv's variant column: the setting a strategy ran with, where it has one, so that runs merged
    later tell them apart. The queue (full mode) weighs by rarity only, with RARITY_ALPHA. Pseudo-labels
    (stage.pseudo_ratio) change every strategy's training, random's too."""
    name = ""
    if strategy in CLASS_WEIGHTED:
        name = "rarity+difficulty" if difficulty_weights else "rarity"
        name = name if alpha == RARITY_ALPHA else f"{name} alpha={alpha:g}"
    if pseudo_ratio:
        name = f"{name} pseudo={pseudo_ratio:g}@{pseudo_threshold:g}".strip()
    return name


def synthetic_if_missing(cfg) -> Path:
    """data.root; for data=demo or data=imbalanced (loop.common.demo_data's variants) generated first when its
    pool is not there yet. Other data sets are used as they are."""
    root = resolve(cfg.data.root)
    if cfg.data.name in VARIANTS and not (root / cfg.data.train_ann).is_file():
        ensure(root, str(cfg.data.name))
    return root


def pseudo_settings(stage) -> tuple[float, float]:
    """(stage.pseudo_ratio, stage.pseudo_threshold): pseudo-labeled images per labeled image in each round
    after the first (0: none), and the score a box needs to become a label (loop.al.pseudo)."""
    ratio, threshold = stage.get("pseudo_ratio") or 0, stage.get("pseudo_threshold", 0.5)
    try:
        ratio, threshold = float(ratio), float(threshold)
    except (TypeError, ValueError):
        ratio = threshold = math.nan
    if not (math.isfinite(ratio) and ratio >= 0 and math.isfinite(threshold) and 0 < threshold <= 1):
        raise LoopError(f"stage.pseudo_ratio={stage.get('pseudo_ratio')} stage.pseudo_threshold="
                        f"{stage.get('pseudo_threshold')}: give a ratio >= 0 (1: as many pseudo-labeled images "
                        "as labeled ones; 0: off) and a threshold in (0, 1] (0.5: boxes the model is sure of)")
    return ratio, threshold
