"""Slim checkpoints record the training set's boxes per class, and the predictor reads them back."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from backend.predictor import Predictor, recorded_class_counts
from loop.clients.checkpoints import read_checkpoint
from loop.common.errors import LoopError
from train.package import coco_class_counts, read_class_counts
from train.slim import load_slim, make_slim


@pytest.fixture
def runner_checkpoint(tmp_path):
    path = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {"head.weight": torch.ones(2, 3)}, "message_hub": {"step": 1}}, path)
    return path


def test_class_counts_go_into_the_slim_meta_and_back_to_the_predictor(runner_checkpoint, tmp_path):
    slim = make_slim(runner_checkpoint, tmp_path / "model.pth", classes=["circle", "star"], config_text="x = 1",
                     img_size=160, class_counts=[40, 3])
    assert load_slim(slim)["meta"]["class_counts"] == [40, 3]
    _, meta, _ = read_checkpoint(slim)  # what Predictor.load reads
    assert recorded_class_counts(meta, ["circle", "star"], slim) == [40, 3]


def test_a_checkpoint_without_counts_weighs_every_class_the_same(runner_checkpoint, tmp_path, caplog):
    slim = make_slim(runner_checkpoint, tmp_path / "model.pth", classes=["circle", "star"], config_text="x = 1",
                     img_size=160)
    meta = load_slim(slim)["meta"]
    assert "class_counts" not in meta
    assert recorded_class_counts(meta, ["circle", "star"], slim) is None
    assert Predictor.class_counts is None  # what a predictor of such a checkpoint reports
    with caplog.at_level(logging.WARNING):
        assert recorded_class_counts({"class_counts": [1, 2, 3]}, ["circle", "star"], slim) is None
        assert recorded_class_counts({"class_counts": [1, -2]}, ["circle", "star"], slim) is None
    assert "not one count per class" in caplog.text


def test_counts_must_fit_the_classes(runner_checkpoint, tmp_path):
    with pytest.raises(LoopError, match="one count per class"):
        make_slim(runner_checkpoint, tmp_path / "model.pth", classes=["circle", "star"], config_text="x = 1",
                  img_size=160, class_counts=[1])


def test_class_counts_of_a_coco_file_follow_the_category_ids(tmp_path):
    coco = {"categories": [{"id": 7, "name": "star"}, {"id": 2, "name": "circle"}],
            "annotations": [{"category_id": 2}, {"category_id": 2}, {"category_id": 7}, {"category_id": 99}]}
    assert coco_class_counts(coco) == [2, 1]  # circle (id 2), then star (id 7), as read_classes orders them
    assert coco_class_counts({"categories": [{"id": 1, "name": "a"}], "annotations": []}) == [0]
    (tmp_path / "train.json").write_text(json.dumps(coco))
    assert read_class_counts(tmp_path / "train.json") == [2, 1]
