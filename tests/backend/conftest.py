"""Backend fixtures: checkpoints the tests build and the backend started as a real process."""

from __future__ import annotations

import json
import shutil
import sys
import time

import pytest

from loop.clients.ls_server import free_port
from loop.clients.services import spawn, stop, wait_http

# The demo model's classes renamed to COCO classes as MMDetection writes them (spaces), so the Label Studio
# tutorial's COCO label config (underscores) applies.
COCO_NAMED = ["sports ball", "tv", "traffic light", "kite"]


@pytest.fixture(scope="session")
def coco_named_checkpoint(demo_model, tmp_path_factory):
    import torch

    ckpt = torch.load(demo_model["checkpoint"], weights_only=True)
    ckpt["meta"]["classes"] = COCO_NAMED
    path = tmp_path_factory.mktemp("ckpt") / "coco_named.pth"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="session")
def start_backend(tmp_path_factory):
    """start_backend(*overrides, api_key=None) -> {"url", "cold_start_s", "log", "proc"}: `python -m loop.run
    stage=serve`, the Label Studio token in its environment as a user passes it (never on the command line)."""
    procs = []

    def start(*overrides: str, api_key: str | None = None, env: dict[str, str] | None = None) -> dict:
        port = free_port()
        log = tmp_path_factory.mktemp("backend") / "serve.log"
        cmd = [sys.executable, "-m", "loop.run", "stage=serve", f"backend.port={port}", f"work_dir={log.parent}",
               *overrides]
        started = time.monotonic()
        proc = spawn(cmd, log, env={"LABEL_STUDIO_API_KEY": api_key or "", **(env or {})})
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc, "stage=serve", log, timeout_s=120)
        return {"url": url, "cold_start_s": time.monotonic() - started, "log": log, "proc": proc}

    yield start
    for proc in procs:
        stop(proc)


def publish(registry, demo_model: dict, tmp_path, name: str, corrupt: bool = False) -> int:
    """Register the demo model as a version the way retrain does (model/ artifacts first, then the version)."""
    model = tmp_path / name / "model"
    model.mkdir(parents=True)
    if corrupt:
        (model / "model.pth").write_bytes(b"\x00garbage" * 100)
    else:
        shutil.copy(demo_model["checkpoint"], model / "model.pth")
    shutil.copy(demo_model["config"], model / "config.py")
    (model / "classes.json").write_text(json.dumps(["circle", "square", "triangle", "star"]))
    with registry.run(name) as run:
        run.log_artifacts(model, "model")
    return registry.register(run.run_id, {"note": name}).version
