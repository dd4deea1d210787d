"""stage=simulate (fast mode): real training rounds, real MLflow store, real batch selection by the model."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from loop.clients.registry import Registry
from loop.common.errors import LoopError
from loop.stages.simulate import round_iterations, run_stage
from loop.stages.simulate_pool import Simulation
from tests.helpers import simulate_cfg as sim_cfg
from train.slim import load_slim

pytestmark = pytest.mark.integration


def test_model_driven_strategies_pick_new_distinct_images(demo_data, demo_model, tmp_path, mlflow_store):
    sim = Simulation(sim_cfg(demo_data, tmp_path, mlflow_store, "stage.per_round=8"))
    labeled = sim.ids[:20]
    for strategy in ("entropy", "least_confidence", "coreset", "entropy_diverse", "entropy_flip", "object_diverse",
                     "class_balanced_object_diverse", "object_representative", "class_balanced_batch", "oracle_error"):
        picked = sim.choose(strategy, str(demo_model["checkpoint"]), labeled, np.random.default_rng(0))
        assert len(set(picked)) == 8 and not set(picked) & set(labeled), strategy
    # Uncertainty picks are the images the model is least sure of, not a random draw.
    entropy = sim.choose("entropy", str(demo_model["checkpoint"]), labeled, np.random.default_rng(0))
    rand = sim.choose("random", str(demo_model["checkpoint"]), labeled, np.random.default_rng(0))
    assert entropy != rand


def test_simulate_writes_curves_to_csv_plot_and_mlflow(small_demo, tmp_path, mlflow_store):
    cfg = sim_cfg(small_demo, tmp_path, mlflow_store, "stage.seeds=[3]", "stage.strategies=[entropy_diverse]",
                  "stage.initial=6", "stage.per_round=4", "stage.rounds=2", "stage.first_iters=2",
                  "stage.round_iters=1", "model.img_size=128", "train.num_workers=0")
    result = run_stage(cfg)
    out = Path(result["out_dir"])
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [(r["strategy"], int(r["labeled"])) for r in rows] == [
        ("random", 6), ("random", 10), ("random", 14), ("entropy_diverse", 6), ("entropy_diverse", 10),
        ("entropy_diverse", 14)]
    assert rows[0]["mAP"] == rows[3]["mAP"]  # both strategies start from the same first model
    # the pool's rarest class: its test AP and its boxes among the labeled images, round by round
    pool = json.loads((small_demo / "pool.json").read_text())
    counts = Counter(a["category_id"] for a in pool["annotations"])
    cats = sorted(pool["categories"], key=lambda c: c["id"])
    rare = min(cats, key=lambda c: counts.get(c["id"]) or math.inf)["name"]  # the first of the least frequent
    assert {r["rare_class"] for r in rows} == {rare}
    boxes = [int(r["rare_boxes"]) for r in rows]
    assert boxes[0] == boxes[3] and boxes[0] <= boxes[1] <= boxes[2] and boxes[3] <= boxes[4] <= boxes[5]
    assert all(math.isnan(float(r["rare_AP"])) or 0.0 <= float(r["rare_AP"]) <= 1.0 for r in rows)
    assert (out / "curves.png").stat().st_size > 5000
    assert set(result["summary"]) == {"random", "entropy_diverse"}

    registry = Registry(mlflow_store["tracking_uri"], "unused", experiment="labelloop-simulate")
    runs = registry.client.search_runs([registry._experiment_id()])
    parent = next(r for r in runs if r.data.tags.get("kind") == "simulate")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {c.data.tags["strategy"] for c in children} == {"random", "entropy_diverse"}
    history = registry.client.get_metric_history(children[0].info.run_id, "bbox_mAP")
    assert [m.step for m in history] == [6, 10, 14]
    assert {a.path for a in registry.client.list_artifacts(parent.info.run_id)} == {
        "results.csv", "summary.json", "curves.png"}

    # A second run adding a strategy trains only its rounds: the first model and random's chain are reused
    # from the training cache, with the same figures. (Without the cold-start rule, so that entropy does not
    # draw the same random batches entropy_diverse drew, whose rounds the cache would rightly reuse too.)
    again = run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.seeds=[3]", "stage.strategies=[entropy]",
                              "stage.cold_start=null",
                              "stage.initial=6", "stage.per_round=4", "stage.rounds=2", "stage.first_iters=2",
                              "stage.round_iters=1", "model.img_size=128", "train.num_workers=0"))
    rows2 = list(csv.DictReader((Path(again["out_dir"]) / "results.csv").read_text().splitlines()))
    assert [(r["strategy"], r["labeled"], r["mAP"]) for r in rows2[:3]] == \
        [(r["strategy"], r["labeled"], r["mAP"]) for r in rows[:3]]
    assert [float(r["train_s"]) for r in rows2[:3]] == [0.0, 0.0, 0.0]
    assert [r["strategy"] for r in rows2[3:]] == ["entropy"] * 3 and all(float(r["train_s"]) > 0 for r in rows2[4:])
    assert len(list((tmp_path / "simulate" / "cache").glob("*/model.pth"))) == 7  # 1 first + 2 x 2 + 2 new


def test_jobs_run_seeds_side_by_side_and_one_process_records_them(small_demo, tmp_path, mlflow_store):
    """stage.jobs=2: seeds 3 and 4 in two worker processes, each logging to its own file; this process writes
    every row to results.csv and to one MLflow child run per strategy and seed."""
    cfg = sim_cfg(small_demo, tmp_path, mlflow_store, "stage.seeds=[3,4]", "stage.strategies=[entropy_sum]",
                  "stage.jobs=2", "stage.initial=6", "stage.per_round=4", "stage.rounds=1", "stage.first_iters=2",
                  "stage.round_iters=1", "model.img_size=128")  # with the recipe's data loader workers, which
    # are child processes of the stage's workers
    result = run_stage(cfg)
    out = Path(result["out_dir"])
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert sorted((r["strategy"], int(r["seed"]), int(r["labeled"])) for r in rows) == sorted(
        (strategy, seed, n) for strategy in ("random", "entropy_sum") for seed in (3, 4) for n in (6, 10))
    for seed in (3, 4):
        log_text = (out / f"seed{seed}.log").read_text()
        assert f"seed {seed} entropy_sum: 10 labeled" in log_text and f"seed {7 - seed} " not in log_text
        # the worker's own chains: its first model and each strategy's round on the images it picked
        first = json.loads((out / f"seed{seed}" / "round0" / "train.json").read_text())["images"]
        later = json.loads((out / f"seed{seed}" / "entropy_sum" / "round1" / "train.json").read_text())["images"]
        assert len(first) == 6 and len(later) == 10 and {im["id"] for im in first} < {im["id"] for im in later}
    assert (out / "curves.png").is_file() and set(result["summary"]) == {"random", "entropy_sum"}

    registry = Registry(mlflow_store["tracking_uri"], "unused", experiment="labelloop-simulate")
    runs = registry.client.search_runs([registry._experiment_id()])
    parent = next(r for r in runs if r.data.tags.get("kind") == "simulate")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted((c.data.tags["strategy"], c.data.tags["seed"]) for c in children) == [
        ("entropy_sum", "3"), ("entropy_sum", "4"), ("random", "3"), ("random", "4")]
    assert {r.info.status for r in [parent, *children]} == {"FINISHED"}
    assert all([m.step for m in registry.client.get_metric_history(c.info.run_id, "bbox_mAP")] == [6, 10]
               for c in children)


def test_the_training_cache_keys_rounds_by_their_thread_count(small_demo, tmp_path, mlflow_store):
    """One thread and two train slightly different weights, so a round trained with one is not reused by a run
    with the other (stage.jobs workers train with fewer threads than a run alone)."""
    cfg = sim_cfg(small_demo, tmp_path, mlflow_store, "stage.initial=6", "stage.per_round=2", "stage.rounds=1")
    before, keys = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            keys.append(Simulation(cfg).cache.key([1, 2, 3], None, 10, 0))
    finally:
        torch.set_num_threads(before)
    assert keys[0] != keys[1] and keys[0] == keys[2]


def test_simulate_refuses_impossible_budgets_and_unknown_strategies(small_demo, tmp_path, mlflow_store):
    with pytest.raises(LoopError, match="lower stage.rounds"):
        Simulation(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.initial=20", "stage.per_round=10"))
    with pytest.raises(LoopError, match="unknown strategies"):
        Simulation(sim_cfg(small_demo, tmp_path, mlflow_store, "stage.initial=4", "stage.per_round=2",
                           "stage.strategies=[bald]"))
    for wrong in ("0", "two"):
        with pytest.raises(LoopError, match=f"stage.jobs={wrong}: give the number of processes"):
            run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, f"stage.jobs={wrong}"))
    for wrong in ("-1", "many"):
        with pytest.raises(LoopError, match=f"stage.rarity_alpha={wrong}: give a number >= 0"):
            run_stage(sim_cfg(small_demo, tmp_path, mlflow_store, f"stage.rarity_alpha={wrong}"))
    assert not (tmp_path / "simulate").exists()  # refused before anything was written


def test_each_strategy_picks_its_own_first_batch_when_asked(small_demo, demo_model, tmp_path, mlflow_store):
    """stage.first_batch=strategy: random keeps the seed's shared random draw and first model; entropy_sum
    trains its own first model on the images the start model doubts most."""
    cfg = sim_cfg(small_demo, tmp_path, mlflow_store, "stage.seeds=[5]", "stage.strategies=[entropy_sum]",
                  "stage.first_batch=strategy", f"model.checkpoint={demo_model['checkpoint']}", "stage.cold_start=null",
                  "stage.initial=6", "stage.per_round=4", "stage.rounds=1", "stage.first_iters=1",
                  "stage.round_iters=1", "model.img_size=128", "train.num_workers=0")
    beside_start = set(Path(demo_model["checkpoint"]).parent.iterdir())
    result = run_stage(cfg)
    out = Path(result["out_dir"])
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [(r["strategy"], int(r["labeled"])) for r in rows] == [
        ("random", 6), ("random", 10), ("entropy_sum", 6), ("entropy_sum", 10)]
    # the start model's ONNX export went to the run's folder, nothing next to the user's checkpoint
    assert list((out / "start-onnx").glob("*.onnx"))
    assert set(Path(demo_model["checkpoint"]).parent.iterdir()) == beside_start
    assert float(rows[2]["select_s"]) > 0  # the start model scored the pool

    def images(folder):
        return sorted(im["id"] for im in json.loads((folder / "train.json").read_text())["images"])

    sim = Simulation(cfg)
    shared, own = images(out / "seed5" / "round0"), images(out / "seed5" / "entropy_sum" / "round0")
    assert shared == sorted(int(i) for i in np.random.default_rng(5).choice(sim.ids, 6, replace=False))
    assert len(own) == 6 and own != shared
    # what the start model ranks first, with nothing labeled
    assert own == sorted(sim.choose("entropy_sum", sim.start_weights, [], np.random.default_rng([5, 1]), k=6,
                                    onnx_dir=tmp_path / "onnx"))


def test_first_models_fine_tune_from_model_checkpoint(small_demo, demo_model, tmp_path, mlflow_store):
    """model.checkpoint is where every seed's first model starts (a pretrained model, as real projects have);
    the cache keys its rounds apart from the rounds of first models trained from scratch."""
    common = ("model.img_size=160", "train.num_workers=0", "stage.initial=6", "stage.per_round=2", "stage.rounds=1")
    scratch = Simulation(sim_cfg(small_demo, tmp_path, mlflow_store, *common))
    tuned = Simulation(sim_cfg(small_demo, tmp_path, mlflow_store, *common,
                               f"model.checkpoint={demo_model['checkpoint']}"))
    labeled = scratch.ids[:6]
    from_scratch = scratch.train(labeled, tmp_path / "scratch", None, 1, seed=0)
    from_weights = tuned.train(labeled, tmp_path / "tuned", None, 1, seed=0)
    assert from_scratch["key"] != from_weights["key"]

    start = load_slim(demo_model["checkpoint"])["state_dict"]

    def distance(result):  # relative to the start weights, over every tensor they share
        after = load_slim(result["checkpoint"])["state_dict"]
        shared = [k for k in start if k in after and start[k].is_floating_point()]
        return sum(float((after[k] - start[k]).norm()) for k in shared) / sum(float(start[k].norm()) for k in shared)

    # one iteration moves the weights it started from a little; a model from scratch is elsewhere
    assert distance(from_weights) < 0.1 < 0.5 < distance(from_scratch)
    # and it detects what the trained model detects, where one iteration from scratch finds nothing
    assert from_weights["bbox_mAP_50"] > 0.2 > from_scratch["bbox_mAP_50"]

    with pytest.raises(LoopError, match="model.checkpoint=.*is not a file"):
        Simulation(sim_cfg(small_demo, tmp_path, mlflow_store, *common, f"model.checkpoint={tmp_path}/none.pth"))


def test_rounds_train_on_pseudo_labels_of_the_images_the_model_is_surest_of(small_demo, demo_model, tmp_path,
                                                                            mlflow_store):
    """stage.pseudo_ratio=0.5: round 1 trains on its 8 labeled images and on 4 unlabeled ones, labeled with
    the first model's own boxes of stage.pseudo_threshold and up; the first model's round has none. (This
    small model's scores stay under 0.5, RTMDet's scores being IoU-aware, so the threshold here is 0.3.)"""
    cfg = sim_cfg(small_demo, tmp_path, mlflow_store, "stage.seeds=[1]", "stage.strategies=[random]",
                  f"model.checkpoint={demo_model['checkpoint']}", "stage.pseudo_ratio=0.5",
                  "stage.pseudo_threshold=0.3", "stage.initial=6", "stage.per_round=2", "stage.rounds=1",
                  "stage.first_iters=1", "stage.round_iters=1",
                  "model.img_size=160", "train.num_workers=0")
    result = run_stage(cfg)
    out = Path(result["out_dir"])
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [(r["labeled"], r["variant"]) for r in rows] == [("6", "pseudo=0.5@0.3"), ("8", "pseudo=0.5@0.3")]
    first = json.loads((out / "seed1" / "round0" / "train.json").read_text())
    trained = json.loads((out / "seed1" / "random" / "round1" / "train.json").read_text())
    pool = json.loads((small_demo / "pool.json").read_text())
    truth = {a["id"]: a for a in pool["annotations"]}
    labeled = {im["id"] for im in first["images"]}
    assert len(labeled) == 6 and all(a["id"] in truth for a in first["annotations"])  # no pseudo-labels
    images = {im["id"] for im in trained["images"]}
    own = [a for a in trained["annotations"] if a["id"] not in truth]
    pseudo = {a["image_id"] for a in own}
    assert len(images) == 12 and labeled < images and len(pseudo) == 4 and not pseudo & labeled
    assert all(a == truth[a["id"]] for a in trained["annotations"] if a["image_id"] not in pseudo)
    # the first model's boxes of 0.3 and up, the image's own, not its ground truth
    sim = Simulation(cfg)
    expected = sim.pseudo_labels(str(out / "seed1" / "round0" / "model.pth"), sorted(images - pseudo))
    assert [(a["image_id"], a["bbox"]) for a in own] == [(a["image_id"], a["bbox"]) for a in expected]


def test_rounds_train_per_epoch_over_the_labeled_images_when_asked():
    stage = OmegaConf.create({"warm_start": True, "round_iters": 80, "first_iters": 300, "round_epochs": None})
    assert round_iterations(stage, 40, 8) == 80
    stage.round_epochs = 50
    # 40 images in batches of 8: 5 iterations an epoch; 41 images: 5 (the last batch, of 1, left out); 44: 6
    assert [round_iterations(stage, n, 8) for n in (40, 41, 44, 80)] == [250, 250, 300, 500]
    assert round_iterations(stage, 41, 8, drop_small_last=False) == 300
    stage.warm_start = False  # from scratch: the first model's schedule
    assert round_iterations(stage, 80, 8) == 300
    stage.warm_start, stage.round_epochs = True, 0
    with pytest.raises(LoopError, match="round_epochs=0"):
        round_iterations(stage, 40, 8)
