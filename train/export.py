"""stage=export: submitted Label Studio annotations -> a COCO dataset the trainer reads.

Layout of the export directory (stable across runs, so re-exports only add what changed):
    images/<task_id>-<urlhash>.<ext>   each image downloaded once
    train.json, val.json               COCO, image id = Label Studio task id; boxes, or instance masks
                                       (segmentation) from PolygonLabels / BrushLabels controls
    state.db                           category ids, split of every task ever seen, image cache index
                                       (SQLite: train.export_state)
    manifest.json                      task ids with their annotation's updated_at: the training snapshot
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from loop.clients import labelstudio
from loop.clients.media import MediaError, MediaFetcher
from loop.common.errors import LoopError
from loop.common.label_configs import LabelConfigError
from train.coco_writer import Pairs, write_json_if_changed
from train.export_coco import (
    build_coco,
    export_controls,
    image_size_hint,
    pick_annotation,
    stable_categories,
)
from train.export_state import ExportState

log = logging.getLogger(__name__)


def _image_name(task_id: int, url: str) -> str:
    ext = os.path.splitext(url.split("?", 1)[0])[1].lower()
    ext = ext if ext in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif") else ".jpg"
    return f"images/{task_id}-{hashlib.sha1(url.encode()).hexdigest()[:10]}{ext}"


def _image_size(data: bytes) -> tuple[int, int]:
    """Displayed size: EXIF orientations 5-8 swap width and height, as browsers (and Label Studio) show them."""
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        return (h, w) if img.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)


class _timed:
    """An iterator that adds up the time spent waiting for its items (the listing's share of the export)."""

    def __init__(self, items: Iterator):
        self.items, self.seconds = items, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        started = time.perf_counter()
        try:
            return next(self.items)
        finally:
            self.seconds += time.perf_counter() - started


def _refuse_or_warn(project_id: int, unreadable: list[tuple[int, str]], skip: bool) -> None:
    """Submitted tasks whose images cannot be read stop the export (naming them and the causes), or with
    `skip` are left out with a warning: never dropped quietly."""
    listed = ", ".join(str(tid) for tid, _ in unreadable[:20]) + (" ..." if len(unreadable) > 20 else "")
    causes = sorted({reason for _, reason in unreadable})
    message = (f"project {project_id}: the images of {len(unreadable)} submitted task(s) cannot be read "
               f"(tasks {listed}): {'; '.join(causes[:3])}")
    if not skip:
        raise LoopError(message + ". Fix the cause, or leave those tasks out with export.skip_unreadable=true")
    log.warning("%s; left out (export.skip_unreadable=true)", message)


def export_project(client, project_id: int, out_dir: Path, *, fetcher: MediaFetcher | None = None,
                   val_fraction: float = 0.2, control: str | None = None, progress: bool = True,
                   skip_unreadable: bool = False,
                   on_task: Callable[[dict[str, Any]], None] | None = None,
                   page_size: int = 1000) -> dict[str, Any]:
    """Export the project's submitted annotations to `out_dir`; returns counts and timings.

    Images come through `fetcher`, the same guarded fetcher the backend serves with (SSRF guard, size cap,
    token only to Label Studio, cloud presign). Without one nothing is downloaded: sizes come from the
    annotations, for fast checks of a big project. A submitted task whose image cannot be read is never
    dropped quietly: the export stops, naming the tasks and the cause, before it writes anything, unless
    `skip_unreadable` (then they are left out and listed in the log). `on_task` sees the submitted tasks as
    listed (annotations and predictions), one at a time, for figures drawn from the same listing (labeling
    effort). Tasks are streamed page by page; what is kept of each (its split, image entry and COCO entries)
    goes to SQLite as it is listed (train.export_state), and the files are written from there one task at a
    time (train.coco_writer): memory stays flat however large the project.
    `control` names the region control to export; by default the mask controls (PolygonLabels, BrushLabels)
    win when the project has any, else its first RectangleLabels control exports boxes
    (train.export_coco.export_controls)."""
    download = fetcher is not None
    started = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    project = labelstudio.get_project(client, project_id)
    try:
        chosen = export_controls(project.get("label_config") or "", control)
    except LabelConfigError as exc:
        raise LoopError(f"project {project_id}: {exc}") from None
    image_key = chosen[0]["image_value"].lstrip("$")

    labels = list(dict.fromkeys(label for c in chosen for label in c["labels"]))  # config order, once each
    names = [c["name"] for c in chosen]
    listing = _timed(labelstudio.iter_tasks(client, project_id, only_annotated=True, page_size=page_size))
    unreadable: list[tuple[int, str]] = []
    with ExportState(out_dir, project_id) as state:
        categories = stable_categories(labels, state.categories())
        for task in tqdm(listing, desc="export", unit="task", disable=not progress,
                         total=project.get("num_tasks_with_annotations")):
            if on_task is not None:
                on_task(task)
            annotation = pick_annotation(task.get("annotations") or [])
            if annotation is None:
                continue  # only skipped/cancelled annotations: not labeled
            url = (task.get("data") or {}).get(image_key)
            if not url:
                log.warning("task %s has no '%s' field; skipped", task["id"], image_key)
                continue
            entry = state.image(task["id"])
            if entry is None or entry["url"] != url or (download and not (out_dir / entry["file_name"]).exists()):
                entry = {"url": url, "file_name": _image_name(task["id"], url)}
                size = image_size_hint(annotation)
                if download:
                    try:
                        data = fetcher.fetch(url, task["id"])
                    except MediaError as exc:
                        unreadable.append((task["id"], str(exc)))
                        continue
                    (out_dir / entry["file_name"]).write_bytes(data)
                    size = size or _image_size(data)
                if size is None:
                    log.warning("task %s: image size unknown without download; skipped", task["id"])
                    continue
                entry["width"], entry["height"] = size
            try:
                coco = build_coco([{"task_id": task["id"], "file_name": entry["file_name"], "width": entry["width"],
                                    "height": entry["height"], "annotation": annotation}], categories, names,
                                  decode_brush=labelstudio.brush_to_mask)
            except LoopError as exc:  # a region that does not decode: name the task to fix
                raise LoopError(f"project {project_id}, task {task['id']}: {exc}") from None
            state.add(task["id"], state.split(task["id"], val_fraction), entry,
                      str(annotation.get("updated_at") or annotation.get("created_at") or ""), coco)

        if unreadable:
            _refuse_or_warn(project_id, unreadable, skip_unreadable)
        changed = False
        for split in ("train", "val"):
            changed |= write_json_if_changed(out_dir / f"{split}.json", {
                "annotations": state.annotations(split), "categories": categories, "images": state.images(split),
                "info": {"description": f"Label Studio project {project_id}, split {split}"}})
        counts = state.counts()
        changed |= write_json_if_changed(out_dir / "manifest.json", {
            "project_id": project_id, "tasks": Pairs(state.snapshot()), "max_updated_at": state.max_updated_at(),
            "counts": counts})
        state.commit(categories)
    result = {"project_id": project_id, "tasks": counts["train"] + counts["val"], "train": counts["train"],
              "val": counts["val"], "categories": len(categories), "changed": changed,
              "unreadable": [tid for tid, _ in unreadable], "fetch_s": round(listing.seconds, 3),
              "total_s": round(time.perf_counter() - started, 3), "out_dir": str(out_dir)}
    log.info("exported %d tasks (%d train, %d val) to %s%s", result["tasks"], result["train"], result["val"],
             out_dir, "" if changed else " (nothing changed)")
    return result
