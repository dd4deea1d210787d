"""stage=simulate's full mode: the production loop through a real Label Studio per strategy and seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from loop.common.errors import LoopError
from loop.stages.simulate import run_stage
from tests.helpers import simulate_cfg as sim_cfg

pytestmark = pytest.mark.integration


def test_full_mode_refuses_the_fast_modes_settings_before_anything_starts(small_demo, tmp_path, mlflow_store):
    with pytest.raises(LoopError, match="need the fast mode"):
        run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.mode=full", "stage.strategies=[coreset]"))
    with pytest.raises(LoopError, match="first_batch=strategy is the fast mode's"):
        run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.mode=full", "stage.first_batch=strategy",
                          "stage.strategies=[entropy_sum]"))
    with pytest.raises(LoopError, match="rarity_alpha=1.0 is the fast mode's"):
        run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.mode=full", "stage.rarity_alpha=1.0",
                          "stage.strategies=[class_balanced_entropy]"))
    with pytest.raises(LoopError, match="stage.jobs=2 is the fast mode's"):
        run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.mode=full", "stage.jobs=2",
                          "stage.strategies=[entropy_sum]"))
    with pytest.raises(LoopError, match="stage.pseudo_ratio=1 is the fast mode's"):
        run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.mode=full", "stage.pseudo_ratio=1",
                          "stage.strategies=[entropy_sum]"))
    assert not (tmp_path / "simulate").exists()


def test_full_mode_runs_the_production_loop_per_strategy(small_demo, tmp_path, mlflow_store):
    cfg = sim_cfg(small_demo, tmp_path, mlflow_store, "stage.mode=full", "stage.seeds=[1]",
                  "stage.strategies=[least_confidence]", "stage.full_images=24", "stage.initial=14",
                  "stage.per_round=6", "stage.rounds=1", "stage.full_epochs=1", "model.img_size=128",
                  "train.num_workers=0", "export.val_fraction=0.3", "data.name=small")
    result = run_stage(cfg)
    rows = list(csv.DictReader((Path(result["out_dir"]) / "results.csv").read_text().splitlines()))
    assert [(r["strategy"], int(r["labeled"])) for r in rows] == [
        ("random", 14), ("random", 20), ("least_confidence", 14), ("least_confidence", 20)]
    assert set(result["summary"]) == {"random", "least_confidence"}
    # Each run had its own Label Studio project whose queue the annotator followed.
    runs = sorted(Path(result["out_dir"]).glob("seed1-*/demo/*/demo.json"))
    assert len(runs) == 2
    # with no MLflow UI of their own: the benchmark's runs are read from results.csv and the tracking store
    assert [json.loads(r.read_text())["urls"]["mlflow"] for r in runs] == [None, None]
    # each link opens its project's tasks (random order has no queue tab; least_confidence's opens it)
    links = [json.loads(r.read_text())["urls"]["labelstudio"] for r in runs]
    assert [link.split("/", 3)[-1].split("?")[0] for link in links] == ["projects/1/data"] * 2, links
    assert ["?tab=" in link for link in links] == [True, False], links  # sorted: least_confidence, random
    assert not list(Path(result["out_dir"]).glob("seed1-*/demo/*/mlflow-ui.log"))
