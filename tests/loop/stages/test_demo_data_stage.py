"""stage=demo_data writes the variant that data= names."""

from __future__ import annotations

import json
from dataclasses import replace

from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
from loop.common.demo_data import VARIANTS
from loop.common.paths import CONF_DIR
from loop.stages.demo_data import run_stage


def test_data_names_the_variant_the_stage_writes(tmp_path, monkeypatch):
    for name in VARIANTS:
        monkeypatch.setitem(VARIANTS, name, replace(VARIANTS[name], splits={"pool": 2, "test": 1},
                                                    more_pool=min(VARIANTS[name].more_pool, 1)))
    for data, pool in (("demo", 2), ("imbalanced", 2), ("demo_large", 3)):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=["stage=demo_data", f"data={data}",
                                                           f"data.root={tmp_path / data}"])
        assert run_stage(cfg)["pool"]["images"] == pool
    descriptions = {d: json.loads((tmp_path / d / "pool.json").read_text())["info"]["description"]
                    for d in ("demo", "imbalanced")}
    assert "imbalanced" in descriptions["imbalanced"] and "imbalanced" not in descriptions["demo"]
