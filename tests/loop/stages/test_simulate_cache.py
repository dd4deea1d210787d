"""stage=simulate's training cache with a stand-in trainer: what a round's key depends on, and reuse."""

from __future__ import annotations

import json

from loop.stages.simulate_cache import TrainingCache


class Trainer:
    """Writes a model and detections whose content names the call, and counts its calls."""

    def __init__(self, tmp_path):
        self.tmp, self.calls = tmp_path, 0

    def __call__(self):
        self.calls += 1
        work = self.tmp / f"work{self.calls}"
        work.mkdir()
        (work / "m.pth").write_text(f"model {self.calls}")
        (work / "d.json").write_text(json.dumps([self.calls]))
        return {"checkpoint": str(work / "m.pth"), "detections": str(work / "d.json"), "bbox_mAP": 0.1 * self.calls,
                "bbox_mAP_50": 0.2, "work_dir": str(work)}


def test_a_round_is_trained_once_and_reused_with_its_files_and_figures(tmp_path):
    cache, trainer = TrainingCache(tmp_path / "cache", {"train": {"lr": 0.004}}), Trainer(tmp_path)
    key = cache.key([3, 1, 2], None, 100, 0)
    first = cache.get_or_train(key, trainer)
    assert not first["cached"] and trainer.calls == 1
    again = cache.get_or_train(cache.key([1, 2, 3], None, 100, 0), trainer)  # the same images in another order
    assert again["cached"] and trainer.calls == 1
    assert (again["bbox_mAP"], again["bbox_mAP_50"]) == (first["bbox_mAP"], first["bbox_mAP_50"])
    assert open(again["checkpoint"]).read() == "model 1" and json.loads(open(again["detections"]).read()) == [1]
    assert not list((tmp_path / "cache").glob(".*"))  # no half-written entry left


def test_the_key_sees_every_input_of_a_round(tmp_path):
    cache = TrainingCache(tmp_path, {"train": {"lr": 0.004}})
    base = cache.key([1, 2], "start", 100, 0)
    others = {cache.key([1, 3], "start", 100, 0), cache.key([1, 2], "other", 100, 0),
              cache.key([1, 2], None, 100, 0), cache.key([1, 2], "start", 101, 0), cache.key([1, 2], "start", 100, 1),
              TrainingCache(tmp_path, {"train": {"lr": 0.002}}).key([1, 2], "start", 100, 0)}
    assert base not in others and len(others) == 6
    assert TrainingCache(tmp_path, {"train": {"lr": 0.004}}).key([2, 1], "start", 100, 0) == base


def test_the_key_follows_the_training_code(tmp_path):
    code = tmp_path / "train"
    (code / "configs").mkdir(parents=True)
    (code / "trainer.py").write_text("lr = 0.004\n")
    (code / "configs" / "rtmdet.py").write_text("_base_ = 'x'\n")

    def key():
        return TrainingCache(tmp_path / "cache", {"train": {}}, code=code).key([1, 2], None, 100, 0)

    base = key()
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "trainer.cpython-311.pyc").write_bytes(b"\0")
    assert key() == base  # compiled caches do not count
    (code / "configs" / "rtmdet.py").write_text("_base_ = 'y'\n")
    assert key() != base
    (code / "configs" / "rtmdet.py").write_text("_base_ = 'x'\n")
    assert key() == base
    (code / "new.py").write_text("")
    assert key() != base
    assert TrainingCache(None, {}).key([1], None, 1, 0) != TrainingCache(None, {}, code=code).key([1], None, 1, 0)


def test_no_cache_dir_always_trains(tmp_path):
    cache, trainer = TrainingCache(None, {}), Trainer(tmp_path)
    for _ in range(2):
        assert not cache.get_or_train(cache.key([1], None, 1, 0), trainer)["cached"]
    assert trainer.calls == 2
