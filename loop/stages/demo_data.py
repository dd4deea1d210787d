"""stage=demo_data: (re)generate the synthetic demo dataset in data.root (deterministic, offline)."""

from __future__ import annotations

from omegaconf import DictConfig

from loop.common.demo_data import SEED, generate
from loop.common.paths import resolve


def run_stage(cfg: DictConfig) -> dict:
    return generate(resolve(cfg.data.root), seed=int(cfg.stage.get("seed", SEED)))
