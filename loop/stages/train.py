"""stage=train: train the mmdet config on a COCO dataset (data=...) and report COCO mAP on its test split."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from omegaconf import DictConfig

from loop.common.paths import resolve
from loop.stages.adapters import train_spec
from train.trainer import train

log = logging.getLogger(__name__)


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    """Train on data.train_ann, evaluate on data.test_ann, print the figures."""
    work_dir = resolve(cfg.work_dir) / "train" / datetime.now().strftime("%Y%m%d-%H%M%S")
    result = train(train_spec(cfg, work_dir))
    log.info("bbox mAP %.3f, mAP@50 %.3f after %d iterations (%d epochs) in %.0f s on %s; checkpoint %s",
             result["bbox_mAP"], result["bbox_mAP_50"], result["iterations"], result["epochs"],
             result["train_s"], result["device"], result["checkpoint"])
    return {k: v for k, v in result.items() if k != "history"}
