"""JSON files written one item at a time: the export's COCO files and manifest, in bounded memory.

Why: held as one COCO dict, the annotations of 50,000 tasks took 246 MB in the export, and its text as much
again. Here the lists and large objects of a file come from iterators (train.export_state reads them from
SQLite, one task at a time) and are written as they come.

The text is byte for byte what `json.dumps(fields, indent=1, sort_keys=True)` gives for the same dict, so an
export of unchanged tasks leaves the files untouched, and files written before this writer compare equal.
"""

from __future__ import annotations

import filecmp
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _nested(value: Any, depth: int) -> str:
    """`value` as json.dumps(indent=1, sort_keys=True) writes it `depth` levels inside a document."""
    return json.dumps(value, indent=1, sort_keys=True).replace("\n", "\n" + " " * depth)


class Pairs:
    """A JSON object given as an iterator of (key, value) pairs already in sorted key order: written by
    write_streamed_json entry by entry, never held whole."""

    def __init__(self, pairs: Iterable[tuple[str, Any]]):
        self.pairs = pairs


def write_streamed_json(fh, fields: dict[str, Any]) -> None:
    """Write `fields` to the text file `fh` exactly as json.dumps(fields, indent=1, sort_keys=True) would,
    one item at a time: a value may be an iterator (written as a list, never held whole), a dict or Pairs
    (written entry by entry)."""
    fh.write("{")
    for n, key in enumerate(sorted(fields)):
        fh.write(("," if n else "") + "\n " + json.dumps(key) + ": ")
        value = fields[key]
        if isinstance(value, (dict, Pairs)):
            pairs = ((k, value[k]) for k in sorted(value)) if isinstance(value, dict) else value.pairs
            empty = True
            for name, item in pairs:
                fh.write(("{" if empty else ",") + "\n  " + json.dumps(name) + ": " + _nested(item, 2))
                empty = False
            fh.write("{}" if empty else "\n }")
        elif isinstance(value, Iterator):
            empty = True
            for item in value:
                fh.write(("[" if empty else ",") + "\n  " + _nested(item, 2))
                empty = False
            fh.write("[]" if empty else "\n ]")
        else:
            fh.write(_nested(value, 1))
    fh.write("\n}" if fields else "}")


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
