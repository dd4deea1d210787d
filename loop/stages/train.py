"""stage=train: train the mmdet config on a COCO dataset (data=...), report COCO mAP on its test split, and
leave a servable slim model.pth (with config.py) next to the Runner's checkpoint."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from omegaconf import DictConfig

from loop.common.paths import resolve
from loop.stages.adapters import train_spec
from train.package import read_class_counts, servable
from train.trainer import read_classes, train

log = logging.getLogger(__name__)


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    """Train on data.train_ann, evaluate on data.test_ann, print the figures."""
    work_dir = resolve(cfg.work_dir) / "train" / datetime.now().strftime("%Y%m%d-%H%M%S")
    spec = train_spec(cfg, work_dir)
    result = train(spec)
    ann = spec.data_root / spec.train_ann
    model, _, _ = servable(result, read_classes(ann), spec.img_size, work_dir, read_class_counts(ann))
    log.info("bbox mAP %.3f, mAP@50 %.3f after %d iterations (%d epochs) in %.0f s on %s; serve it with "
             "backend.checkpoint=%s", result["bbox_mAP"], result["bbox_mAP_50"], result["iterations"],
             result["epochs"], result["train_s"], result["device"], model)
    return {**{k: v for k, v in result.items() if k != "history"}, "model": str(model)}
