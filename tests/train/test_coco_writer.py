"""The streamed COCO writer: the same bytes json.dumps gives, in task-id order, in bounded memory."""

from __future__ import annotations

import io
import json

import pytest

from train.coco_writer import CocoSpool, write_streamed_json

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


def image(task_id):
    return {"id": task_id, "file_name": f"images/{task_id}.png", "width": 40, "height": 30}


def box(task_id, category, x):
    return {"id": 1, "image_id": task_id, "category_id": category, "bbox": [x, 0, 5, 5], "area": 25, "iscrowd": 0}


def test_spool_writes_tasks_in_id_order_numbers_annotations_and_touches_nothing_unchanged(tmp_path):
    out = tmp_path / "train.json"
    with CocoSpool(tmp_path) as spool:
        spool.add(image(9), [box(9, 2, 1)])
        spool.add(image(3), [box(3, 1, 2), box(3, 2, 3)])
        spool.add(image(5), [])  # a negative image stays
        spool.add(image(9), [box(9, 1, 4)])  # listed twice: the later line wins
        assert len(spool) == 3
        assert spool.write(out, CATEGORIES, {"description": "split train"})
    expected = {"images": [image(3), image(5), image(9)], "categories": CATEGORIES,
                "annotations": [{**box(3, 1, 2), "id": 1}, {**box(3, 2, 3), "id": 2}, {**box(9, 1, 4), "id": 3}],
                "info": {"description": "split train"}}
    assert out.read_text() == json.dumps(expected, indent=1, sort_keys=True)
    assert not list(tmp_path.glob(".spool-*")) and not list(tmp_path.glob("*.tmp"))  # nothing left behind

    written = out.stat().st_mtime_ns
    with CocoSpool(tmp_path) as spool:
        for task_id, anns in ((5, []), (3, [box(3, 1, 2), box(3, 2, 3)]), (9, [box(9, 1, 4)])):
            spool.add(image(task_id), anns)
        assert not spool.write(out, CATEGORIES, {"description": "split train"})
    assert out.stat().st_mtime_ns == written
    with CocoSpool(tmp_path) as spool:
        spool.add(image(3), [box(3, 1, 2)])
        assert spool.write(out, CATEGORIES, {"description": "split train"})
    assert [a["id"] for a in json.loads(out.read_text())["annotations"]] == [1]
