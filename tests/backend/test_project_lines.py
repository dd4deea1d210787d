"""One model line per project: two real Label Studio projects with different label sets on one backend, each
answered with its own champion; a project without one gets the base model until it has one; a project the
backend is not configured for is refused by name."""

from __future__ import annotations

import httpx
import pytest

from loop.clients import labelstudio
from loop.clients.registry import Registry
from loop.clients.services import wait_http
from loop.common.label_configs import rectangle_labels_config
from tests.backend.conftest import COCO_NAMED, publish
from tests.helpers import make_demo_project

pytestmark = pytest.mark.integration

SHAPES = ["circle", "square", "triangle", "star"]


def _labels(client, project_id) -> tuple[set[str], set[str]]:
    tasks = labelstudio.list_tasks(client, project_id)
    return ({r["value"]["rectanglelabels"][0] for t in tasks for p in t["predictions"] for r in p["result"]},
            {p["model_version"] for t in tasks for p in t["predictions"]})


def test_two_projects_each_get_their_own_champion(ls_server, ls_token, ls_client, demo_data, demo_model,
                                                  coco_named_checkpoint, mlflow_store, start_backend, tmp_path):
    shapes, _, _ = make_demo_project(ls_client, demo_data, 3, "lines-shapes", split="test")
    coco, _, _ = make_demo_project(ls_client, demo_data, 3, "lines-coco", split="test")
    ls_client.projects.update(coco.id, label_config=rectangle_labels_config([n.replace(" ", "_") for n in COCO_NAMED]))
    fresh, _, _ = make_demo_project(ls_client, demo_data, 2, "lines-fresh", split="test")
    stranger, _, _ = make_demo_project(ls_client, demo_data, 1, "lines-stranger", split="test")

    def registry(project):
        return Registry(mlflow_store["tracking_uri"], f"labelloop-project-{project.id}",
                        artifact_location=mlflow_store["artifact_location"])

    registry(shapes).promote(publish(registry(shapes), demo_model, tmp_path, "shapes"))
    coco_line = registry(coco)
    coco_line.promote(publish(coco_line, demo_model, tmp_path, "coco", checkpoint=coco_named_checkpoint,
                              classes=COCO_NAMED))
    url = start_backend("backend.serve_alias=champion", "backend.poll_s=1", f"labelstudio.url={ls_server.url}",
                        f"backend.checkpoint={demo_model['checkpoint']}",  # the base model
                        f"backend.projects=[{shapes.id},{coco.id},{fresh.id}]",
                        f"registry.tracking_uri={mlflow_store['tracking_uri']}", api_key=ls_token)["url"]

    for project in (shapes, coco, fresh):
        labelstudio.connect_ml_backend(ls_client, project.id, url)
        labelstudio.retrieve_predictions(ls_client, project.id)
    labels, versions = _labels(ls_client, shapes.id)
    assert versions == {f"labelloop-project-{shapes.id}:v1"} and labels and labels <= set(SHAPES)
    labels, versions = _labels(ls_client, coco.id)
    assert versions == {f"labelloop-project-{coco.id}:v1"} and labels
    assert labels <= {n.replace(" ", "_") for n in COCO_NAMED}
    _, versions = _labels(ls_client, fresh.id)
    assert len(versions) == 1 and versions.pop().startswith("model-")  # the base checkpoint, no champion yet

    # the fresh project's first champion is followed, and only there
    fresh_line = registry(fresh)
    fresh_line.promote(publish(fresh_line, demo_model, tmp_path, "fresh"))
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/x.jpg"}}], "project": f"{fresh.id}.1700000000",
            "label_config": rectangle_labels_config(SHAPES)}
    fresh_v1 = f"labelloop-project-{fresh.id}:v1"  # its watcher swaps it in: /health lists each line's version
    wait_http(f"{url}/health", what="the fresh project's first champion", timeout_s=60,
              ready=lambda reply: reply.json()["model_lines"].get(f"labelloop-project-{fresh.id}") == fresh_v1)
    assert httpx.post(f"{url}/predict", json=body).json()["model_version"] == f"labelloop-project-{fresh.id}:v1"
    body["project"] = f"{shapes.id}.1700000000"
    assert httpx.post(f"{url}/predict", json=body).json()["model_version"] == f"labelloop-project-{shapes.id}:v1"

    # a project this backend is not configured for: refused by name, for predictions and for training
    body["project"] = f"{stranger.id}.1700000000"
    refused = httpx.post(f"{url}/predict", json=body)
    assert refused.status_code == 403 and f"project {stranger.id} is not served" in refused.json()["error"]
    train = httpx.post(f"{url}/webhook", json={"action": "START_TRAINING", "project": {"id": stranger.id}})
    assert train.status_code == 403 and httpx.get(f"{url}/jobs").json()["jobs"] == []
    with pytest.raises(Exception, match="403|not served"):
        labelstudio.connect_ml_backend(ls_client, stranger.id, url)
    health = httpx.get(f"{url}/health").json()
    assert set(health["model_lines"]) == {f"labelloop-project-{p.id}" for p in (shapes, coco, fresh)}
