"""COCO files written from a stream of tasks in bounded memory: the export's train.json and val.json.

Why: a project's annotations (every region of every task) outgrow memory long before its task list does:
held as one COCO dict, 50,000 annotated tasks took 246 MB in the export. Here each task's image and
annotations go to a spool file on disk as they are listed, and the COCO file is written from it at the end,
one task at a time. What stays in memory is an offset per task.

The file is byte for byte what `json.dumps(coco, indent=1, sort_keys=True)` gives for the same dict (images
sorted by task id, annotations numbered from 1 in that order, as train.export_coco.build_coco numbers them),
so an export of unchanged tasks leaves the files untouched.
"""

from __future__ import annotations

import filecmp
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _nested(value: Any, depth: int) -> str:
    """`value` as json.dumps(indent=1, sort_keys=True) writes it `depth` levels inside a document."""
    return json.dumps(value, indent=1, sort_keys=True).replace("\n", "\n" + " " * depth)


def write_streamed_json(fh, fields: dict[str, Any]) -> None:
    """Write `fields` to the text file `fh` exactly as json.dumps(fields, indent=1, sort_keys=True) would,
    one item at a time: a value may be an iterator (written as a list, never held whole), and a dict value is
    written entry by entry (its text is never built whole)."""
    fh.write("{")
    for n, key in enumerate(sorted(fields)):
        fh.write(("," if n else "") + "\n " + json.dumps(key) + ": ")
        value = fields[key]
        if isinstance(value, dict):
            for i, name in enumerate(sorted(value)):
                fh.write(("{" if i == 0 else ",") + "\n  " + json.dumps(name) + ": " + _nested(value[name], 2))
            fh.write("\n }" if value else "{}")
        elif isinstance(value, Iterator):
            empty = True
            for item in value:
                fh.write(("[" if empty else ",") + "\n  " + _nested(item, 2))
                empty = False
            fh.write("[]" if empty else "\n ]")
        else:
            fh.write(_nested(value, 1))
    fh.write("\n}" if fields else "}")


class CocoSpool:
    """One split's images and annotations, spooled to a temporary file as tasks come (one JSON line per
    task) and written as a COCO file by `write`. Use it as a context manager: the spool file is deleted on
    exit, whatever happens."""

    def __init__(self, directory: Path):
        self._file = tempfile.TemporaryFile(dir=directory, prefix=".spool-")
        self._where: dict[int, tuple[int, int]] = {}  # task id -> (offset, length) of its line

    def __enter__(self) -> CocoSpool:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def __len__(self) -> int:
        return len(self._where)

    def add(self, image: dict[str, Any], annotations: Iterable[dict[str, Any]]) -> None:
        """A task's COCO image (its id is the task id) and annotations (their ids are renumbered on write).
        A task added again replaces its earlier line."""
        line = json.dumps({"image": image, "annotations": list(annotations)}).encode() + b"\n"
        self._file.seek(0, os.SEEK_END)
        self._where[int(image["id"])] = (self._file.tell(), len(line))
        self._file.write(line)

    def _tasks(self) -> Iterator[dict[str, Any]]:
        for task_id in sorted(self._where):
            offset, length = self._where[task_id]
            self._file.seek(offset)
            yield json.loads(self._file.read(length))

    def _annotations(self) -> Iterator[dict[str, Any]]:
        next_id = 1
        for task in self._tasks():
            for ann in task["annotations"]:
                yield {**ann, "id": next_id}
                next_id += 1

    def write(self, path: Path, categories: list[dict[str, Any]], info: dict[str, Any]) -> bool:
        """Write the COCO file to `path` (write_json_if_changed). Returns whether it wrote."""
        return write_json_if_changed(path, {"annotations": self._annotations(), "categories": categories,
                                            "images": (t["image"] for t in self._tasks()), "info": info})


def write_json_if_changed(path: Path, fields: dict[str, Any]) -> bool:
    """Write `fields` (write_streamed_json: values may be iterators) to `path` atomically, only when the content
    differs from what is there: an export that changed nothing touches nothing. Neither the new text nor the
    old is ever held whole. Returns whether it wrote."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        write_streamed_json(fh, fields)
    if path.exists() and filecmp.cmp(tmp, path, shallow=False):
        tmp.unlink()
        return False
    os.replace(tmp, path)
    return True
