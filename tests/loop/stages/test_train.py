"""stage=train as the README runs it: the slim model.pth it leaves is what `stage=serve` serves as written."""

from __future__ import annotations

import httpx
import pytest

from loop.clients.checkpoints import read_checkpoint
from tests.loop.test_run import cli

pytestmark = pytest.mark.integration


def test_stage_train_leaves_a_model_the_readme_serve_command_serves(small_demo, tmp_path, start_backend):
    run = cli("stage=train", "train=smoke", f"data.root={small_demo}", "model.img_size=128", f"work_dir={tmp_path}")
    assert run.returncode == 0, run.stderr[-2000:]
    model = next((tmp_path / "train").glob("*/model.pth"))
    assert "serve it with backend.checkpoint=" + str(model) in run.stdout + run.stderr
    _, meta, keys = read_checkpoint(model)  # safe: no unpickling
    assert keys == ["state_dict", "meta"] and meta["classes"] == ["circle", "square", "triangle", "star"]
    assert (model.parent / "epoch_1.pth").is_file() and (model.parent / "config.py").is_file()

    backend = start_backend(f"backend.checkpoint={model}")  # the README's example, no backend.config
    health = httpx.get(f"{backend['url']}/health").json()
    assert health["model_class"] == "RTMDet" and health["input_size"] == 128
    assert health["model_version"].startswith("model-")
