"""The labeling effort a model version saves, from what people did with its predictions (pure).

For an annotation submitted on a task that showed a prediction of version V, the final regions are matched
against the predicted ones, first with the same label, then across labels, one to one (Hungarian on IoU):
- accepted: same label, IoU >= 0.95 (the person kept the box as it was, or nudged it by a pixel);
- adjusted: same label, 0.5 <= IoU < 0.95 (moved or resized);
- relabeled: IoU >= 0.5 with another label;
- deleted: a predicted box nothing final matches;
- added: a final box no prediction matches (drawn by hand).
Label Studio's `lead_time` (seconds the annotation was open) is summed per version and for the annotations
made without any prediction shown, the baseline the loop must beat.

IoU is computed on Label Studio's percent coordinates: scaling x and y by the image size scales every area
by the same factor, so the ratio is the one in pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from loop.al.stability import pairwise_iou
from loop.al.tasks import newest

ACCEPT_IOU = 0.95
MATCH_IOU = 0.5
CATEGORIES = ("accepted", "adjusted", "relabeled", "deleted", "added")
NO_PREDICTION = "(no prediction shown)"

Box = tuple[str, tuple[float, float, float, float]]  # (label, (x, y, width, height))


@dataclass
class Effort:
    """What people did with one version's predictions (or, for NO_PREDICTION, how long they took alone)."""
    accepted: int = 0
    adjusted: int = 0
    relabeled: int = 0
    deleted: int = 0
    added: int = 0
    tasks: int = 0
    seconds: float = 0.0
    timed_tasks: int = 0  # annotations that carried a lead_time

    def add(self, other: "Effort") -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    @property
    def predicted(self) -> int:
        return self.accepted + self.adjusted + self.relabeled + self.deleted

    @property
    def accepted_share(self) -> float | None:
        """Share of the predicted boxes people kept unchanged."""
        return self.accepted / self.predicted if self.predicted else None

    @property
    def seconds_per_task(self) -> float | None:
        return self.seconds / self.timed_tasks if self.timed_tasks else None

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow (only the defined ones)."""
        out = {f"effort_{k}": float(v) for k, v in asdict(self).items() if k not in ("seconds", "timed_tasks")}
        for key, value in (("effort_accepted_share", self.accepted_share),
                           ("effort_seconds_per_task", self.seconds_per_task)):
            if value is not None:
                out[key] = float(value)
        return out


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of `a` with every box of `b` (x, y, width, height; any common unit)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    xa, xb = np.array([r[1] for r in a], float), np.array([r[1] for r in b], float)
    xa[:, 2:] += xa[:, :2]  # x0 y0 x1 y1
    xb[:, 2:] += xb[:, :2]
    return pairwise_iou(xa, xb)


def _assign(iou: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs maximising the summed IoU among `allowed` pairs with IoU >= MATCH_IOU."""
    weight = np.where(allowed & (iou >= MATCH_IOU), iou, 0.0)
    if not weight.size or not weight.any():
        return []
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if weight[r, c] > 0]


def match(predicted: Sequence[Box], final: Sequence[Box]) -> tuple[Effort, list[tuple[int, int, str]]]:
    """Counts for one annotation against the prediction it started from, and the pairs (predicted index,
    final index, category) behind them."""
    iou = iou_matrix(predicted, final)
    same = np.array([[p[0] == f[0] for f in final] for p in predicted], bool).reshape(iou.shape)
    pairs = [(p, f, "accepted" if iou[p, f] >= ACCEPT_IOU else "adjusted") for p, f in _assign(iou, same)]
    free_p = np.ones(len(predicted), bool)
    free_f = np.ones(len(final), bool)
    for p, f, _ in pairs:
        free_p[p] = free_f[f] = False
    pairs += [(p, f, "relabeled") for p, f in _assign(iou, ~same & free_p[:, None] & free_f[None, :])]
    counts = Effort(tasks=1)
    for _, _, category in pairs:
        setattr(counts, category, getattr(counts, category) + 1)
    counts.deleted = len(predicted) - len(pairs)
    counts.added = len(final) - len(pairs)
    return counts, pairs


def boxes(result: Iterable[dict[str, Any]]) -> list[Box]:
    """The rectangles of a Label Studio result (annotation or prediction) as (label, (x, y, w, h))."""
    out = []
    for region in result or []:
        value = region.get("value") or {}
        labels = value.get("rectanglelabels") or value.get("labels")
        if region.get("type") not in (None, "rectanglelabels") or not labels or "width" not in value:
            continue
        out.append((str(labels[0]), (float(value["x"]), float(value["y"]), float(value["width"]),
                                     float(value["height"]))))
    return out


def shown_prediction(task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any] | None:
    """The prediction the annotator saw: the one Label Studio records as the annotation's parent, else the
    newest prediction created before the annotation (what the labeling screen shows), else None."""
    predictions = task.get("predictions") or []
    parent = annotation.get("parent_prediction")
    if parent is not None:
        for prediction in predictions:
            if prediction.get("id") == parent:
                return prediction
    made = str(annotation.get("created_at") or "")
    return newest([p for p in predictions if not made or str(p.get("created_at") or "") <= made])


@dataclass
class EffortTable:
    """Effort per model version, in the order versions first appear, plus the no-prediction baseline."""
    by_version: dict[str, Effort] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, Effort]]:
        return list(self.by_version.items())

    def add_task(self, task: dict[str, Any]) -> None:
        """Count one task's submitted (not skipped) annotations; tasks can be streamed through this."""
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            prediction = shown_prediction(task, annotation)
            final = boxes(annotation.get("result"))
            if prediction is None:
                version, counts = NO_PREDICTION, Effort(tasks=1, added=len(final))
            else:
                version = str(prediction.get("model_version") or "(unnamed)")
                counts = match(boxes(prediction.get("result")), final)[0]
            lead = annotation.get("lead_time")
            if lead is not None:
                counts.seconds, counts.timed_tasks = float(lead), 1
            self.by_version.setdefault(version, Effort()).add(counts)

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per version (CSV, JSON, the stage's result)."""
        return [{"model_version": v, **{c: getattr(e, c) for c in CATEGORIES}, "tasks": e.tasks,
                 "accepted_share": e.accepted_share, "seconds_per_task": e.seconds_per_task}
                for v, e in self.rows()]


def effort_by_version(tasks: Iterable[dict[str, Any]]) -> EffortTable:
    """Effort per model version over every submitted (not skipped) annotation of these tasks."""
    table = EffortTable()
    for task in tasks:
        table.add_task(task)
    return table


def format_table(table: EffortTable) -> str:
    """The table a person reads: one line per version."""
    head = f"{'model version':<32} {'tasks':>5} " + " ".join(f"{c:>9}" for c in CATEGORIES) + \
        f" {'kept %':>6} {'s/task':>6}"
    lines = [head]
    for version, e in table.rows():
        share = "" if e.accepted_share is None else f"{100 * e.accepted_share:.0f}"
        seconds = "" if e.seconds_per_task is None else f"{e.seconds_per_task:.1f}"
        lines.append(f"{version[:32]:<32} {e.tasks:>5} " + " ".join(f"{getattr(e, c):>9}" for c in CATEGORIES)
                     + f" {share:>6} {seconds:>6}")
    return "\n".join(lines)
