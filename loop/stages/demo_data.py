"""stage=demo_data: (re)generate the synthetic demo dataset in data.root (deterministic, offline); with
data=imbalanced its imbalanced, cluttered variant, with data=demo_large the demo with a larger pool."""

from __future__ import annotations

from omegaconf import DictConfig

from loop.common.demo_data import SEED, VARIANTS, generate
from loop.common.paths import resolve


def run_stage(cfg: DictConfig) -> dict:
    # data.name picks the variant (conf/data/demo.yaml, imbalanced.yaml, demo_large.yaml); any other data set gets
    # the demo shapes, as before
    variant = str(cfg.data.name) if cfg.data.name in VARIANTS else "demo"
    return generate(resolve(cfg.data.root), seed=int(cfg.stage.get("seed", SEED)), variant=variant)
