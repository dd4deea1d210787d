"""The registry fails closed: only MLflow's "does not exist" reads as "no champion"; an interrupted promotion
never forgets the champion before it."""

from __future__ import annotations

import pytest

from loop.clients.ls_server import free_port
from loop.clients.registry import Registry, is_missing
from loop.common.errors import LoopError


@pytest.mark.parametrize("code, message, missing", [
    ("RESOURCE_DOES_NOT_EXIST", "Registered Model with name=m not found", True),
    ("INVALID_PARAMETER_VALUE", "Registered model alias champion not found.", True),
    ("INVALID_PARAMETER_VALUE", "Invalid value for name", False),
    ("INTERNAL_ERROR", "API request to http://host:5000/api/2.0/mlflow/registered-models/alias failed", False),
    ("PERMISSION_DENIED", "not allowed", False),
    ("UNAUTHENTICATED", "bad token", False),
])
def test_only_does_not_exist_means_missing(code, message, missing):
    assert is_missing(code, message) is missing


def test_an_unreachable_tracking_server_is_an_error_not_an_empty_registry(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    registry = Registry(f"http://127.0.0.1:{free_port()}", "nothing-listens")
    with pytest.raises(LoopError, match="failed while reading the alias 'champion'.*nothing was changed"):
        registry.champion()
    with pytest.raises(LoopError, match="model registry"):
        registry.promote(1)


@pytest.mark.integration
def test_an_interrupted_promotion_keeps_the_previous_champion_for_rollback(any_store, tmp_path, monkeypatch):
    registry = Registry(any_store["tracking_uri"], f"history-{tmp_path.name}",
                        artifact_location=any_store["artifact_location"])
    versions = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.pth").write_bytes(b"w")
        with registry.run(name) as run:
            run.log_artifacts(tmp_path / name, "model")
        versions.append(registry.register(run.run_id, {}).version)
    v1, v2, v3 = versions
    registry.promote(v1)
    registry.promote(v2)

    writes = []

    def stopped_after_one_write(real):
        def write(*args, **kwargs):
            writes.append(real.__name__)
            if len(writes) == 2:
                raise KeyboardInterrupt  # the process is stopped between promotion's two writes
            return real(*args, **kwargs)
        return write

    with monkeypatch.context() as patch:
        for name in ("set_registered_model_alias", "set_registered_model_tag"):
            patch.setattr(registry.client, name, stopped_after_one_write(getattr(registry.client, name)))
        with pytest.raises(KeyboardInterrupt):
            registry.promote(v3)
    assert len(writes) == 2
    assert registry.champion().version == v2  # the old champion still serves
    assert registry.promote(v3) == (v2, v3)   # the retry records v2 once
    assert registry.rollback() == (v3, v2)
    assert registry.rollback() == (v2, v1)
    with pytest.raises(LoopError, match="no earlier champion"):
        registry.rollback()
