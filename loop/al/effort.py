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
by the same factor, so the ratio is the one in pixels. Polygons (PolygonLabels) and brush masks (BrushLabels)
are compared by the IoU of their pixels (pycocotools, as COCO evaluation does): rasterised on the brush
mask's pixel grid when the task has one, else on a 1000 x 1000 grid over the percent coordinates, with
rectangles beside them rasterised the same way. Brush masks come in Label Studio's RLE, which the caller
decodes (`decode_brush`, loop.clients.labelstudio.brush_to_mask: this module stays pure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from loop.al.stability import pairwise_iou
from loop.al.tasks import newest

ACCEPT_IOU = 0.95
MATCH_IOU = 0.5
CATEGORIES = ("accepted", "adjusted", "relabeled", "deleted", "added")
NO_PREDICTION = "(no prediction shown)"

PERCENT_GRID = 1000  # pixels per side where polygons are rasterised without a brush mask's grid


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]  # in percent of the image


@dataclass(frozen=True, eq=False)
class Mask:
    pixels: np.ndarray  # H x W bool, the image's own pixels


# (label, geometry): a rectangle (x, y, width, height) in percent, a Polygon or a Mask
Box = tuple[str, Any]


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
    """IoU of every region of `a` with every region of `b`: rectangles (x, y, width, height; any common unit)
    exactly, and as pixels as soon as either side holds a polygon or a mask."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    if any(not isinstance(r[1], tuple) for r in (*a, *b)):
        return _mask_iou(a, b)
    xa, xb = np.array([r[1] for r in a], float), np.array([r[1] for r in b], float)
    xa[:, 2:] += xa[:, :2]  # x0 y0 x1 y1
    xb[:, 2:] += xb[:, :2]
    return pairwise_iou(xa, xb)


def _mask_iou(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    masks = [r[1].pixels for r in (*a, *b) if isinstance(r[1], Mask)]
    h, w = masks[0].shape if masks else (PERCENT_GRID, PERCENT_GRID)
    if any(m.shape != (h, w) for m in masks):
        raise ValueError(f"brush masks of one task differ in size ({sorted({m.shape for m in masks})}): they "
                         "cannot be compared")

    def rle(geometry):
        if isinstance(geometry, Mask):
            return mask_utils.encode(np.asfortranarray(geometry.pixels.astype(np.uint8)))
        if isinstance(geometry, Polygon):
            flat = [v for x, y in geometry.points for v in (x * w / 100.0, y * h / 100.0)]
            return mask_utils.merge(mask_utils.frPyObjects([flat], h, w))
        x, y, bw, bh = geometry
        box = np.array([[x * w / 100.0, y * h / 100.0, bw * w / 100.0, bh * h / 100.0]], dtype=np.float64)
        return mask_utils.frPyObjects(box, h, w)[0]

    ious = mask_utils.iou([rle(r[1]) for r in a], [rle(r[1]) for r in b], [0] * len(b))
    return np.asarray(ious, dtype=float).reshape(len(a), len(b))


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


def boxes(result: Iterable[dict[str, Any]],
          decode_brush: Callable[[list[int], int, int], np.ndarray] | None = None) -> list[Box]:
    """The regions of a Label Studio result (annotation or prediction) as (label, geometry): rectangles as
    (x, y, w, h) in percent, polygons as Polygon, brush masks as Mask (decoded by `decode_brush(rle, width,
    height)`; without it a brush region raises ValueError rather than go uncounted)."""
    out: list[Box] = []
    for region in result or []:
        value, kind = region.get("value") or {}, region.get("type")
        if kind in (None, "rectanglelabels"):
            labels = value.get("rectanglelabels") or value.get("labels")
            if labels and "width" in value:
                out.append((str(labels[0]), (float(value["x"]), float(value["y"]), float(value["width"]),
                                             float(value["height"]))))
        elif kind == "polygonlabels":
            labels, points = value.get("polygonlabels"), value.get("points") or []
            if labels and len(points) >= 3:
                out.append((str(labels[0]), Polygon(tuple((float(x), float(y)) for x, y in points))))
        elif kind == "brushlabels":
            labels, rle = value.get("brushlabels"), value.get("rle")
            if labels and rle:
                if decode_brush is None:
                    raise ValueError("brush regions need decode_brush (loop.clients.labelstudio.brush_to_mask)")
                out.append((str(labels[0]), Mask(decode_brush(rle, int(region["original_width"]),
                                                              int(region["original_height"])))))
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
    """Effort per model version, in the order versions first appear, plus the no-prediction baseline.
    `decode_brush`: Label Studio's brush RLE to a mask (loop.clients.labelstudio.brush_to_mask), for projects
    with BrushLabels."""
    by_version: dict[str, Effort] = field(default_factory=dict)
    decode_brush: Callable[[list[int], int, int], np.ndarray] | None = None

    def rows(self) -> list[tuple[str, Effort]]:
        return list(self.by_version.items())

    def add_task(self, task: dict[str, Any]) -> None:
        """Count one task's submitted (not skipped) annotations; tasks can be streamed through this."""
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            prediction = shown_prediction(task, annotation)
            final = boxes(annotation.get("result"), self.decode_brush)
            if prediction is None:
                version, counts = NO_PREDICTION, Effort(tasks=1, added=len(final))
            else:
                version = str(prediction.get("model_version") or "(unnamed)")
                counts = match(boxes(prediction.get("result"), self.decode_brush), final)[0]
            lead = annotation.get("lead_time")
            if lead is not None:
                counts.seconds, counts.timed_tasks = float(lead), 1
            self.by_version.setdefault(version, Effort()).add(counts)

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per version (CSV, JSON, the stage's result)."""
        return [{"model_version": v, **{c: getattr(e, c) for c in CATEGORIES}, "tasks": e.tasks,
                 "accepted_share": e.accepted_share, "seconds_per_task": e.seconds_per_task}
                for v, e in self.rows()]


def effort_by_version(tasks: Iterable[dict[str, Any]],
                      decode_brush: Callable[[list[int], int, int], np.ndarray] | None = None) -> EffortTable:
    """Effort per model version over every submitted (not skipped) annotation of these tasks."""
    table = EffortTable(decode_brush=decode_brush)
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
