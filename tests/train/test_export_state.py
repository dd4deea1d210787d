"""The export's state in SQLite: frozen splits, the image index, this export's COCO entries in task-id order,
nothing kept from an export that did not commit, and export directories from before (state.json)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from loop.common.errors import LoopError
from train.export_coco import split_of
from train.export_state import ExportState

CATS = [{"id": 1, "name": "cat", "supercategory": "object"}]


def image(task_id):
    return {"url": f"/data/upload/1/{task_id}.png", "file_name": f"images/{task_id}-abc.png", "width": 40,
            "height": 30}


def coco(task_id, *xs):
    return {"images": [{"id": task_id, "file_name": image(task_id)["file_name"], "width": 40, "height": 30}],
            "annotations": [{"id": i + 1, "image_id": task_id, "category_id": 1, "bbox": [x, 0, 5, 5], "area": 25,
                             "iscrowd": 0} for i, x in enumerate(xs)]}


def test_entries_come_back_by_task_id_numbered_and_the_state_survives_a_commit(tmp_path):
    with ExportState(tmp_path, 7) as state:
        assert state.categories() is None and state.image(9) is None
        for task_id, xs in ((10, (1,)), (9, (2, 3)), (2, ()), (9, (4,))):  # 9 listed twice: the last counts
            state.add(task_id, "train", image(task_id), f"2026-01-{task_id:02d}", coco(task_id, *xs))
        state.add(5, "val", image(5), "2026-02-01", coco(5, 6))
        assert [i["id"] for i in state.images("train")] == [2, 9, 10]
        assert [(a["id"], a["image_id"], a["bbox"][0]) for a in state.annotations("train")] == [(1, 9, 4), (2, 10, 1)]
        assert [a["id"] for a in state.annotations("val")] == [1]
        assert state.counts() == {"train": 3, "val": 1}
        assert list(state.snapshot()) == [("10", "2026-01-10"), ("2", "2026-01-02"), ("5", "2026-02-01"),
                                          ("9", "2026-01-09")]  # json's sort_keys order
        assert state.max_updated_at() == "2026-02-01"
        state.commit(CATS)
    with ExportState(tmp_path, 7) as state:
        assert state.categories() == CATS and state.image(9) == image(9)
        assert state.split(5, 0.0) == "val" and state.split(2, 1.0) == "train"  # frozen, whatever the fraction
        assert state.split(11, 0.3) == split_of(11, 0.3)  # new tasks: drawn from the id
        assert state.counts() == {"train": 0, "val": 0} and list(state.snapshot()) == []  # a new listing


def test_an_export_that_does_not_commit_leaves_the_state_as_it_was(tmp_path):
    with ExportState(tmp_path, 7) as state:
        state.add(1, "val", image(1), "t", coco(1))
        state.commit(CATS)
    with ExportState(tmp_path, 7) as state:
        state.add(1, "train", {**image(1), "url": "/other.png"}, "t", coco(1))
        state.add(2, "train", image(2), "t", coco(2))
    with ExportState(tmp_path, 7) as state:
        assert state.split(1, 0.0) == "val" and state.image(1) == image(1) and state.image(2) is None
        assert state.split(2, 0.0) == "train"  # unknown: drawn again, not remembered


def test_another_projects_directory_is_refused(tmp_path):
    with ExportState(tmp_path, 7) as state:
        state.commit(CATS)
    with pytest.raises(LoopError, match="holds an export of project 7, not 8; use another export directory"):
        ExportState(tmp_path, 8)


def test_a_directory_from_before_is_read_from_state_json_once(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({
        "project_id": 7, "categories": CATS, "splits": {"3": "val", "4": "train"},
        "images": {"3": image(3)}}))
    with ExportState(tmp_path, 7) as state:
        assert state.categories() == CATS and state.image(3) == image(3) and state.image(4) is None
        assert state.split(3, 0.0) == "val" and state.split(4, 1.0) == "train"
        state.commit(CATS)
    assert not (tmp_path / "state.json").exists() and (tmp_path / "state.db").exists()
    with pytest.raises(LoopError, match="project 7, not 8"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "state.json").write_text(json.dumps({"project_id": 7, "splits": {}}))
        ExportState(tmp_path / "other", 8)


def test_a_second_export_into_the_same_directory_at_once_is_refused(tmp_path, monkeypatch):
    with ExportState(tmp_path, 7) as first:
        first.add(1, "train", image(1), "t", coco(1))
        monkeypatch.setattr(sqlite3, "connect", lambda path: sqlite3.Connection(path, timeout=0.1))
        with pytest.raises(LoopError, match="another export is writing to .*export.dir"):
            ExportState(tmp_path, 7)
