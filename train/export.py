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
import json
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
from loop.common.streams import read_ahead
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
# bump when what an export makes of a task changes: the next export then lists every task in full again
EXPORT_FORMAT = 1


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


def _export_task(task: dict[str, Any], state: ExportState, out_dir: Path, fetcher: MediaFetcher | None,
                 categories: list[dict[str, Any]], names: list[str], image_key: str, val_fraction: float,
                 project_id: int, unreadable: list[tuple[int, str]], version: str) -> None:
    """One task listed in full: its image (downloaded once), its COCO entries and its split into the state,
    kept under Label Studio's `version` (updated_at) of it for the next export."""
    annotation = pick_annotation(task.get("annotations") or [])
    if annotation is None:
        return  # only skipped/cancelled annotations: not labeled
    url = (task.get("data") or {}).get(image_key)
    if not url:
        log.warning("task %s has no '%s' field; skipped", task["id"], image_key)
        return
    entry = state.image(task["id"])
    if entry is None or entry["url"] != url or (fetcher is not None and not (out_dir / entry["file_name"]).exists()):
        entry = {"url": url, "file_name": _image_name(task["id"], url)}
        size = image_size_hint(annotation)
        if fetcher is not None:
            try:
                data = fetcher.fetch(url, task["id"])
            except MediaError as exc:
                unreadable.append((task["id"], str(exc)))
                return
            (out_dir / entry["file_name"]).write_bytes(data)
            size = size or _image_size(data)
        if size is None:
            log.warning("task %s: image size unknown without download; skipped", task["id"])
            return
        entry["width"], entry["height"] = size
    try:
        coco = build_coco([{"task_id": task["id"], "file_name": entry["file_name"], "width": entry["width"],
                            "height": entry["height"], "annotation": annotation}], categories, names,
                          decode_brush=labelstudio.brush_to_mask)
    except LoopError as exc:  # a region that does not decode: name the task to fix
        raise LoopError(f"project {project_id}, task {task['id']}: {exc}") from None
    state.add(task["id"], state.split(task["id"], val_fraction), entry,
              str(annotation.get("updated_at") or annotation.get("created_at") or ""), coco)
    state.keep(task["id"], version, {k: v for k, v in task.items() if v is not None})


def export_project(client, project_id: int, out_dir: Path, *, fetcher: MediaFetcher | None = None,
                   val_fraction: float = 0.2, control: str | None = None, progress: bool = True,
                   skip_unreadable: bool = False,
                   on_task: Callable[[dict[str, Any]], None] | None = None,
                   page_size: int = 1000, incremental: bool = True) -> dict[str, Any]:
    """Export the project's submitted annotations to `out_dir`; returns counts and timings.

    Images come through `fetcher`, the same guarded fetcher the backend serves with (SSRF guard, size cap,
    token only to Label Studio, cloud presign). Without one nothing is downloaded: sizes come from the
    annotations, for fast checks of a big project. A submitted task whose image cannot be read is never
    dropped quietly: the export stops, naming the tasks and the cause, before it writes anything, unless
    `skip_unreadable` (then they are left out and listed in the log). `on_task` sees every submitted task
    (annotations and predictions), one at a time, for figures drawn from the same listing (labeling effort).
    `incremental`: a cheap listing of task ids and dates first; tasks Label Studio reports unchanged since
    the last export into `out_dir` are taken from its state, and only new or changed ones are listed in full
    (train.export_state: reuse). False lists every task in full again.
    Tasks are streamed page by page, the next page read while this one is worked on; what is kept of each
    (its split, image entry and COCO entries) goes to SQLite as it is listed, and the files are written from
    there one task at a time (train.coco_writer): memory stays flat however large the project.
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
    unreadable: list[tuple[int, str]] = []
    with ExportState(out_dir, project_id) as state:
        categories = stable_categories(labels, state.categories())
        settings = json.dumps({"format": EXPORT_FORMAT, "controls": names, "categories": categories,
                               "image": image_key, "download": download}, sort_keys=True)
        versions = _timed(labelstudio.task_versions(client, project_id)) if incremental else None
        total, reused, ids = project.get("num_tasks_with_annotations"), 0, None
        if versions is not None:
            known = state.reuse(versions, settings, out_dir if download else None)
            todo = state.todo_count()
            reused = known - todo
            if on_task is not None:
                for task in state.reused():
                    on_task(task)
            # a few changed tasks by id; many (a first export, new settings) page through the filtered listing,
            # passing over the tasks taken over above
            if todo <= known // 4:
                total, ids = todo, list(state.todo())
            else:
                total = known  # what the listing below goes through
        listing = _timed(read_ahead(labelstudio.iter_tasks(
            client, project_id, only_annotated=True, page_size=page_size, include=labelstudio.EXPORT_FIELDS, ids=ids),
            depth=page_size))
        listed = 0
        for task in tqdm(listing, desc="export", unit="task", disable=not progress, total=total):
            if reused and state.is_listed(task["id"]):
                continue  # unchanged: taken over above
            listed += 1
            if on_task is not None:
                on_task(task)
            _export_task(task, state, out_dir, fetcher, categories, names, image_key, val_fraction, project_id,
                         unreadable, state.version(task["id"]) if versions is not None else "")

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
        state.commit(categories, settings)
    result = {"project_id": project_id, "tasks": counts["train"] + counts["val"], "train": counts["train"],
              "val": counts["val"], "categories": len(categories), "changed": changed,
              "unreadable": [tid for tid, _ in unreadable], "listed_in_full": listed, "reused": reused,
              "fetch_s": round(listing.seconds + (versions.seconds if versions is not None else 0.0), 3),
              "total_s": round(time.perf_counter() - started, 3), "out_dir": str(out_dir)}
    log.info("exported %d tasks (%d train, %d val; %d read again, %d unchanged) to %s%s", result["tasks"],
             result["train"], result["val"], listed, reused, out_dir, "" if changed else " (nothing changed)")
    return result
