"""What an export directory remembers between exports, and what the current export has listed, in SQLite
(`state.db`): category ids, the split of every task ever seen, the image cache index, this export's tasks
with their COCO entries, and what the last export made of each task (so the next one reads again only the
tasks that changed).

Why SQLite: an export must keep every task's split frozen and know which images it already has, for every
task the project ever had, and it writes COCO files whose images come sorted by task id. Held in Python,
that index alone grew by about 0.7 KB per annotated task (55 MB at 50,000), and the COCO entries by much
more. In SQLite the export's memory stays flat: a task is looked up when it is listed, and the files are
written from ordered queries, one task at a time. Nothing is committed until the export has written its
files: an export that stops (an unreadable image, Label Studio gone) leaves the previous state as it was.

What the last export made of each task (`kept`) is reused while Label Studio reports the task unchanged
(its updated_at, from a cheap listing) and the export settings are the same (`settings`: controls, labels,
image field, downloads); the raw task is kept too, so figures drawn from the listing (labeling effort) see
every task either way. Re-exporting a big project then costs a listing of ids and dates plus the tasks that
changed, not every task's annotations and predictions again.

Export directories from earlier versions kept this in `state.json`; it is read once into `state.db`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from loop.common.errors import LoopError
from train.export_coco import assign_splits

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (task_id INTEGER PRIMARY KEY, split TEXT NOT NULL, url TEXT, file_name TEXT,
                                  width INTEGER, height INTEGER);
CREATE TABLE IF NOT EXISTS listed (task_id INTEGER PRIMARY KEY, split TEXT NOT NULL, updated_at TEXT NOT NULL,
                                   entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kept (task_id INTEGER PRIMARY KEY, version TEXT NOT NULL, split TEXT NOT NULL,
                                 updated_at TEXT NOT NULL, entry TEXT NOT NULL, task TEXT NOT NULL);
"""


