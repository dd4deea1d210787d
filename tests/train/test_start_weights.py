"""Fine-tuning a COCO checkpoint onto a project whose labels differ: the classification layers start fresh,
everything else is loaded, and the split is reported."""

from __future__ import annotations

import pytest
import torch

from loop.common.errors import LoopError
from loop.common.paths import REPO_ROOT
from tests.zoo import published, runner_checkpoint
from train.trainer import TrainSpec, train


@pytest.fixture(scope="module")
def coco_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco_tiny")
    return published(runner_checkpoint("rtmdet_tiny_8xb32-300e_coco", folder / "rtmdet_tiny_coco.pth"), folder)


def _spec(data, work, load_from, config="rtmdet_tiny_demo.py"):
    return TrainSpec(config=REPO_ROOT / "train" / "configs" / config, data_root=data, train_ann="pool.json",
                     val_ann="test.json", work_dir=work, img_size=128, epochs=1, batch_size=8, warmup_iters=1,
                     num_workers=0, val_interval=1, lr=0.0005, load_from=str(load_from))


def test_an_80_class_checkpoint_fine_tunes_onto_the_4_class_demo_project(coco_tiny, small_demo, tmp_path):
    result = train(_spec(small_demo, tmp_path / "w", coco_tiny))
    start = result["start_weights"]
    assert sorted(start["fresh"]) == sorted(f"bbox_head.rtm_cls.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    source = torch.load(coco_tiny, weights_only=True)["state_dict"]
    trained = torch.load(result["checkpoint"], weights_only=False)["state_dict"]
    assert start["loaded"] == len([k for k in trained if not k.endswith("num_batches_tracked")]) - 6
    assert trained["bbox_head.rtm_cls.0.weight"].shape[0] == 4
    # three small steps from the COCO weights: the backbone is still those weights, not a fresh init
    key = "backbone.stem.0.conv.weight"
    assert (trained[key] - source[key]).abs().max() < 0.05 * source[key].abs().max()


def test_a_checkpoint_of_another_architecture_is_refused(small_demo, tmp_path):
    other = published(runner_checkpoint("faster-rcnn_r50_fpn_1x_coco", tmp_path / "frcnn.pth"), tmp_path)
    with pytest.raises(LoopError, match="another architecture"):
        train(_spec(small_demo, tmp_path / "w", other))
