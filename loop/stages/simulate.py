"""stage=simulate: the oracle benchmark of active learning (fast mode: in-process, no Label Studio).

Start from `initial` random images of the pool, then `rounds` of `per_round` images chosen by each strategy,
labeled by the ground truth; after each round the model is trained again and scored on the fixed test
split. Every strategy of one seed starts from the same initial images and the same first model, so the
curves differ only by what the strategies chose. With a pretrained start (model.checkpoint) and
`first_batch=strategy`, each strategy picks the initial images too, scored by that start model, as the
production queue orders a new project's first tasks by the served checkpoint's predictions. With
`stage.pseudo_ratio`, every strategy's rounds also train on unlabeled images labeled by the previous round's
model (loop.al.pseudo), a way to learn from the unlabeled pool that the production loop does not have.

Rows go to a CSV as they come (a stopped run keeps its rounds), and to MLflow: one parent run with the CSV,
the plot and the summary, one child run per strategy and seed with `bbox_mAP` against the labeled-image
count as step. With `stage.jobs` > 1 the seeds run side by side in worker processes and this process writes
their rows (loop.stages.simulate_jobs). The pool, the training of a round and the picking of the next images are
loop.stages.simulate_pool's Simulation.

The full mode (`stage.mode=full`, loop.stages.simulate_full) runs the production loop through a real Label
Studio instead, one `stage=demo` run per strategy and seed, recorded the same way.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from loop.common.errors import LoopError
from loop.common.paths import resolve
from loop.stages.simulate_full import simulate_full
from loop.stages.simulate_jobs import side_by_side, threads_per_job
from loop.stages.simulate_pool import Simulation
from loop.stages.simulate_report import Results, describe
from loop.stages.simulate_settings import job_count, rarity_alpha, strategies_of, strategy_variant
from train.trainer import batches_per_epoch

log = logging.getLogger(__name__)


def round_iterations(stage, labeled: int, batch_size: int, drop_small_last: bool = True) -> int:
    """Training iterations of a round after the first: stage.round_epochs passes over the labeled images when
    set (so a round on 80 images trains twice as long as one on 40, as stage=demo's recipe does), else
    stage.round_iters; first_iters when rounds train from scratch (warm_start=false).

    Why epochs: a fixed count leaves each round's model less trained per image as the labeled set grows, so
    the later rounds, where the strategies differ, are decided by how far training got more than by which
    images were chosen."""
    if not stage.warm_start:
        return int(stage.first_iters)
    epochs = stage.get("round_epochs")
    if epochs is None:
        return int(stage.round_iters)
    if int(epochs) < 1:
        raise LoopError(f"stage.round_epochs={epochs}: give at least 1, or null to train stage.round_iters")
    return int(epochs) * batches_per_epoch(labeled, batch_size, drop_small_last=drop_small_last)


def rare_text(rare: dict) -> str:
    return f" ({rare['rare_class']} AP {rare['rare_AP']:.3f}, {rare['rare_boxes']} labeled)" if rare else ""


def simulate(cfg) -> dict[str, Any]:
    """Fast mode: in-process training rounds on the COCO data; with stage.jobs > 1, the seeds side by side in
    that many processes (loop.stages.simulate_jobs), this one writing every row."""
    stage = cfg.stage
    rarity_alpha(stage)  # refused before anything trains
    jobs = job_count(stage)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = resolve(cfg.work_dir) / "simulate" / stamp
    out.mkdir(parents=True, exist_ok=True)
    strategies, seeds = strategies_of(stage), [int(x) for x in stage.seeds]
    side = jobs > 1 and len(seeds) > 1  # the seeds in worker processes, which read the pool themselves
    sim = Simulation(cfg, keep_images=not side)
    results = Results(cfg, out, stamp)
    own_first = [x for x in strategies if x != "random"] if sim.first_batch == "strategy" else []
    bar = tqdm(total=len(seeds) * (1 + len(own_first) + len(strategies) * int(stage.rounds)), desc="simulate",
               unit="training")
    with results.parent():
        if side:
            threads = threads_per_job(jobs)
            log.info("seeds %s side by side in %d processes, %d thread(s) each; their logs: %s/seed<N>.log",
                     seeds, min(jobs, len(seeds)), threads, out)

            def handle(seed: int, message: tuple) -> None:
                if message[0] == "row":
                    results.add(message[1])
                    log.info(row_text(message[1]))
                elif message[0] == "trained":
                    bar.update()
                elif message[0] == "done":
                    results.end_seed(seed)

            side_by_side(partial(_seed_job, OmegaConf.to_container(cfg, resolve=True), str(out), threads), seeds,
                         jobs, handle, log_of=lambda seed: out / f"seed{seed}.log")
        else:
            for seed in seeds:
                run_seed(sim, seed, out, strategies, results.add, bar.update)
                results.end_seed(seed)
    bar.close()
    return _outcome(results)


def row_text(row: dict) -> str:
    rare = rare_text(row) if "rare_class" in row else ""
    return f"seed {row['seed']} {row['strategy']}: {row['labeled']} labeled -> mAP {row['mAP']:.3f}{rare}"


def run_seed(sim: Simulation, seed: int, out: Path, strategies: list[str], emit: Callable[[dict], None],
             trained: Callable[[], None], onnx_dir: Path | None = None) -> None:
    """One seed's curves: its first model, then each strategy's chain of rounds. `emit(row)` gets each round's
    results.csv row as it comes, `trained()` is called after each training (cached or not). Seeds are
    independent of each other (stage.jobs runs them side by side); a seed's rounds are not."""
    stage, cfg = sim.stage, sim.cfg
    own_first = [x for x in strategies if x != "random"] if sim.first_batch == "strategy" else []
    rng = np.random.default_rng(seed)
    initial = sorted(int(i) for i in rng.choice(sim.ids, int(stage.initial), replace=False))
    started = time.perf_counter()
    first = sim.train(initial, out / f"seed{seed}" / "round0", None, int(stage.first_iters), seed)
    first = {**first, "train_s": time.perf_counter() - started, "select_s": 0.0}
    trained()
    first_rare = sim.rare_figures(initial, first)
    log.info("seed %d: %d random images, from %s -> mAP %.3f%s", seed, len(initial),
             sim.start_weights or "scratch", first["bbox_mAP"], rare_text(first_rare))
    for si, strategy in enumerate(strategies):
        srng = np.random.default_rng([seed, si])
        variant = strategy_variant(strategy, sim.difficulty, sim.rarity_alpha, sim.pseudo_ratio,
                                   sim.pseudo_threshold)
        labeled, result, rare = list(initial), first, first_rare
        if strategy in own_first:
            labeled, result = sim.own_first_batch(strategy, out, seed, srng, onnx_dir)
            rare = sim.rare_figures(labeled, result)
            trained()
            log.info("seed %d %s: its own first %d images -> mAP %.3f%s", seed, strategy,
                     len(labeled), result["bbox_mAP"], rare_text(rare))
        emit(dict(strategy=strategy, variant=variant, seed=seed, round=0, labeled=len(labeled),
                  mAP=result["bbox_mAP"], mAP_50=result["bbox_mAP_50"], train_s=round(result["train_s"], 1),
                  select_s=round(result["select_s"], 1), **rare))
        for r in range(1, int(stage.rounds) + 1):
            t = time.perf_counter()
            picked = sim.choose(strategy, result["checkpoint"], labeled, srng)
            select_s = time.perf_counter() - t
            labeled = labeled + picked
            pseudo = sim.pseudo_labels(result["checkpoint"], labeled)  # by the model that chose
            trained_on = len(labeled) + len({a["image_id"] for a in pseudo})
            iters = round_iterations(stage, trained_on, int(cfg.train.batch_size),
                                     bool(cfg.train.get("drop_small_last", True)))
            t = time.perf_counter()
            result = sim.train(labeled, out / f"seed{seed}" / strategy / f"round{r}",
                               result if stage.warm_start else None, iters, seed, pseudo)
            train_s = time.perf_counter() - t
            rare = sim.rare_figures(labeled, result)
            emit(dict(strategy=strategy, variant=variant, seed=seed, round=r, labeled=len(labeled),
                      mAP=result["bbox_mAP"], mAP_50=result["bbox_mAP_50"], train_s=round(train_s, 1),
                      select_s=round(select_s, 1), **rare))
            trained()
            log.info("seed %d %s: %d labeled%s -> mAP %.3f%s", seed, strategy, len(labeled),
                     f" + {trained_on - len(labeled)} pseudo-labeled" if pseudo else "", result["bbox_mAP"],
                     rare_text(rare))


def _seed_job(cfg: dict, out: str, threads: int, seed: int, emit: Callable[[tuple], None]) -> None:
    """stage.jobs' worker (a fresh process): one seed, with `threads` threads, each row sent to the parent."""
    torch.set_num_threads(threads)
    sim = Simulation(OmegaConf.create(cfg))
    sim.threads = threads
    # each process its own export of the start model (two writing one file would race)
    run_seed(sim, seed, Path(out), strategies_of(sim.stage), lambda row: emit(("row", row)),
             lambda: emit(("trained",)), onnx_dir=Path(out) / f"seed{seed}" / "start-onnx")


def _outcome(results: Results) -> dict[str, Any]:
    # The strategy with the largest mean gain over random; random itself (gain 0) when none beats it.
    best = max(results.summary, key=lambda x: (results.summary[x]["mean_gain"], x == "random"), default="random")
    return {"out_dir": str(results.out), "csv": str(results.csv), "best": best, "summary": results.summary}


def run_stage(cfg) -> dict[str, Any]:
    result = simulate(cfg) if cfg.stage.mode == "fast" else _outcome(simulate_full(cfg))
    for line in describe(result["summary"]):
        log.info(line)
    log.info("best strategy here: %s", result["best"])
    log.info("results: %s (CSV, curves.png, summary.json; also in MLflow experiment '%s')", result["out_dir"],
             cfg.stage.experiment)
    return result