class ExportState:
    """One export's view of state.db; use it as a context manager. `commit()` makes this export's changes
    the state; leaving without it rolls them back."""

    def __init__(self, out_dir: Path, project_id: int):
        self.path = Path(out_dir) / "state.db"
        self.db = sqlite3.connect(self.path)
        self.db.executescript(SCHEMA)
        legacy = Path(out_dir) / "state.json"
        if legacy.exists() and self._meta("project_id") is None:
            self._import_legacy(json.loads(legacy.read_text()))
        owner = self._meta("project_id")
        if owner is not None and int(owner) != int(project_id):
            self.db.close()
            raise LoopError(f"{out_dir} holds an export of project {owner}, not {project_id}; use another export "
                            "directory")
        self.project_id = int(project_id)
        try:  # what this export lists, from scratch; the write lock is held until commit or close
            self.db.execute("DELETE FROM listed")
        except sqlite3.OperationalError as exc:
            self.db.close()
            raise LoopError(f"another export is writing to {out_dir} ({exc}); wait for it to finish, or export "
                            "to another directory (export.dir)") from None

    def __enter__(self) -> ExportState:
        return self

    def __exit__(self, *exc) -> None:
        self.db.close()  # uncommitted changes are rolled back

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _import_legacy(self, state: dict[str, Any]) -> None:
        images = state.get("images", {})
        self.db.executemany(
            "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
            ((int(k), split, images.get(k, {}).get("url"), images.get(k, {}).get("file_name"),
              images.get(k, {}).get("width"), images.get(k, {}).get("height"))
             for k, split in state.get("splits", {}).items()))
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [("project_id", str(state.get("project_id"))),
                             ("categories", json.dumps(state.get("categories") or []))])
        self.db.commit()

    def categories(self) -> list[dict[str, Any]] | None:
        text = self._meta("categories")
        return None if text is None else json.loads(text)

    def image(self, task_id: int) -> dict[str, Any] | None:
        """The cached image entry of a task (url, file_name, width, height), if it has one."""
        row = self.db.execute("SELECT url, file_name, width, height FROM tasks WHERE task_id = ?",
                              (int(task_id),)).fetchone()
        if row is None or row[0] is None:
            return None
        return dict(zip(("url", "file_name", "width", "height"), row))

    def split(self, task_id: int, val_fraction: float) -> str:
        """The task's split: the one it had (validation never leaks into training), else drawn from its id."""
        row = self.db.execute("SELECT split FROM tasks WHERE task_id = ?", (int(task_id),)).fetchone()
        return assign_splits([task_id], {int(task_id): row[0]} if row else {}, val_fraction)[int(task_id)]

    def add(self, task_id: int, split: str, image: dict[str, Any], updated_at: str, coco: dict[str, Any]) -> None:
        """A listed task: its split and image entry remembered, its COCO image and annotations kept for the
        files (a task listed twice keeps its last listing)."""
        self.db.execute("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                        (int(task_id), split, image["url"], image["file_name"], image["width"], image["height"]))
        self.db.execute("INSERT OR REPLACE INTO listed VALUES (?, ?, ?, ?)",
                        (int(task_id), split, updated_at,
                         json.dumps({"images": coco["images"], "annotations": coco["annotations"]})))

    def reuse(self, versions: Iterable[tuple[int, str]], settings: str, files: Path | None = None) -> int:
        """Take over what the last export made of every task in `versions` ((task id, Label Studio's
        updated_at), streamed into SQLite) whose updated_at is the same and whose export `settings` did not
        change; with `files` (downloads), only where the image file is still there. Returns how many tasks
        `versions` held; `todo` then yields the others: new or changed, to be listed in full and `add`ed."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (task_id INTEGER PRIMARY KEY, version TEXT NOT NULL)")
        self.db.execute("DELETE FROM seen")
        self.db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)", ((int(i), str(v)) for i, v in versions))
        if self._meta("settings") == settings:
            self.db.execute("INSERT OR REPLACE INTO listed SELECT k.task_id, k.split, k.updated_at, k.entry "
                            "FROM kept k JOIN seen s ON s.task_id = k.task_id AND s.version = k.version")
            if files is not None:
                gone = [(tid,) for tid, name in self.db.execute(
                    "SELECT l.task_id, t.file_name FROM listed l JOIN tasks t ON t.task_id = l.task_id")
                        if not (Path(files) / name).exists()]
                self.db.executemany("DELETE FROM listed WHERE task_id = ?", gone)
        return self.db.execute("SELECT COUNT(*) FROM seen").fetchone()[0]

    def todo(self) -> Iterator[int]:
        """The tasks `reuse` did not take over, by id."""
        for (tid,) in self.db.execute("SELECT task_id FROM seen WHERE task_id NOT IN (SELECT task_id FROM listed) "
                                      "ORDER BY task_id").fetchall():
            yield tid

    def todo_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM seen WHERE task_id NOT IN (SELECT task_id FROM listed)"
                               ).fetchone()[0]

    def version(self, task_id: int) -> str:
        """Label Studio's updated_at of a task in `reuse`'s listing; "" for a task it did not list."""
        row = self.db.execute("SELECT version FROM seen WHERE task_id = ?", (int(task_id),)).fetchone()
        return "" if row is None else row[0]

    def is_listed(self, task_id: int) -> bool:
        """Whether this export has the task already (taken over by `reuse`, or added)."""
        return self.db.execute("SELECT 1 FROM listed WHERE task_id = ?", (int(task_id),)).fetchone() is not None

    def reused(self) -> Iterator[dict[str, Any]]:
        """The raw tasks (as Label Studio listed them last time) of the tasks `reuse` took over."""
        for (task,) in self.db.execute("SELECT k.task FROM kept k JOIN listed l ON l.task_id = k.task_id "
                                       "ORDER BY k.task_id"):
            yield json.loads(task)

    def keep(self, task_id: int, version: str, task: dict[str, Any]) -> None:
        """Remember what this export made of a task it listed in full (after `add`), with Label Studio's
        updated_at for it, for the next export's `reuse`."""
        self.db.execute("INSERT OR REPLACE INTO kept SELECT task_id, ?, split, updated_at, entry, ? FROM listed "
                        "WHERE task_id = ?", (str(version), json.dumps(task, default=str), int(task_id)))

    def counts(self) -> dict[str, int]:
        found = dict(self.db.execute("SELECT split, COUNT(*) FROM listed GROUP BY split").fetchall())
        return {s: int(found.get(s, 0)) for s in ("train", "val")}

    def snapshot(self) -> Iterator[tuple[str, str]]:
        """(task id, its annotation's updated_at) of every listed task, in the order json's sort_keys writes
        them (as text)."""
        yield from self.db.execute("SELECT CAST(task_id AS TEXT) AS k, updated_at FROM listed ORDER BY k")

    def max_updated_at(self) -> str:
        return self.db.execute("SELECT COALESCE(MAX(updated_at), '') FROM listed").fetchone()[0]

    def _entries(self, split: str) -> Iterator[dict[str, Any]]:
        for (entry,) in self.db.execute("SELECT entry FROM listed WHERE split = ? ORDER BY task_id", (split,)):
            yield json.loads(entry)

    def images(self, split: str) -> Iterator[dict[str, Any]]:
        """The split's COCO images, by task id."""
        for coco in self._entries(split):
            yield from coco["images"]

    def annotations(self, split: str) -> Iterator[dict[str, Any]]:
        """The split's COCO annotations in task-id order, numbered from 1 (as build_coco numbers them)."""
        next_id = 1
        for coco in self._entries(split):
            for ann in coco["annotations"]:
                yield {**ann, "id": next_id}
                next_id += 1

    def commit(self, categories: list[dict[str, Any]], settings: str = "") -> None:
        """This export becomes the state (with these category ids and export settings); the listing's entries
        are dropped, and what was kept of tasks this export did not list (no longer submitted)."""
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [("project_id", str(self.project_id)), ("categories", json.dumps(categories)),
                             ("settings", settings)])
        self.db.execute("DELETE FROM kept WHERE task_id NOT IN (SELECT task_id FROM listed)")
        self.db.execute("DELETE FROM listed")
        self.db.commit()
        legacy = self.path.with_name("state.json")
        if legacy.exists():
            legacy.unlink()  # state.db holds it now
