"""The streamed JSON writer: the same bytes json.dumps gives, one item at a time; files rewritten only when
their content changes."""

from __future__ import annotations

import io
import json

import pytest

from train.coco_writer import Pairs, write_json_if_changed, write_streamed_json

CATEGORIES = [{"id": 1, "name": "cat", "supercategory": "object"}, {"id": 2, "name": "dög", "supercategory": "object"}]


@pytest.mark.parametrize("fields", [
    {},
    {"a": []},
    {"b": [1, [2, {"z": 1, "y": [3]}]], "a": {"k": "line\nbreak", "e": {}, "10": [1], "9": {"x": [2]}}, "c": "x"},
    {"d": {}, "n": None, "f": 0.1, "u": "dög"},
    {"annotations": [{"id": 1, "bbox": [0.5, 1, 2, 3], "segmentation": [[1, 2, 3]]}], "categories": CATEGORIES},
])
def test_streamed_json_is_byte_for_byte_json_dumps(fields):
    streamed = io.StringIO()
    write_streamed_json(streamed, {k: iter(v) if isinstance(v, list) else v for k, v in fields.items()})
    assert streamed.getvalue() == json.dumps(fields, indent=1, sort_keys=True)
    plain = io.StringIO()  # lists given as lists are written whole, the same way
    write_streamed_json(plain, fields)
    assert plain.getvalue() == streamed.getvalue()
    paired = io.StringIO()  # objects given as sorted pairs, entry by entry
    write_streamed_json(paired, {k: Pairs([(n, v[n]) for n in sorted(v)]) if isinstance(v, dict) else v
                                 for k, v in fields.items()})
    assert paired.getvalue() == streamed.getvalue()


def test_a_file_is_rewritten_only_when_its_content_changes(tmp_path):
    path = tmp_path / "train.json"
    assert write_json_if_changed(path, {"images": iter([{"id": 1}]), "info": {}})
    written = path.stat().st_mtime_ns
    assert json.loads(path.read_text()) == {"images": [{"id": 1}], "info": {}}
    assert not write_json_if_changed(path, {"images": iter([{"id": 1}]), "info": {}})
    assert path.stat().st_mtime_ns == written and not list(tmp_path.glob("*.tmp"))
    assert write_json_if_changed(path, {"images": iter([]), "info": {}})
    assert json.loads(path.read_text())["images"] == []
