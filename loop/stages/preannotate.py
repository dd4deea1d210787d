"""stage=preannotate: push the champion's predictions to Label Studio for tasks whose latest prediction is
from another model version, in batches, through the SDK. Label Studio's own "Retrieve Predictions" sends all
selected tasks in one /predict with a 100 s limit; this works on any number of tasks.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from backend.batch import predict_tasks
from backend.labels import build_label_map
from backend.loading import model_loader
from backend.predictor import Predictor
from backend.reload import load_registered
from loop.al.acquisition import OBJECT_STRATEGIES, SHORTLIST_SCORE, queue_score
from loop.al.queue_order import Shortlist
from loop.al.tasks import labeled as is_labeled
from loop.al.tasks import stale
from loop.clients import labelstudio
from loop.common.errors import LoopError
from loop.common.paths import resolve
from loop.common.streams import read_ahead
from loop.stages.adapters import (
    check_queue,
    labelstudio_session,
    media_fetcher,
    open_registry,
    project_id,
    serve_settings,
)
from loop.stages.preannotate_order import order_shortlist

log = logging.getLogger(__name__)


def preannotate(cfg: DictConfig) -> dict[str, Any]:
    check_queue(cfg)  # before anything loads or connects
    with labelstudio_session(cfg) as client:
        return _preannotate(cfg, client)


def _preannotate(cfg: DictConfig, client) -> dict[str, Any]:
    strategy = cfg.preannotate.get("queue_strategy")
    project = project_id(cfg)
    models = open_registry(cfg)
    champion = models.champion()
    if champion is None:
        raise LoopError(f"registered model '{models.model_name}' has no champion yet; run stage=retrain first")
    settings = cfg.preannotate
    cache = resolve(cfg.work_dir) / "serve-cache"
    # the backend's runtime and precision: bulk pre-annotation is where a faster network pays most
    serve = serve_settings(cfg, checkpoint="")
    predictor = load_registered(models, champion, cache / models.model_name, model_loader(serve))

    def torch_network():
        """The served version's torch network, for the object features ONNX graphs do not output."""
        if isinstance(predictor, Predictor):
            return predictor
        torch_only = model_loader(replace(serve, runtime="torch", precision="fp32"))
        return load_registered(models, champion, cache / models.model_name, torch_only)

    info = labelstudio.get_project(client, project)
    label_map = build_label_map(info["label_config"], predictor.classes)
    threshold = float(cfg.backend.score_threshold)
    report = {"version": predictor.version, "runtime": predictor.runtime, "precision": predictor.precision,
              "stale_tasks": 0, "predicted": 0, "failed": 0}
    # with a queue strategy, each prediction's score is the task's acquisition score: the queue tab sorts
    # by it, so nothing is written per task
    task_score = partial(queue_score, strategy) if strategy else None
    # a batch strategy's shortlist waits for the end of the stream to be ordered (loop.al.queue_order)
    shortlist = Shortlist(int(settings.queue_prefilter) * int(settings.queue_batch)) \
        if strategy in OBJECT_STRATEGIES else None
    # time the stage spends waiting on Label Studio (list_s, store_s) and on the model (predict_s), and ordering
    # the shortlist (order_s: its features and the labeled sample's)
    timings = {"list_s": 0.0, "predict_s": 0.0, "store_s": 0.0, "order_s": 0.0}
    include_labeled = bool(settings.include_labeled)
    # Label Studio I/O overlaps with inference: the next page of tasks is read ahead, and predictions are
    # stored in large requests (each has a fixed cost in Label Studio) while the model works on the next ones
    tasks = read_ahead(labelstudio.iter_tasks(client, project, only_unlabeled=not include_labeled))
    pending: list = []
    in_flight: Future | None = None

    def store(at_least: int, wait: bool = False) -> None:
        """Send the pending predictions once there are `at_least`, one import in flight at a time (its error
        surfaces here); `wait`: until every import is done."""
        nonlocal in_flight
        t = time.perf_counter()
        if pending and len(pending) >= at_least:
            if in_flight is not None:
                in_flight.result()
            in_flight = storer.submit(labelstudio.import_predictions, client, project, list(pending))
            pending.clear()
        if wait and in_flight is not None:
            in_flight.result()
            in_flight = None
        timings["store_s"] += time.perf_counter() - t

    # the progress bar's length: annotations imported with their tasks are in finished_task_number only
    labeled = max(info.get("num_tasks_with_annotations") or 0, info.get("finished_task_number") or 0)
    total = (info.get("task_number") or 0) - (0 if include_labeled else labeled)
    with media_fetcher(cfg) as fetcher, ThreadPoolExecutor(max_workers=8) as pool, \
            ThreadPoolExecutor(max_workers=1) as storer, \
            tqdm(total=max(total, 0), desc="preannotate", unit="task") as bar:
        try:
            while True:
                t = time.perf_counter()
                batch, seen = [], 0
                for task in tasks:  # stream: one page of tasks in memory, never the whole project
                    seen += 1
                    if stale(task, predictor.version, include_labeled):
                        batch.append(task)
                        if len(batch) == int(settings.batch_size):
                            break
                timings["list_s"] += time.perf_counter() - t
                if not batch:
                    bar.update(seen)
                    break
                report["stale_tasks"] += len(batch)
                t = time.perf_counter()
                outcomes = predict_tasks(batch, label_map, predictor, fetcher, pool, threshold, task_score,
                                         float(cfg.backend.polygon_tolerance))
                timings["predict_s"] += time.perf_counter() - t
                if any(o.model_failed for o in outcomes):  # what was predicted before is kept (below)
                    raise LoopError(f"{predictor.version} failed on a batch of images (its traceback is in the log "
                                    f"above); {report['predicted']} tasks were pre-annotated before it. Check the "
                                    "registered model, or roll back with stage=rollback")
                ready = [(task, o.prediction) for task, o in zip(batch, outcomes) if o.ok]
                pending.extend(_final(ready, shortlist))
                store(int(settings.store_batch))
                report["predicted"] += len(ready)
                report["failed"] += len(batch) - len(ready)
                bar.update(seen)
            if shortlist:
                t = time.perf_counter()
                pending.extend(_ordered(cfg, client, project, shortlist, torch_network, label_map, fetcher, pool,
                                        threshold, report))
                shortlist = None  # stored with the rest, below
                timings["order_s"] += time.perf_counter() - t
            store(1, wait=True)
        except BaseException:  # a failure (or Ctrl-C) loses no prediction made: the shortlist's go with their
            if shortlist:      # first-stage scores
                pending.extend((t["id"], p) for _, (t, p) in shortlist.ranked())
            try:
                store(1, wait=True)
            except Exception:
                log.exception("could not store the %d predictions made before the failure", len(pending))
            raise
    t = time.perf_counter()
    if report["predicted"]:
        labelstudio.prefill_from(client, project, predictor.version)  # also what the queue tab averages
    if strategy:
        report["queue_view"] = labelstudio.ensure_queue_view(client, project)
    timings["store_s"] += time.perf_counter() - t
    report.update({k: round(v, 3) for k, v in timings.items()})
    log.info("pre-annotated %d of %d stale tasks with %s (%d failed)", report["predicted"], report["stale_tasks"],
             predictor.version, report["failed"])
    return report


