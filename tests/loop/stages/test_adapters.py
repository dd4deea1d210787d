"""The config -> plain-object adapters: recipes chosen by stages, one TrainSpec builder, one media config."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.common.errors import LoopError
from loop.common.paths import REPO_ROOT
from loop.stages.adapters import (
    labelstudio_api_key,
    labelstudio_server,
    media_config,
    serve_settings,
    train_spec,
)
from tests.loop.test_run import compose_cfg


def test_train_spec_takes_the_recipe_then_the_stage_s_changes(tmp_path):
    cfg = compose_cfg("stage=retrain", "train=smoke", "model.img_size=160", "seed=3")
    spec = train_spec(cfg, tmp_path, train_ann="train.json", data_root=tmp_path / "export")
    assert (spec.epochs, spec.batch_size, spec.num_workers, spec.warmup_iters, spec.lr) == (1, 8, 0, 1, 0.0005)
    assert (spec.img_size, spec.seed, spec.train_ann, spec.data_root) == (160, 3, "train.json", tmp_path / "export")
    assert spec.config == REPO_ROOT / "train" / "configs" / "rtmdet_tiny_demo.py" and spec.work_dir == tmp_path
    with pytest.raises(TypeError, match="no field 'epoch'"):
        train_spec(cfg, tmp_path, epoch=3)


@pytest.mark.parametrize("stage, recipe, img_size", [("train", "default", None), ("demo", "demo", 160),
                                                     ("simulate", "simulate", 160)])
def test_each_stage_picks_its_recipe_and_the_command_line_wins(stage, recipe, img_size, tmp_path):
    expected = compose_cfg(f"stage={stage}")
    chosen = compose_cfg(f"train={recipe}")
    assert expected.train == chosen.train and expected.model.img_size == img_size
    overridden = compose_cfg(f"stage={stage}", "train=smoke", "model.img_size=96")
    assert overridden.train.epochs == 1 and overridden.model.img_size == 96


def test_every_fetcher_gets_the_same_media_settings(tmp_path):
    """Serving, pre-annotation and export read task images with the same guarded fetcher settings, local
    files root included (pre-annotation once went without it)."""
    cfg = compose_cfg("stage=serve", "labelstudio.url=http://ls:8080", f"backend.image_dir={tmp_path / 'up'}",
                      f"backend.local_files_root={tmp_path}", "backend.allow_hosts=[10.0.0.0/8]")
    media = media_config(cfg)
    assert media.ls_url == "http://ls:8080" and media.image_dir == tmp_path / "up"
    assert media.local_files_root == tmp_path and media.allow_hosts == ["10.0.0.0/8"]
    assert serve_settings(cfg, checkpoint="x.pth").media() == media
    assert Path(serve_settings(cfg, checkpoint="x.pth").cache_dir).name == "serve-cache"


def test_the_token_comes_from_the_key_file_when_one_is_given(tmp_path):
    key = tmp_path / "ls-token"
    key.write_text("token-from-file\n")
    assert labelstudio_api_key(compose_cfg(f"labelstudio.api_key_file={key}")) == "token-from-file"
    assert media_config(compose_cfg(f"labelstudio.api_key_file={key}")).api_key == "token-from-file"
    with pytest.raises(LoopError, match="api_key_file=.* cannot be read"):
        labelstudio_api_key(compose_cfg(f"labelstudio.api_key_file={tmp_path / 'missing'}"))


def test_the_team_profile_is_configuration_only(monkeypatch):
    monkeypatch.setenv("POSTGRE_HOST", "db.internal")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    team = compose_cfg("stage=labelstudio", "labelstudio=team", "registry=team")
    local = compose_cfg("stage=labelstudio")
    assert labelstudio_server(team).database == {"host": "db.internal", "port": "5432", "name": "labelstudio",
                                                 "user": "labelstudio"}
    assert labelstudio_server(local).database is None  # SQLite, Label Studio's default
    assert team.registry.tracking_uri == "http://mlflow.internal:5000"
    # everything else as the embedded default; no password anywhere in the config
    assert {k: v for k, v in team.labelstudio.server.items() if k != "database"} == \
        {k: v for k, v in local.labelstudio.server.items() if k != "database"}
    assert "password" not in str(team.labelstudio.server.database).lower()
