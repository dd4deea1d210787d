"""The trainer: config building (fast) and a real, short mmengine training run (integration)."""

from __future__ import annotations

import math
import multiprocessing

import pytest

from loop.common.errors import LoopError
from loop.common.model_zoo import resolve_config
from loop.common.paths import REPO_ROOT
from train.trainer import (
    TrainSpec,
    batches_per_epoch,
    build_config,
    epochs_for,
    last_batch_dropped,
    read_classes,
    train,
)

CONFIG = REPO_ROOT / "train" / "configs" / "rtmdet_tiny_demo.py"


def _spec(root, tmp_path, **kw) -> TrainSpec:
    base = dict(config=CONFIG, data_root=root, train_ann="pool.json", val_ann="test.json", work_dir=tmp_path / "w")
    base.update(kw)
    return TrainSpec(**base)


def test_build_config_fills_in_what_the_loop_owns(small_demo, tmp_path):
    cfg = build_config(_spec(small_demo, tmp_path, img_size=128, epochs=3, batch_size=4, lr=0.01))
    assert cfg.model.bbox_head.num_classes == 4
    assert cfg.model.backbone.init_cfg is None  # nothing to download
    assert cfg.train_dataloader.dataset.metainfo["classes"] == ("circle", "square", "triangle", "star")
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.train_cfg.max_epochs == 3 and cfg.optim_wrapper.optimizer.lr == 0.01
    sizes = [s.get("scale") or s.get("size") for s in cfg.test_dataloader.dataset.pipeline
             if s["type"] in ("Resize", "Pad")]
    assert sizes == [(128, 128), (128, 128)]
    assert cfg.val_evaluator.ann_file == str(small_demo / "test.json")


def test_without_an_input_size_the_config_keeps_its_own_and_the_recipe_sets_the_schedule(small_demo, tmp_path):
    cfg = build_config(_spec(small_demo, tmp_path, img_size=None, epochs=5, warmup_iters=7, val_interval=2))
    sizes = [s.get("scale") or s.get("size") for s in cfg.test_dataloader.dataset.pipeline
             if s["type"] in ("Resize", "Pad")]
    assert sizes == [(192, 192), (192, 192)]  # rtmdet_tiny_demo.py's img_scale
    assert cfg.train_cfg.max_epochs == 5 and cfg.train_cfg.val_interval == 2
    assert cfg.param_scheduler[0]["end"] == 7 and cfg.default_hooks.checkpoint.interval == 5


def test_missing_annotation_file_says_how_to_fix(tmp_path):
    with pytest.raises(LoopError, match="stage=demo_data"):
        read_classes(tmp_path / "nope.json")


def test_missing_config_file_is_refused(small_demo, tmp_path):
    with pytest.raises(LoopError, match="model.config"):
        build_config(_spec(small_demo, tmp_path, config=tmp_path / "missing.py"))


def test_a_floor_in_iterations_gives_a_small_labeled_set_more_epochs(small_demo, tmp_path):
    # small_demo's pool: 24 images, 3 iterations per epoch in batches of 8
    assert epochs_for(_spec(small_demo, tmp_path, epochs=2, batch_size=8)) == 2
    assert epochs_for(_spec(small_demo, tmp_path, epochs=2, batch_size=8, min_iters=20)) == 7  # 21 iterations
    assert epochs_for(_spec(small_demo, tmp_path, epochs=2, batch_size=8, min_iters=6)) == 2  # already enough
    assert epochs_for(_spec(small_demo, tmp_path, epochs=2, batch_size=8, min_iters=20), world_size=2) == 10
    assert epochs_for(_spec(small_demo, tmp_path, epochs=2, batch_size=5, min_iters=20)) == 4  # 5 per epoch
    with pytest.raises(LoopError, match="training images"):
        epochs_for(_spec(small_demo, tmp_path, train_ann="missing.json", min_iters=20))


def test_an_epoch_leaves_out_a_last_batch_of_under_half_a_batch():
    # (images, batch size, processes): dropped?, iterations an epoch
    cases = {(25, 8, 1): (True, 3), (26, 8, 1): (True, 3), (28, 8, 1): (False, 4), (24, 8, 1): (False, 3),
             (5, 8, 1): (False, 1), (9, 8, 1): (True, 1), (300, 16, 1): (False, 19),
             (34, 8, 2): (True, 2), (40, 8, 2): (False, 3)}  # two processes: 17 and 20 images each
    assert {case: (last_batch_dropped(*case), batches_per_epoch(*case)) for case in cases} == cases
    assert batches_per_epoch(25, 8, drop_small_last=False) == 4


