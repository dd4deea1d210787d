"""stage=preannotate: push the champion's predictions to Label Studio for tasks whose latest prediction is
from another model version, in batches, through the SDK. Label Studio's own "Retrieve Predictions" sends all
selected tasks in one /predict with a 100 s limit; this works on any number of tasks.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from loop import labelstudio as lsx
from loop.acquisition import image_score
from loop.errors import LoopError
from loop.paths import resolve
from loop.registry import registry_from_cfg

log = logging.getLogger(__name__)


def labeled(task: dict[str, Any]) -> bool:
    """Has someone submitted (not skipped) an annotation for this task? (pure)"""
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [])


def stale(task: dict[str, Any], version: str, include_labeled: bool) -> bool:
    """Does this task need a prediction from `version`? (pure)"""
    if not include_labeled and labeled(task):
        return False
    predictions = task.get("predictions") or []
    if not predictions:
        return True
    latest = max(predictions, key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0))
    return latest.get("model_version") != version


def preannotate(cfg) -> dict[str, Any]:
    from backend.images import ImageError, decode
    from backend.labels import build_label_map
    from backend.media import MediaConfig, MediaError, MediaFetcher
    from backend.models import ServeSettings, model_loader
    from backend.reload import load_registered
    from backend.results import to_prediction

    if cfg.labelstudio.project_id is None:
        raise LoopError("no project: set labelstudio.project_id=N (the number in the project's URL)")
    project_id = int(cfg.labelstudio.project_id)
    registry = registry_from_cfg(cfg)
    champion = registry.champion()
    if champion is None:
        raise LoopError(f"registered model '{registry.model_name}' has no champion yet; run stage=retrain first")
    b, p = cfg.backend, cfg.preannotate
    cache = resolve(cfg.work_dir) / "serve-cache"
    # the backend's runtime and precision: bulk pre-annotation is where a faster network pays most
    load = model_loader(ServeSettings(checkpoint="", device=str(b.device), score_threshold=float(b.score_threshold),
                                      runtime=str(b.runtime), precision=str(b.precision),
                                      threads=int(b.threads) if b.get("threads") else None, cache_dir=str(cache)))
    predictor = load_registered(registry, champion, cache / registry.model_name, load)
    client = lsx.connect(cfg.labelstudio.url, cfg.labelstudio.api_key)
    project = lsx.get_project(client, project_id)
    lmap = build_label_map(project["label_config"], predictor.classes)
    tasks = [t for t in lsx.list_tasks(client, project_id) if stale(t, predictor.version, bool(p.include_labeled))]
    fetcher = MediaFetcher(MediaConfig(ls_url=cfg.labelstudio.url, api_key=cfg.labelstudio.api_key,
                                       image_dir=Path(resolve(b.image_dir)) if b.image_dir else None,
                                       allow_hosts=list(b.allow_hosts or [])))
    figures = {"version": predictor.version, "runtime": predictor.runtime, "precision": predictor.precision,
               "stale_tasks": len(tasks), "predicted": 0, "failed": 0}
    strategy = p.get("queue_strategy")
    queue: dict[int, float] = {}

    def load_image(task):
        try:
            return decode(fetcher.fetch((task.get("data") or {}).get(lmap.image_field), task["id"]))
        except (MediaError, ImageError) as exc:
            log.warning("task %s: %s; skipped", task["id"], exc)
            return None

    with ThreadPoolExecutor(max_workers=8) as pool, tqdm(total=len(tasks), desc="preannotate", unit="task") as bar:
        for start in range(0, len(tasks), int(p.batch_size)):
            batch = tasks[start:start + int(p.batch_size)]
            images = list(pool.map(load_image, batch))
            ready = [(t, im) for t, im in zip(batch, images) if im is not None]
            figures["failed"] += len(batch) - len(ready)
            if ready:
                for (task, im), det in zip(ready, predictor.predict([im.bgr for _, im in ready])):
                    pred = to_prediction(det.boxes, det.scores, det.labels, lmap, (im.bgr.shape[1], im.bgr.shape[0]),
                                         (im.width, im.height), float(b.score_threshold), predictor.version)
                    lsx.create_prediction(client, task["id"], pred)
                    figures["predicted"] += 1
                    if strategy:
                        queue[task["id"]] = image_score(strategy, det.scores[det.scores >= float(b.score_threshold)])
            bar.update(len(batch))
    if figures["predicted"]:
        lsx.prefill_from(client, project_id, predictor.version)
    if strategy:
        # Only tasks nobody labeled yet are queued; after a promotion all of them are re-predicted and re-scored.
        unlabeled = [t for t in tasks if not labeled(t)]
        lsx.set_queue_scores(client, unlabeled, queue)
        figures["queue_view"] = lsx.ensure_queue_view(client, project_id)
        figures["queued"] = sum(t["id"] in queue for t in unlabeled)
    log.info("pre-annotated %d of %d stale tasks with %s (%d failed)", figures["predicted"], figures["stale_tasks"],
             predictor.version, figures["failed"])
    return figures


def run_stage(cfg) -> dict[str, Any]:
    return preannotate(cfg)
