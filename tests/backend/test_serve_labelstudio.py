"""stage=serve as a real process, connected to a real Label Studio (PAT auth, legacy tokens off)."""

from __future__ import annotations

import httpx
import pytest

from backend.images import decode
from backend.predictor import Predictor
from loop.clients import labelstudio
from loop.common.errors import LoopError
from loop.common.label_configs import COCO_LABELS, rectangle_labels_config
from loop.common.regions import region_to_bbox
from tests.backend.conftest import COCO_NAMED
from tests.helpers import make_demo_project
from tests.loop.test_run import cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def backend(start_backend, ls_server, ls_token, coco_named_checkpoint):
    """The backend reading uploads from Label Studio over HTTP with a personal access token."""
    return start_backend(f"backend.checkpoint={coco_named_checkpoint}", f"labelstudio.url={ls_server.url}",
                         api_key=ls_token)


def _stored_predictions(client, project_id):
    tasks = labelstudio.list_tasks(client, project_id)
    return {t["id"]: t for t in tasks}


def test_label_studio_retrieves_mapped_predictions(ls_client, backend, coco_named_checkpoint, demo_data):
    project, gt, file_of = make_demo_project(ls_client, demo_data, 6, "serve-coco", split="test")
    project = ls_client.projects.update(project.id, label_config=rectangle_labels_config(COCO_LABELS))
    labelstudio.connect_ml_backend(ls_client, project.id, backend["url"])
    labelstudio.retrieve_predictions(ls_client, project.id)
    tasks = _stored_predictions(ls_client, project.id)

    version = httpx.get(f"{backend['url']}/health").json()["model_version"]
    reference = Predictor.load(str(coco_named_checkpoint))
    found = 0
    for tid, task in tasks.items():
        assert len(task["predictions"]) == 1, task
        pred = task["predictions"][0]
        assert pred["model_version"] == version
        im, _ = gt[file_of[tid]]
        det = reference.predict([decode((demo_data / im["file_name"]).read_bytes()).bgr])[0]
        keep = det.scores >= 0.3
        want = sorted((COCO_NAMED[c].replace(" ", "_"), b.tolist()) for c, b in zip(det.labels[keep], det.boxes[keep]))
        got = sorted((r["value"]["rectanglelabels"][0], region_to_bbox(r, 0, 0)) for r in pred["result"])
        assert [g[0] for g in got] == [w[0] for w in want]
        for (_, gb), (_, (x0, y0, x1, y1)) in zip(got, want):
            x0, x1 = max(x0, 0), min(x1, im["width"])  # regions are clipped to the image
            y0, y1 = max(y0, 0), min(y1, im["height"])
            assert gb == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.05)
        for r in pred["result"]:
            assert (r["original_width"], r["original_height"]) == (im["width"], im["height"])
            assert r["from_name"] == "label" and r["to_name"] == "image" and 0 < r["score"] <= 1
        found += len(got)
    assert found > 0, "the model should find some shapes in 6 images"


def test_predicted_values_squash_model_classes(ls_client, backend, demo_data):
    config = rectangle_labels_config(["Round", "Angular", "Unicorn"],
                                     {"Round": "sports ball", "Angular": "tv,traffic light,kite"})
    project, _, _ = make_demo_project(ls_client, demo_data, 4, "serve-predicted-values", split="test")
    ls_client.projects.update(project.id, label_config=config)
    labelstudio.connect_ml_backend(ls_client, project.id, backend["url"])
    labelstudio.retrieve_predictions(ls_client, project.id)
    labels = {r["value"]["rectanglelabels"][0] for t in _stored_predictions(ls_client, project.id).values()
              for p in t["predictions"] for r in p["result"]}
    assert labels and labels <= {"Round", "Angular"}
    assert "Unicorn" in backend["log"].read_text()  # reported once at /setup


USER, PASSWORD = "labeler", "s3cret-pw"


@pytest.fixture(scope="module")
def guarded(start_backend, ls_server, ls_token, coco_named_checkpoint):
    """The backend with basic auth, the credentials in its environment as BASIC_AUTH_USER / BASIC_AUTH_PASS."""
    return start_backend(f"backend.checkpoint={coco_named_checkpoint}", f"labelstudio.url={ls_server.url}",
                         api_key=ls_token, env={"BASIC_AUTH_USER": USER, "BASIC_AUTH_PASS": PASSWORD})


def test_label_studio_connects_with_basic_auth_and_nobody_else_gets_in(ls_client, guarded, demo_data):
    url = guarded["url"]
    assert httpx.get(f"{url}/health").status_code == 200  # open: Label Studio's first check, load balancers
    body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/1/x.jpg"}}], "label_config": "<View/>"}
    for auth in (None, (USER, "wrong"), ("other", PASSWORD)):
        for method, path in (("POST", "/predict"), ("POST", "/setup"), ("POST", "/webhook"), ("GET", "/jobs"),
                             ("GET", "/metrics"), ("POST", "/train")):
            r = httpx.request(method, f"{url}{path}", json=body, auth=auth)
            assert r.status_code == 401 and r.json() == {"error": "unauthorized"}, (path, auth)
    assert httpx.get(f"{url}/metrics", auth=(USER, PASSWORD)).status_code == 200

    project, _, _ = make_demo_project(ls_client, demo_data, 3, "serve-basic-auth", split="test")
    ls_client.projects.update(project.id, label_config=rectangle_labels_config(COCO_LABELS))
    with pytest.raises(LoopError, match="could not connect the ML backend"):
        labelstudio.connect_ml_backend(ls_client, project.id, url)  # Label Studio's /setup check gets a 401
    labelstudio.connect_ml_backend(ls_client, project.id, url, basic_auth=(USER, PASSWORD))
    labelstudio.retrieve_predictions(ls_client, project.id)
    tasks = _stored_predictions(ls_client, project.id)
    assert all(len(t["predictions"]) == 1 for t in tasks.values())
    assert any(t["predictions"][0]["result"] for t in tasks.values())
    assert PASSWORD not in guarded["log"].read_text()


def test_a_server_reachable_from_other_machines_needs_auth(tmp_path):
    r = cli("stage=serve", "backend.checkpoint=unused.pth", "backend.host=0.0.0.0", f"work_dir={tmp_path}")
    said = r.stdout + r.stderr
    assert r.returncode == 1 and "BASIC_AUTH_USER" in said and "allow_unauthenticated" in said, said