def test_the_training_loader_drops_a_small_last_batch_where_the_config_keeps_its_batches(small_demo, tmp_path):
    # small_demo's pool: 24 images; batches of 7 leave 3 (dropped), batches of 5 leave 4 (kept)
    assert build_config(_spec(small_demo, tmp_path, batch_size=7)).train_dataloader.drop_last is True
    assert build_config(_spec(small_demo, tmp_path, batch_size=5)).train_dataloader.drop_last is False
    assert build_config(_spec(small_demo, tmp_path, batch_size=7, drop_small_last=False)
                        ).train_dataloader.drop_last is False
    # a config that batches by aspect ratio (many mmdet configs) gets it on its batch sampler
    own = tmp_path / "aspect.py"
    own.write_text(f"_base_ = {str(CONFIG)!r}\n"
                   "train_dataloader = dict(batch_sampler=dict(_delete_=True, type='AspectRatioBatchSampler'))\n")
    loader = build_config(_spec(small_demo, tmp_path, config=own, batch_size=7)).train_dataloader
    assert loader.batch_sampler.drop_last is True and "drop_last" not in loader


@pytest.mark.integration
def test_short_training_run_produces_checkpoint_and_coco_metrics(small_demo, tmp_path, capfd):
    result = train(_spec(small_demo, tmp_path, img_size=128, epochs=1, min_iters=6, batch_size=7, warmup_iters=2,
                         num_workers=1, val_interval=1))
    # 24 images in batches of 7: 3 iterations an epoch (the last batch, of 3, left out), at least 6 iterations
    assert result["iterations"] == 6 and result["epochs"] == 2
    # the data loaders' worker processes are stopped, not left for the garbage collector (5 s each)
    assert multiprocessing.active_children() == []
    assert (tmp_path / "w" / "epoch_2.pth").is_file()
    assert 0.0 <= result["bbox_mAP"] <= 1.0 and not math.isnan(result["bbox_mAP_50"])
    # mmengine's environment report, config and per-iteration lines go to its log file, not the console
    console = "".join(capfd.readouterr())
    assert "mmengine - " not in console and "Config:" not in console
    assert "index created" not in console and "index created" in (tmp_path / "w" / "stdout.log").read_text()
    logs = list((tmp_path / "w").glob("*/*.log"))
    assert len(logs) == 1 and "Epoch(train)" in logs[0].read_text() and "bbox_mAP" in logs[0].read_text()


def test_an_mmyolo_config_keeps_its_own_hooks_fitted_to_the_recipe(small_demo, tmp_path):
    """MMYOLO's learning-rate hook takes the recipe's schedule (no second scheduler beside it); its mosaic,
    affine crop, pipeline switch and letterbox follow the input size; evaluation has no 640 px batch shapes."""
    spec = _spec(small_demo, tmp_path, config=resolve_config("yolov8_n_syncbn_fast_8xb16-500e_coco"), img_size=128,
                 epochs=4, warmup_iters=9)
    cfg = build_config(spec)
    hook = cfg.default_hooks.param_scheduler
    assert (hook.type, hook.max_epochs, hook.warmup_epochs, hook.warmup_mim_iter) == \
        ("YOLOv5ParamSchedulerHook", 4, 0, 9)
    assert cfg.param_scheduler is None and cfg.model.bbox_head.head_module.num_classes == 4
    train_steps = {s["type"]: s for s in cfg.train_dataloader.dataset.pipeline}
    assert train_steps["Mosaic"]["img_scale"] == (128, 128)
    assert train_steps["YOLOv5RandomAffine"]["border"] == (-64, -64)
    switch = next(h for h in cfg.custom_hooks if h.get("switch_pipeline"))["switch_pipeline"]
    assert [s["scale"] for s in switch if "scale" in s] == [(128, 128), (128, 128)]
    assert cfg.test_dataloader.dataset.batch_shapes_cfg is None
