"""Tasks -> predictions: fetch -> decode -> predict -> regions, the one pipeline behind /predict, bulk
pre-annotation and the simulated loop.

Images are fetched and decoded in a thread pool that runs ahead while the model works through what has
arrived. A task whose image cannot be fetched or decoded, or whose batch the model fails on, gets an empty
prediction and a logged reason; the other tasks carry on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from backend.images import ImageError, decode
from backend.labels import LabelMap
from backend.masks import POLYGON_TOLERANCE
from backend.results import empty_prediction, to_prediction
from loop.clients.media import MediaError, MediaFetcher

log = logging.getLogger("backend")


@dataclass
class TaskOutcome:
    prediction: dict                  # what Label Studio stores: regions, task score, model version
    scores: np.ndarray | None = None  # every detection's score (None: the task failed)
    error: str | None = None          # why the task failed
    model_failed: bool = False        # the model, not the task's image, failed (the server answers empties;
                                      # bulk pre-annotation stops: every later batch would fail the same way)

    @property
    def ok(self) -> bool:
        return self.error is None


def predict_tasks(tasks: list[dict], label_map: LabelMap, predictor, fetcher: MediaFetcher, pool: Executor,
                  score_threshold: float, task_score: Callable[..., float] | None = None,
                  polygon_tolerance: float = POLYGON_TOLERANCE) -> list[TaskOutcome]:
    """One outcome per task, in order (see the module docstring). `task_score(scores, labels, class_counts)`,
    given the scores and class indices of the detections at or above the threshold and the model's
    training-set boxes per class (None when its checkpoint records none), replaces the prediction's score
    (the mean region score): with an acquisition score there (loop.al.acquisition.queue_score), Label
    Studio's queue tab orders tasks by it without a write per task. `polygon_tolerance`: how far polygons
    around masks are simplified (backend.masks)."""

    futures = [pool.submit(_load, t, label_map, fetcher) for t in tasks]
    outcomes = [TaskOutcome(empty_prediction(predictor.version)) for _ in tasks]
    step = predictor.batch_size
    for start in range(0, len(tasks), step):
        ready = []
        for i in range(start, min(start + step, len(tasks))):
            image, error = futures[i].result()
            if image is None:
                outcomes[i].error = error
            else:
                ready.append((i, image))
        if not ready:
            continue
        try:
            detections = predictor.predict([image.bgr for _, image in ready], classes=label_map.classes)
        except Exception:  # a model failure must not kill the server; report and return empties
            log.exception("model failed on a batch of %d images", len(ready))
            for i, _ in ready:
                outcomes[i].error, outcomes[i].model_failed = "the model failed on this batch", True
            continue
        for (i, image), det in zip(ready, detections):
            scores = np.asarray(det.scores)
            prediction = to_prediction(det.boxes, det.scores, det.labels, label_map,
                                       (image.bgr.shape[1], image.bgr.shape[0]), (image.width, image.height),
                                       score_threshold, predictor.version, det.masks, polygon_tolerance)
            if task_score is not None:
                keep = scores >= score_threshold
                score = task_score(scores[keep], np.asarray(det.labels)[keep], getattr(predictor, "class_counts", None))
                prediction["score"] = round(float(score), 6)
            outcomes[i] = TaskOutcome(prediction, scores=scores)
    return outcomes


def object_features(tasks: list[dict], label_map: LabelMap, predictor, fetcher: MediaFetcher, pool: Executor,
                    score_threshold: float, ahead: int = 16) -> list[np.ndarray | None]:
    """Per task, the features of the objects the model finds at or above the threshold (one row per box, the
    neck's features at its centre: backend.predictor.object_features), or None where the image cannot be
    fetched or decoded (logged). Object-level diversity compares these (loop.al.queue_order). A model failure
    raises: the caller decides what is kept. Images are fetched at most `ahead` (and one batch) beyond the one
    the model works on, so memory does not grow with the number of tasks."""
    out: list[np.ndarray | None] = [None] * len(tasks)
    futures: dict[int, Future] = {}
    step, submitted = predictor.batch_size, 0
    for start in range(0, len(tasks), step):
        while submitted < min(start + step + ahead, len(tasks)):
            futures[submitted] = pool.submit(_load, tasks[submitted], label_map, fetcher, "none of its objects counts")
            submitted += 1
        ready = [(i, futures.pop(i).result()[0]) for i in range(start, min(start + step, len(tasks)))]
        ready = [(i, image) for i, image in ready if image is not None]
        if not ready:
            continue
        found = predictor.predict([image.bgr for _, image in ready], embed="objects", classes=label_map.classes)
        for (i, _), det in zip(ready, found):
            out[i] = np.asarray(det.features)[np.asarray(det.scores) >= score_threshold]
    return out


def _load(task: dict, label_map: LabelMap, fetcher: MediaFetcher, outcome: str = "it gets an empty prediction"):
    """(decoded image, None) or (None, why it cannot be read), logged with what happens to the task."""
    url = (task.get("data") or {}).get(label_map.image_field)
    try:
        return decode(fetcher.fetch(url, task.get("id"))), None
    except (MediaError, ImageError) as exc:
        log.warning("task %s: %s; %s", task.get("id"), exc, outcome)
        return None, str(exc)
