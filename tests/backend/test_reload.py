"""The backend follows the registry's champion while clients keep predicting (real process, real MLflow)."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

from loop.clients.registry import Registry
from loop.clients.services import wait_http
from loop.common.label_configs import rectangle_labels_config
from tests.backend.conftest import publish

pytestmark = pytest.mark.integration

CONFIG = rectangle_labels_config(["circle", "square", "triangle", "star"])


@pytest.fixture(params=[(1, "mlflow_store"), (2, "mlflow_store"), (1, "tracking_server")],
                ids=["1-worker", "2-workers", "tracking-server"])
def served(request, start_backend, demo_model, demo_data, tmp_path):
    workers, store = request.param
    mlflow_store = request.getfixturevalue(store)
    name = f"follow-test-{workers}-{store}"
    registry = Registry(mlflow_store["tracking_uri"], name, artifact_location=mlflow_store["artifact_location"])
    v1 = publish(registry, demo_model, tmp_path, "v1")
    registry.promote(v1)
    media = tmp_path / "media" / "1"
    media.mkdir(parents=True)
    shutil.copy(demo_data / "images" / "test_0001.jpg", media / "a.jpg")
    backend = start_backend("backend.serve_alias=champion", f"registry.tracking_uri={mlflow_store['tracking_uri']}",
                            f"registry.model_name={name}", "backend.poll_s=1", f"backend.image_dir={media.parent}",
                            f"backend.workers={workers}")
    return registry, backend, name


def test_promotions_are_followed_without_failed_requests(served, demo_model, tmp_path):
    registry, backend, name = served
    url = backend["url"]
    assert httpx.get(f"{url}/health").json()["model_version"] == f"{name}:v1"

    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client():
        with httpx.Client(timeout=30) as http:
            for _ in range(2000):  # bounded
                if stop.is_set():
                    return
                r = http.post(f"{url}/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}}],
                                                      "label_config": CONFIG})
                ok = r.status_code == 200 and r.json()["results"][0]["result"] != []
                seen.append((time.monotonic(), 200 if ok else r.status_code, r.json().get("model_version", "?")))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        v2 = publish(registry, demo_model, tmp_path, "v2")
        promoted_at = time.monotonic()
        registry.promote(v2)
        deadline = promoted_at + 60
        while time.monotonic() < deadline and not all(v == f"{name}:v{v2}" for _, _, v in seen[-6:]):
            time.sleep(0.2)
        first_new = next(t for t, _, v in seen if v == f"{name}:v{v2}")
        assert first_new - promoted_at < 30  # poll interval 1 s + loading beside the running model

        bad = publish(registry, demo_model, tmp_path, "v3", corrupt=True)
        registry.promote(bad)
        time.sleep(4)
        health = httpx.get(f"{url}/health").json()
        assert health["model_version"] == f"{name}:v{v2}"
        assert health["reload_error"]["version"] == bad and "cannot be loaded" in health["reload_error"]["error"]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(seen) > 10
    assert all(status == 200 for _, status, _ in seen), [s for s in seen if s[1] != 200][:5]
    assert seen[-1][2] == f"{name}:v{v2}"
    assert "refusing version" in backend["log"].read_text()


def test_a_registry_that_stops_answering_leaves_the_model_serving(start_backend, demo_model, demo_data, mlflow_store,
                                                                   tmp_path):
    """Fault injection: the MLflow store is garbage for a while (as a broken or unreachable tracking server
    would answer); the backend keeps its model, says registry_unreachable in /health, and recovers."""
    registry = Registry(mlflow_store["tracking_uri"], "outage", artifact_location=mlflow_store["artifact_location"])
    registry.promote(publish(registry, demo_model, tmp_path, "v1"))
    media = tmp_path / "media" / "1"
    media.mkdir(parents=True)
    shutil.copy(demo_data / "images" / "test_0001.jpg", media / "a.jpg")
    url = start_backend("backend.serve_alias=champion", f"registry.tracking_uri={mlflow_store['tracking_uri']}",
                        "registry.model_name=outage", "backend.poll_s=1", f"backend.image_dir={media.parent}")["url"]
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}}], "label_config": CONFIG}
    db = mlflow_store["tracking_uri"].removeprefix("sqlite:///")
    saved = tmp_path / "mlflow.db.saved"
    shutil.copy(db, saved)

    def health_until(condition):
        wait_http(f"{url}/health", what="the backend's /health", timeout_s=120, ready=lambda r: condition(r.json()))
        return httpx.get(f"{url}/health").json()

    try:
        with open(db, "r+b") as fh:
            fh.write(b"\x00not a database\x00" * 64)
        health = health_until(lambda h: h.get("registry_unreachable"))
        assert health["model_version"] == "outage:v1" and "registry unreachable" in health["reload_error"]["error"]
        r = httpx.post(f"{url}/predict", json=body, timeout=60)
        assert r.status_code == 200 and r.json()["results"][0]["result"]
    finally:
        shutil.copy(saved, db)
    health = health_until(lambda h: "registry_unreachable" not in h)
    assert health["model_version"] == "outage:v1" and "reload_error" not in health