def _final(ready: list, shortlist: Shortlist | None) -> list:
    """(task id, prediction) of the predictions that can be stored now: all of them without a shortlist; with
    one, those it drops and the labeled tasks' (include_labeled: the queue lists unlabeled tasks only)."""
    out = []
    for task, p in ready:
        waits = shortlist is not None and not is_labeled(task)
        out += [x for _, x in shortlist.offer(p["score"], (task, p))] if waits else [(task, p)]
    return [(task["id"], p) for task, p in out]


def _ordered(cfg, client, project, shortlist, torch_network, label_map, fetcher, pool, threshold, report) -> list:
    """The shortlist's predictions in the strategy's object order (preannotate_order). If that fails,
    LoopError: the caller stores the shortlist with its first-stage scores first."""
    settings = cfg.preannotate
    started = time.perf_counter()
    try:
        ordered, covered = order_shortlist(settings.queue_strategy, shortlist, client, project, torch_network(),
                                           label_map, fetcher, pool, threshold, int(settings.queue_labeled_sample),
                                           np.random.default_rng(int(cfg.seed)))
    except Exception as exc:
        log.exception("ordering the queue's shortlist failed")
        raise LoopError(f"ordering the queue's first {len(shortlist)} tasks by their objects failed "
                        f"({type(exc).__name__}: {str(exc)[:200]}; traceback in the log above); every prediction of "
                        f"{report['version']} is stored, the shortlist's with their "
                        f"{SHORTLIST_SCORE[settings.queue_strategy]} scores, which order the queue "
                        f"({settings.queue_strategy}'s first stage) until the next version is pre-annotated. Check "
                        "the registered model and Label Studio's connection") from exc
    report.update(shortlist=len(ordered), covered_tasks=covered)
    log.info("ordered the queue's first %d tasks by their objects, %s (objects of %d labeled tasks covered) in %.1f s",
             len(ordered), settings.queue_strategy, covered, time.perf_counter() - started)
    return ordered


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    return preannotate(cfg)
