"""stage=simulate's settings (pure): the control is always run, and bad values are refused with the fix."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from loop.al.class_weights import RARITY_ALPHA
from loop.common.errors import LoopError
from loop.stages.simulate_settings import job_count, pseudo_settings, rarity_alpha, strategies_of, strategy_variant


def test_random_runs_first_unless_the_strategies_name_it():
    assert strategies_of(OmegaConf.create({"strategies": ["entropy", "coreset"]})) == ["random", "entropy", "coreset"]
    assert strategies_of(OmegaConf.create({"strategies": ["entropy", "random"]})) == ["entropy", "random"]


def test_jobs_and_rarity_alpha_are_checked():
    assert job_count(OmegaConf.create({})) == 1 and job_count(OmegaConf.create({"jobs": 3})) == 3
    for wrong in (0, "two", True, 1.5):
        with pytest.raises(LoopError, match="give the number of processes"):
            job_count(OmegaConf.create({"jobs": wrong}))
    assert rarity_alpha(OmegaConf.create({"rarity_alpha": None})) == RARITY_ALPHA
    assert rarity_alpha(OmegaConf.create({"rarity_alpha": "1"})) == 1.0
    for wrong in (-1, "many", float("inf"), float("nan")):
        with pytest.raises(LoopError, match="give a number >= 0"):
            rarity_alpha(OmegaConf.create({"rarity_alpha": wrong}))


def test_the_variant_column_names_the_class_weights_a_run_used():
    assert strategy_variant("class_balanced_entropy", True) == "rarity+difficulty"
    assert strategy_variant("class_balanced_diverse", False) == "rarity"
    assert strategy_variant("entropy_sum", True) == strategy_variant("random", False) == ""
    assert strategy_variant("class_balanced_entropy", False, 1.0) == "rarity alpha=1"
    assert strategy_variant("class_balanced_entropy", True, RARITY_ALPHA) == "rarity+difficulty"
    # pseudo-labels change every strategy's training, random's too
    assert strategy_variant("random", True, RARITY_ALPHA, 1.0, 0.5) == "pseudo=1@0.5"
    assert strategy_variant("class_balanced_entropy", False, RARITY_ALPHA, 0.5, 0.7) == "rarity pseudo=0.5@0.7"


def test_pseudo_label_settings_are_checked():
    assert pseudo_settings(OmegaConf.create({})) == (0.0, 0.5)
    assert pseudo_settings(OmegaConf.create({"pseudo_ratio": None, "pseudo_threshold": 0.5})) == (0.0, 0.5)
    assert pseudo_settings(OmegaConf.create({"pseudo_ratio": "2", "pseudo_threshold": 1})) == (2.0, 1.0)
    for ratio, threshold in ((-1, 0.5), ("many", 0.5), (float("inf"), 0.5), (1, 0), (1, 1.5), (1, None)):
        with pytest.raises(LoopError, match="give a ratio >= 0 .* and a threshold in"):
            pseudo_settings(OmegaConf.create({"pseudo_ratio": ratio, "pseudo_threshold": threshold}))
