"""Label Studio's Start Training button, through the real server: one job, joined by a second click, a new
version in the registry, and the backend serving it."""

from __future__ import annotations

import time

import httpx
import pytest

from loop.clients import labelstudio
from loop.clients.registry import Registry
from tests.backend.conftest import publish
from tests.helpers import command_lines, make_demo_project, submit_ground_truth

pytestmark = pytest.mark.integration


def test_start_training_button(ls_server, ls_token, ls_client, demo_data, demo_model, mlflow_store, start_backend,
                               tmp_path):
    project, gt, file_of = make_demo_project(ls_client, demo_data, 24, "start-training")
    submit_ground_truth(ls_client, gt, file_of)
    line = f"labelloop-project-{project.id}"  # the project's own model line
    registry = Registry(mlflow_store["tracking_uri"], line, artifact_location=mlflow_store["artifact_location"])
    registry.promote(publish(registry, demo_model, tmp_path, "v1"))

    backend = start_backend(
        "backend.serve_alias=champion", "backend.poll_s=1", f"labelstudio.url={ls_server.url}",
        f"registry.tracking_uri={mlflow_store['tracking_uri']}",
        f"registry.artifact_location={mlflow_store['artifact_location']}",
        "registry.promotion_margin=-1",  # "enough improvement": any new version is promoted here
        "train=smoke",
        "model.img_size=160", "export.val_fraction=0.3", api_key=ls_token)
    url = backend["url"]
    ml = labelstudio.connect_ml_backend(ls_client, project.id, url)

    t = time.perf_counter()
    ls_client.ml.train(ml["id"])  # Label Studio sends START_TRAINING to /webhook
    assert time.perf_counter() - t < 5  # answered at once, training runs elsewhere
    ls_client.ml.train(ml["id"])  # a second click joins the running job
    jobs = httpx.get(f"{url}/jobs").json()["jobs"]
    assert len(jobs) == 1 and jobs[0]["project_id"] == project.id

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/jobs/{jobs[0]['id']}").json()
        if job["state"] not in ("queued", "running"):
            break
        assert not any(ls_token.encode() in line for line in command_lines())  # the job's own command line too
        time.sleep(1)
    assert job["state"] == "succeeded", job
    assert job["version"] == 2 and registry.champion().version == 2
    while time.monotonic() < deadline and httpx.get(f"{url}/health").json()["model_version"] != f"{line}:v2":
        time.sleep(0.5)
    assert httpx.get(f"{url}/health").json()["model_version"] == f"{line}:v2"
    # The token reached the backend and its retrain job through their environments only: not on a command line
    # (ps), in the job's files or log, in Hydra's saved configs, or in MLflow.
    assert not any(ls_token.encode() in line for line in command_lines())
    work = backend["log"].parent
    leaks = [p for p in work.rglob("*") if p.is_file() and ls_token.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert (work / "jobs" / f"{jobs[0]['id']}.log").is_file()
    version = registry.get(2)
    assert ls_token not in repr(version.tags) and ls_token not in repr(registry.client.get_run(version.run_id).data)
