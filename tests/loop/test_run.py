"""The stage runner: composition of every config, and one-line errors for command-line mistakes."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
from loop.common.errors import UsageError
from loop.common.paths import CONF_DIR, REPO_ROOT
from loop.run import chatter_to_log_file, precheck
from loop.stages.catalogue import catalogue, resolve_entry

STAGES = catalogue()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loop.run", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_config_composes_and_resolves(name):
    cfg = compose_cfg(f"stage={name}")
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["stage"]["name"] == name
    assert plain["model"]["config"].endswith(".py")
    assert callable(resolve_entry(name))


def test_bare_run_lists_stages_and_exits_nonzero():
    r = cli()
    assert r.returncode == 2
    assert "usage: python -m loop.run stage=NAME" in r.stderr
    for name in STAGES:
        assert f"  {name} " in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_stage_is_one_line():
    r = cli("stage=nope")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "unknown stage 'nope'" in r.stderr and "train" in r.stderr


def test_unknown_key_is_one_line():
    r = cli("stage=train", "train.epochz=3")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "unknown config key 'train.epochz'" in r.stderr


def test_unknown_group_option_is_one_line():
    r = cli("stage=train", "data=nope")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "conf/data/" in r.stderr


def test_run_without_stage_raises_usage():
    with pytest.raises(UsageError, match="no stage given"):
        loop.run.run(compose_cfg())


@pytest.mark.parametrize("override", ["labelstudio.api_key=sekrit-123", "labelstudio.server.password=sekrit-123",
                                      "+registry.token=sekrit-123"])
def test_secrets_on_the_command_line_are_refused_before_anything_is_saved(override, tmp_path):
    r = cli("stage=export", override, f"work_dir={tmp_path}")
    assert r.returncode == 2 and "LABEL_STUDIO_API_KEY" in r.stderr and "ps" in r.stderr
    assert "sekrit-123" not in r.stdout + r.stderr and not (tmp_path / "hydra").exists()


def test_a_secret_set_to_null_or_a_key_file_is_fine():
    assert precheck(["stage=export", "labelstudio.api_key=null", "labelstudio.api_key_file=/run/secrets/ls"])


def test_mlflow_telemetry_is_off_in_the_stages_and_their_children():
    r = subprocess.run([sys.executable, "-c", "import os, sys; from loop.run import main; sys.argv = ['x']\n"
                        "try:\n    main()\nexcept SystemExit:\n    pass\n"
                        "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['DO_NOT_TRACK'])"],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                       env={k: v for k, v in os.environ.items()
                            if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")})
    assert r.stdout.split() == ["true", "true"], r.stdout + r.stderr


@pytest.mark.parametrize("stage, override", [("preannotate", "preannotate.queue_strategy=coreset"),
                                             ("loop", "preannotate.queue_strategy=entropy_diverse"),
                                             ("demo", "stage.strategy=coreset")])
def test_a_queue_strategy_the_queue_cannot_follow_is_refused_before_anything_runs(stage, override, tmp_path):
    # Label Studio and the registry point nowhere: the refusal must come before either is touched
    extra = ["stage.min_new_annotations=1"] if stage == "loop" else []
    r = cli(f"stage={stage}", override, "labelstudio.url=http://127.0.0.1:9", "labelstudio.project_id=1",
            "registry.tracking_uri=http://127.0.0.1:9", f"work_dir={tmp_path}", *extra)
    assert r.returncode != 0
    said = r.stdout + r.stderr
    assert ("cannot order Label Studio's queue; use entropy, least_confidence, entropy_sum, class_balanced_entropy, "
            "class_balanced_count, object_diverse, class_balanced_object_diverse or object_representative"
            in said), said
    assert [p.name for p in tmp_path.iterdir()] == ["hydra"]  # its own run log only: no store, no demo folder


def test_library_warnings_and_info_lines_go_to_the_log_file_not_the_console(tmp_path):
    root, console = logging.getLogger(), logging.StreamHandler(io.StringIO())
    logfile = logging.FileHandler(tmp_path / "loop.log")
    root.addHandler(console)
    root.addHandler(logfile)
    warned, level = logging.getLogger("py.warnings"), root.level
    root.setLevel(logging.INFO)  # as a stage runs (log_level)
    try:
        chatter_to_log_file()
        warnings.showwarning("pkg_resources is deprecated", UserWarning, "lib.py", 17)
        logging.getLogger("httpx").info('HTTP Request: GET http://ls/api/tasks/ "HTTP/1.1 200 OK"')
        logging.getLogger("httpx").warning("a library's warning")
        logging.getLogger("loop.stages.export").info("a step of ours")
        logging.getLogger("backend").warning("a warning of ours")
    finally:
        logging.captureWarnings(False)
        warned.handlers.clear()
        warned.propagate = True
        root.removeHandler(console)
        root.removeHandler(logfile)
        root.setLevel(level)
        logfile.close()
    said, logged = console.stream.getvalue(), (tmp_path / "loop.log").read_text()
    assert "pkg_resources" in logged and "HTTP Request" in logged and "a step of ours" in logged
    assert "pkg_resources" not in said and "HTTP Request" not in said
    assert "a library's warning" in said and "a step of ours" in said and "a warning of ours" in said
