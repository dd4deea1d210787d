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


def test_unchanged_tasks_are_taken_over_and_only_new_or_changed_ones_are_listed_again(tmp_path):
    raw = {tid: {"id": tid, "annotations": [{"id": tid * 10}]} for tid in (1, 2, 3, 4)}
    with ExportState(tmp_path, 7) as state:
        assert state.reuse(iter([(1, "a"), (2, "b"), (3, "c")]), "s1") == 3
        assert list(state.todo()) == [1, 2, 3] and state.todo_count() == 3  # nothing known yet
        assert state.version(2) == "b" and state.version(9) == ""
        for tid in (1, 2, 3):
            state.add(tid, "train", image(tid), f"t{tid}", coco(tid, tid))
            state.keep(tid, "abc"[tid - 1], raw[tid])
        state.commit(CATS, "s1")
    with ExportState(tmp_path, 7) as state:
        # 2 changed, 3 no longer submitted, 4 new
        state.reuse([(1, "a"), (2, "b2"), (4, "d")], "s1")
        assert list(state.todo()) == [2, 4] and state.is_listed(1) and not state.is_listed(2)
        assert list(state.reused()) == [raw[1]] and [i["id"] for i in state.images("train")] == [1]
        for tid in (2, 4):
            state.add(tid, "train", image(tid), f"t{tid}", coco(tid, tid))
            state.keep(tid, {2: "b2", 4: "d"}[tid], raw[tid])
        assert [(a["image_id"], a["bbox"][0]) for a in state.annotations("train")] == [(1, 1), (2, 2), (4, 4)]
        assert list(state.snapshot()) == [("1", "t1"), ("2", "t2"), ("4", "t4")]
        state.commit(CATS, "s1")
    with ExportState(tmp_path, 7) as state:
        state.reuse([(1, "a"), (2, "b2"), (3, "c"), (4, "d")], "s1")
        assert list(state.todo()) == [3]  # 3's entry left with it
        assert [t["id"] for t in state.reused()] == [1, 2, 4]
    with ExportState(tmp_path, 7) as state:  # other settings (controls, labels, downloads): everything again
        state.reuse([(1, "a"), (2, "b2"), (4, "d")], "s2")
        assert list(state.todo()) == [1, 2, 4] and list(state.reused()) == []


def test_a_task_whose_image_file_is_gone_is_listed_again_when_images_are_downloaded(tmp_path):
    (tmp_path / "images").mkdir()
    with ExportState(tmp_path, 7) as state:
        state.reuse([(1, "a"), (2, "b")], "s")
        for tid in (1, 2):
            (tmp_path / image(tid)["file_name"]).write_bytes(b"png")
            state.add(tid, "train", image(tid), "t", coco(tid))
            state.keep(tid, "ab"[tid - 1], {"id": tid})
        state.commit(CATS, "s")
    (tmp_path / image(2)["file_name"]).unlink()
    with ExportState(tmp_path, 7) as state:
        state.reuse([(1, "a"), (2, "b")], "s")
        assert list(state.todo()) == []  # without downloads the files do not matter
    with ExportState(tmp_path, 7) as state:
        state.reuse([(1, "a"), (2, "b")], "s", files=tmp_path)
        assert list(state.todo()) == [2]
