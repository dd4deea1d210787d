"""Fault injection against a real MLflow tracking server process: stopped in the middle of a registration,
nothing half-made becomes a version, champion or challenger, and the registry says so in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loop.clients.ls_server import free_port
from loop.clients.registry import CHALLENGER, Registry
from loop.clients.services import spawn, stop, wait_http
from loop.common.errors import LoopError

pytestmark = pytest.mark.integration


def tracking_server(root: Path, port: int):
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    proc = spawn(cmd, root / "server.log", env={"MLFLOW_DISABLE_TELEMETRY": "true"})
    wait_http(f"http://127.0.0.1:{port}/health", proc, "mlflow server", root / "server.log", timeout_s=120)
    return proc


def test_a_tracking_server_stopped_while_registering_leaves_the_champion_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = tracking_server(tmp_path, port)
    try:
        registry = Registry(uri, "faults")
        model = tmp_path / "model"
        model.mkdir()
        (model / "model.pth").write_bytes(b"weights")
        with registry.run("first") as run:
            run.log_artifacts(model, "model")
        first = registry.register(run.run_id, {"note": "first"}).version
        registry.promote(first)

        with registry.run("second") as run:
            run.log_artifacts(model, "model")
        stop(proc)  # the server goes away between the logged artifacts and the registration
        with pytest.raises(LoopError, match="model registry at .* failed .*nothing was changed"):
            registry.register(run.run_id, {"note": "second"})
        with pytest.raises(LoopError, match="model registry"):
            registry.champion()  # not "no champion": a retrain must not think it is the first version
    finally:
        stop(proc)

    proc = tracking_server(tmp_path, port)
    try:
        assert registry.champion().version == first == registry.by_alias(CHALLENGER).version
        assert [int(v.version) for v in registry.client.search_model_versions("name='faults'")] == [first]
    finally:
        stop(proc)
