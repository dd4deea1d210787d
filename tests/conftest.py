"""Shared fixtures: real services for integration tests (Label Studio server, MLflow store, demo data).

Integration tests are marked `integration`; `pytest -m "not integration"` runs the fast unit tests alone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from loop.clients.ls_server import LabelStudioServer, free_port
from loop.clients.media import MediaConfig, MediaFetcher
from loop.clients.services import spawn, stop, wait_http
from loop.common.demo_data import ensure, generate
from loop.common.paths import REPO_ROOT

LS_VENV = Path(os.environ.get("LABEL_STUDIO_VENV", REPO_ROOT / ".venv-labelstudio"))


def pytest_configure(config):
    """A run stopped by SIGTERM (a CI timeout, `kill`) unwinds as Ctrl-C does: the running test's `with` blocks
    and every fixture's teardown stop the servers they started. Python's default for SIGTERM ends the process
    at once, leaving Label Studio and the backends the fixtures started running on their ports."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The demo dataset (data/demo), generated here if setup has not done it yet."""
    return ensure(REPO_ROOT / "data" / "demo")


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """A small dataset of the same kind for quick training tests (24 train, 8 test images)."""
    root = tmp_path_factory.mktemp("small_demo")
    generate(root, splits={"pool": 24, "test": 8}, seed=7)
    return root


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


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory):
    """A real Label Studio server on a free loopback port, own data dir, admin user; legacy tokens off."""
    data_dir = tmp_path_factory.mktemp("labelstudio")
    server = LabelStudioServer(venv=LS_VENV, data_dir=data_dir, username="admin@example.com",
                               password="test-admin-pw", enable_legacy_tokens=False,
                               local_files_root=data_dir.parent)
    with server:
        yield server


@pytest.fixture(scope="session")
def ls_token(ls_server) -> str:
    """A personal access token created the way a user does it (log in, Account & Settings → create)."""
    return ls_server.personal_access_token()


@pytest.fixture(scope="session")
def ls_client(ls_server, ls_token):
    from loop.clients.labelstudio import connect

    return connect(ls_server.url, ls_token)


@pytest.fixture(scope="session")
def ls_fetcher(ls_server, ls_token):
    """The backend's guarded image fetcher, pointed at the test Label Studio with the test token."""
    with MediaFetcher(MediaConfig(ls_url=ls_server.url, api_key=ls_token)) as fetcher:
        yield fetcher


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory):
    """A real `mlflow server` process on SQLite with --serve-artifacts, as teams deploy it: clients upload and
    download artifacts through the server, never from its folders. Shared by the session (tests use their
    own model names)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    proc = spawn(cmd, root / "server.log", env={"MLFLOW_DISABLE_TELEMETRY": "true"})
    wait_http(f"http://127.0.0.1:{port}/health", proc, "mlflow server", root / "server.log", timeout_s=120)
    yield {"tracking_uri": f"http://127.0.0.1:{port}", "artifact_location": None, "artifacts": root / "artifacts"}
    stop(proc)


@pytest.fixture(params=["sqlite", "server"])
def any_store(request, tmp_path):
    """The registry paths run against both kinds of store: SQLite files, and a tracking server."""
    if request.param == "server":
        return request.getfixturevalue("tracking_server")
    return request.getfixturevalue("mlflow_store")


@pytest.fixture
def mlflow_store(tmp_path) -> dict[str, str]:
    """A real MLflow store (SQLite + artifact folder) in a temp dir; returns tracking/registry URIs."""
    db = tmp_path / "mlflow.db"
    artifacts = tmp_path / "mlartifacts"
    artifacts.mkdir()
    return {"tracking_uri": f"sqlite:///{db}", "artifact_location": artifacts.as_uri()}


def load_coco(path: Path) -> dict:
    return json.loads(Path(path).read_text())


DEMO_MODEL = dict(img_size=160, epochs=12, batch_size=16, lr=0.004, warmup_iters=50, seed=0)


@pytest.fixture(scope="session")
def demo_model(demo_data) -> dict:
    """A small RTMDet-tiny trained here on the demo data (a model that really detects shapes), as a slim
    checkpoint. Cached under runs/test-cache by its settings, so only the first session pays (~3 min)."""
    import hashlib

    from train.slim import make_slim
    from train.trainer import TrainSpec, read_classes, train

    key = hashlib.sha256(json.dumps(DEMO_MODEL, sort_keys=True).encode()
                         + (demo_data / "pool.json").read_bytes()).hexdigest()[:12]
    cache = REPO_ROOT / "runs" / "test-cache" / f"demo-model-{key}"
    slim = cache / "model.pth"
    if not (cache / "result.json").exists():
        s = DEMO_MODEL
        result = train(TrainSpec(config=REPO_ROOT / "train" / "configs" / "rtmdet_tiny_demo.py", data_root=demo_data,
                                 train_ann="pool.json", val_ann="test.json", work_dir=cache / "work",
                                 img_size=s["img_size"], epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                                 warmup_iters=s["warmup_iters"], val_interval=s["epochs"], seed=s["seed"]))
        config = next((cache / "work").glob("*.py"))
        make_slim(Path(result["checkpoint"]), slim, classes=read_classes(demo_data / "pool.json"),
                  config_text=config.read_text(), img_size=s["img_size"])
        (cache / "config.py").write_text(config.read_text())
        (cache / "result.json").write_text(json.dumps({k: result[k] for k in ("bbox_mAP", "bbox_mAP_50")}))
    return {"checkpoint": slim, "config": cache / "config.py", **json.loads((cache / "result.json").read_text())}
