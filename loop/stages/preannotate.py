"""stage=preannotate: push the champion's predictions to Label Studio for tasks whose latest prediction is
from another model version, in batches, through the SDK. Label Studio's own "Retrieve Predictions" sends all
selected tasks in one /predict with a 100 s limit; this works on any number of tasks.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from omegaconf import DictConfig
from tqdm import tqdm

from backend.batch import predict_tasks
from backend.labels import build_label_map
from backend.loading import model_loader
from backend.reload import load_registered
from loop.al.acquisition import image_score, queue_strategy_error
from loop.al.tasks import labeled, stale
from loop.clients import labelstudio
from loop.common.errors import LoopError
from loop.common.paths import resolve
from loop.stages.adapters import (
    connect_labelstudio,
    media_fetcher,
    open_registry,
    project_id,
    serve_settings,
)

log = logging.getLogger(__name__)


def check_queue_strategy(strategy: str | None) -> None:
    """Refuse a queue strategy before anything is predicted or written."""
    why = queue_strategy_error(strategy)
    if why:
        raise LoopError(why)


def preannotate(cfg: DictConfig) -> dict[str, Any]:
    strategy = cfg.preannotate.get("queue_strategy")
    check_queue_strategy(strategy)
    project = project_id(cfg)
    models = open_registry(cfg)
    champion = models.champion()
    if champion is None:
        raise LoopError(f"registered model '{models.model_name}' has no champion yet; run stage=retrain first")
    settings = cfg.preannotate
    cache = resolve(cfg.work_dir) / "serve-cache"
    # the backend's runtime and precision: bulk pre-annotation is where a faster network pays most
    load = model_loader(serve_settings(cfg, checkpoint=""))
    predictor = load_registered(models, champion, cache / models.model_name, load)
    client = connect_labelstudio(cfg)
    label_map = build_label_map(labelstudio.get_project(client, project)["label_config"], predictor.classes)
    tasks = [t for t in labelstudio.list_tasks(client, project)
             if stale(t, predictor.version, bool(settings.include_labeled))]
    threshold = float(cfg.backend.score_threshold)
    report = {"version": predictor.version, "runtime": predictor.runtime, "precision": predictor.precision,
              "stale_tasks": len(tasks), "predicted": 0, "failed": 0}
    queue: dict[int, float] = {}
    step = int(settings.batch_size)
    with media_fetcher(cfg) as fetcher, ThreadPoolExecutor(max_workers=8) as pool, \
            tqdm(total=len(tasks), desc="preannotate", unit="task") as bar:
        for start in range(0, len(tasks), step):
            batch = tasks[start:start + step]
            outcomes = predict_tasks(batch, label_map, predictor, fetcher, pool, threshold)
            if any(o.model_failed for o in outcomes):
                raise LoopError(f"{predictor.version} failed on a batch of images (its traceback is in the log above); "
                                f"{report['predicted']} tasks were pre-annotated before it. Check the registered "
                                "model, or roll back with stage=rollback")
            for task, outcome in zip(batch, outcomes):
                if not outcome.ok:
                    report["failed"] += 1
                    continue
                labelstudio.create_prediction(client, task["id"], outcome.prediction)
                report["predicted"] += 1
                if strategy:
                    queue[task["id"]] = image_score(strategy, outcome.scores[outcome.scores >= threshold])
            bar.update(len(batch))
    if report["predicted"]:
        labelstudio.prefill_from(client, project, predictor.version)
    if strategy:
        # Only tasks nobody labeled yet are queued; after a promotion all of them are re-predicted and re-scored.
        unlabeled = [t for t in tasks if not labeled(t)]
        labelstudio.set_queue_scores(client, unlabeled, queue)
        report["queue_view"] = labelstudio.ensure_queue_view(client, project)
        report["queued"] = sum(t["id"] in queue for t in unlabeled)
    log.info("pre-annotated %d of %d stale tasks with %s (%d failed)", report["predicted"], report["stale_tasks"],
             predictor.version, report["failed"])
    return report


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    return preannotate(cfg)
