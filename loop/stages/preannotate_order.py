"""stage=preannotate's batch order for a shortlist strategy (object_diverse, class_balanced_object_diverse,
object_representative): the shortlisted tasks, ordered by their objects' features once every task is predicted
(coverage, or representation), their scores rewritten to that order (loop.al.queue_order).

What counts as covered: the objects the model finds on a random sample of the labeled tasks (all of them in a
project with fewer than `preannotate.queue_labeled_sample`), as stage=simulate takes the objects it finds on
the labeled images. The served runtime's detections are what the tasks show; the object features come from a
second pass of the torch network over the shortlist and the sample only (ONNX graphs do not output them).
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import numpy as np

from backend.batch import object_features
from backend.labels import LabelMap
from loop.al.acquisition import OBJECT_ORDER
from loop.al.queue_order import Shortlist, coverage_scores, reservoir
from loop.clients import labelstudio
from loop.clients.media import MediaFetcher


def order_shortlist(strategy: str, shortlist: Shortlist, client, project: int, predictor, label_map: LabelMap,
                    fetcher: MediaFetcher, pool: Executor, threshold: float, labeled_sample: int,
                    rng: np.random.Generator) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """The shortlist's (task id, prediction) pairs, each prediction's score replaced by its place in
    `strategy`'s order (OBJECT_ORDER), and the number of labeled tasks whose objects counted as covered (the
    sample's readable images, those where the model finds nothing included). A model failure raises; the
    shortlist is left as it was (its first-stage scores), for the caller to store."""
    ranked = shortlist.ranked()
    tasks = [task for _, (task, _) in ranked]
    # the sample is drawn from the cheap listing (ids only), then only its tasks' data are read
    ids = reservoir((tid for tid, _ in labelstudio.task_versions(client, project)), labeled_sample, rng)
    labeled = list(labelstudio.iter_tasks(client, project, ids=sorted(ids), include="id,data")) if ids else []
    found = object_features(tasks + labeled, label_map, predictor, fetcher, pool, threshold)
    objects = [f if f is not None else np.zeros((0, 0)) for f in found[:len(tasks)]]
    readable = [f for f in found[len(tasks):] if f is not None]
    covered = [f for f in readable if len(f)]
    scores = coverage_scores([s for s, _ in ranked], objects, np.concatenate(covered) if covered else None,
                             OBJECT_ORDER[strategy])
    ordered = [(task["id"], {**prediction, "score": round(float(score), 6)})
               for (_, (task, prediction)), score in zip(ranked, scores)]
    return ordered, len(readable)
