"""stage=simulate's full mode (`stage.mode=full`): the oracle annotator submits through a real Label Studio
and the production loop runs (backend, export, retrain, registry, hot reload, pre-annotation and queue): one
`stage=demo` run per strategy and seed, recorded as the fast mode records its rounds
(loop.stages.simulate_report). Slower than the fast mode by the services' start-ups, and limited to what the
queue can order by; it measures the loop a team would run, not a model of it."""

from __future__ import annotations

import copy
from contextlib import ExitStack
from datetime import datetime

from omegaconf import OmegaConf, open_dict

from loop.al.acquisition import QUEUE_STRATEGIES, queue_strategy_error
from loop.al.class_weights import RARITY_ALPHA
from loop.common.errors import LoopError
from loop.common.paths import CONF_DIR, resolve
from loop.stages.demo import demo
from loop.stages.simulate_report import Results
from loop.stages.simulate_settings import (
    job_count,
    pseudo_settings,
    rarity_alpha,
    strategies_of,
    strategy_variant,
    synthetic_if_missing,
)


def refuse_fast_only(stage) -> None:
    """Settings only the fast mode has, refused before any service starts."""
    wrong = [x for x in strategies_of(stage) if x != "random" and queue_strategy_error(x)]
    if wrong:
        raise LoopError(f"the Label Studio queue orders by a per-image score; {wrong} need the fast mode. "
                        f"Full mode strategies: random, {', '.join(QUEUE_STRATEGIES)}")
    if str(stage.get("first_batch") or "random") != "random":
        raise LoopError("stage.first_batch=strategy is the fast mode's: the full mode's demo labels its first "
                        "tasks at random, before its first model. Use stage.mode=fast, or stage.first_batch=random")
    if job_count(stage) > 1:
        raise LoopError(f"stage.jobs={stage.jobs} is the fast mode's: the full mode's runs each start Label Studio, "
                        "a backend and an MLflow UI of their own. Use stage.mode=fast, or stage.jobs=1")
    if rarity_alpha(stage) != RARITY_ALPHA:
        raise LoopError(f"stage.rarity_alpha={stage.rarity_alpha} is the fast mode's: the Label Studio queue weighs "
                        f"rarity with {RARITY_ALPHA}. Use stage.mode=fast, or stage.rarity_alpha=null")
    if pseudo_settings(stage)[0]:
        raise LoopError(f"stage.pseudo_ratio={stage.pseudo_ratio} is the fast mode's: the full mode's retrains learn "
                        "from submitted annotations only. Use stage.mode=fast, or stage.pseudo_ratio=0")


def simulate_full(cfg) -> Results:
    """For each strategy and seed, stage=demo's production loop through a real Label Studio (fresh server,
    project, registry and backend each time), the annotator following the queue. The demo trains with this
    stage's recipe (train=simulate, full_epochs per retrain) at its input size."""
    stage = cfg.stage
    refuse_fast_only(stage)
    synthetic_if_missing(cfg)  # stage=demo generates data=demo itself, not the imbalanced variant
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = resolve(cfg.work_dir) / "simulate" / f"{stamp}-full"
    out.mkdir(parents=True, exist_ok=True)
    results = Results(cfg, out, stamp)
    demo_stage = OmegaConf.load(CONF_DIR / "stage" / "demo.yaml").stage
    with results.parent():
        for seed in [int(x) for x in stage.seeds]:
            for strategy in strategies_of(stage):
                run_cfg = copy.deepcopy(cfg)
                with open_dict(run_cfg):
                    run_cfg.seed = seed
                    run_cfg.work_dir = str(out / f"seed{seed}-{strategy}")
                    run_cfg.registry.model_name = f"simulate-{strategy}-seed{seed}"  # its own champion line
                    run_cfg.train.epochs = int(stage.full_epochs)
                    run_cfg.preannotate.queue_prefilter = int(stage.prefilter)  # object_diverse's shortlist
                    run_cfg.stage = OmegaConf.merge(demo_stage, {
                        "strategy": strategy, "images": int(stage.full_images), "initial": int(stage.initial),
                        "per_iteration": int(stage.per_round), "iterations": int(stage.rounds) + 1,
                        "keep_running": False, "mlflow_ui": False})
                with ExitStack() as stack, results.child(strategy, seed) as run:
                    outcome = demo(run_cfg, stack)
                    for h in outcome["history"]:
                        results.record(dict(strategy=strategy, variant=strategy_variant(strategy, False),
                                            seed=seed, round=h["iteration"] - 1,
                                            labeled=h["labeled"], mAP=h["test_mAP"], mAP_50=h["test_mAP_50"],
                                            train_s="", select_s=""), run)
    return results
