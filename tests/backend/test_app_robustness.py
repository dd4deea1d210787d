"""The backend as a real process: bad input gets a 4xx with a reason, broken images fail only their task,
and the server keeps answering."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from loop.clients.ls_server import free_port
from loop.common.label_configs import rectangle_labels_config
from loop.common.paths import REPO_ROOT
from tests.fuzzing import fuzz
from tests.helpers import WITHOUT_OPENVINO_DEVICES, forced_refusal
from tests.loop.test_run import cli

pytestmark = pytest.mark.integration

CONFIG = rectangle_labels_config(["circle", "square", "triangle", "star"])


@pytest.fixture(scope="module")
def media(tmp_path_factory, demo_data):
    """An upload folder (the tutorials' image_dir) with every kind of awkward file."""
    root = tmp_path_factory.mktemp("upload")
    d = root / "1"
    d.mkdir()
    good = demo_data / "images" / "test_0001.jpg"
    shutil.copy(good, d / "good.jpg")
    img = Image.open(good).convert("RGB")
    img.convert("L").save(d / "gray.png")
    img.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    Image.fromarray((np.asarray(img.convert("L"), dtype=np.uint16) * 257)).save(d / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise back to `img`
    img.transpose(Image.Transpose.ROTATE_90).save(d / "exif.jpg", quality=95, exif=exif.tobytes())
    img.resize((img.width * 20, img.height * 20)).save(d / "huge.jpg", quality=80)  # > 4096 px: decoded smaller
    (d / "empty.jpg").write_bytes(b"")
    (d / "corrupt.jpg").write_bytes(good.read_bytes()[:300])
    return root


@pytest.fixture(scope="module")
def server(start_backend, demo_model, media):
    return start_backend(f"backend.checkpoint={demo_model['checkpoint']}", f"backend.image_dir={media}",
                         "backend.score_threshold=0.3", "backend.max_body_mb=1",
                         f"labelstudio.url=http://127.0.0.1:{free_port()}", api_key="x")


def task(i, name):
    return {"id": i, "data": {"image": f"/data/upload/1/{name}"}}


def predict(url, tasks, **kw):
    return httpx.post(f"{url}/predict", json={"tasks": tasks, "label_config": CONFIG, **kw}, timeout=120)


def boxes(result):
    return sorted((r["value"]["rectanglelabels"][0], r["value"]["x"] * r["original_width"] / 100,
                   r["value"]["y"] * r["original_height"] / 100) for r in result["result"])


def test_a_batch_with_broken_images_fails_only_those_tasks(server):
    names = ["good.jpg", "missing.jpg", "gray.png", "empty.jpg", "cmyk.jpg", "corrupt.jpg", "deep16.png",
             "exif.jpg", "huge.jpg", "../../etc/passwd"]
    r = predict(server["url"], [task(i, n) for i, n in enumerate(names)])
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == len(names)
    by_name = dict(zip(names, results))
    good = boxes(by_name["good.jpg"])
    assert good, "the demo model finds shapes in this image"
    for broken in ("missing.jpg", "empty.jpg", "corrupt.jpg", "../../etc/passwd"):
        assert by_name[broken]["result"] == [] and by_name[broken]["score"] == 0
    # The same picture in other encodings gives the same labels at about the same places.
    for same, scale in (("cmyk.jpg", 1), ("exif.jpg", 1), ("huge.jpg", 20)):
        got = boxes(by_name[same])
        assert [g[0] for g in got] == [g[0] for g in good], same
        assert np.allclose([np.array(g[1:]) / scale for g in got], [g[1:] for g in good], atol=4), same
    assert all(r["value"]["width"] > 0 for r in by_name["gray.png"]["result"] + by_name["deep16.png"]["result"])
    exif = by_name["exif.jpg"]["result"][0]
    assert (exif["original_width"], exif["original_height"]) == \
        (by_name["good.jpg"]["result"][0]["original_width"], by_name["good.jpg"]["result"][0]["original_height"])
    assert by_name["huge.jpg"]["result"][0]["original_width"] == 20 * by_name["good.jpg"]["result"][0]["original_width"]
    log = server["log"].read_text()
    assert "missing.jpg" not in log or "empty prediction" in log
    assert "leaves the allowed folder" in log and "cannot be decoded" in log


@pytest.mark.parametrize("body,status,reason", [
    (b"not json", 400, "not JSON"),
    (b"[1, 2]", 400, "tasks"),
    (b'{"tasks": "x"}', 400, "tasks"),
    (b'{"tasks": []}', 400, "tasks"),
    (b'{"tasks": [1]}', 400, "data"),
    (b'{"tasks": [{"data": "x"}]}', 400, "data"),
    (b'{"tasks": [{"id": 1, "data": {}}]}', 400, "label config"),
    (b'{"tasks": [{"id": 1, "data": {}}], "label_config": "<View><Text name=\\"t\\" value=\\"$t\\"/></View>"}',
     400, "RectangleLabels"),
    (b'{"tasks": [{"id": 1, "data": {}}], "label_config": "<View"}', 400, "not valid XML"),
    (b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
    (b'{"tasks": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply"),
])
def test_bad_predict_requests_get_a_4xx_with_a_reason(server, body, status, reason):
    r = httpx.post(f"{server['url']}/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and reason in r.json()["error"]


def test_huge_bodies_are_refused(server):
    r = httpx.post(f"{server['url']}/predict", content=b"x" * (2 * 1024 * 1024))
    assert r.status_code == 413
    r = httpx.post(f"{server['url']}/setup", content=(b"y" * 1024 for _ in range(2048)))  # chunked, no length
    assert r.status_code == 413


def test_a_task_without_the_image_field_gets_an_empty_result(server):
    r = predict(server["url"], [{"id": 1, "data": {"text": "no image"}}, task(2, "good.jpg")])
    assert r.status_code == 200
    assert r.json()["results"][0]["result"] == [] and r.json()["results"][1]["result"]


def test_setup_health_and_webhooks_answer_at_once(server):
    url = server["url"]
    t = time.perf_counter()
    health = httpx.get(f"{url}/health").json()
    setup = httpx.post(f"{url}/setup", json={"project": "1.1700000000", "schema": CONFIG}).json()
    assert time.perf_counter() - t < 1.0  # Label Studio allows 1 s for /health and 3 s for /setup
    assert health["status"] == "UP" and setup["model_version"] == health["model_version"]
    assert (health["precision"], health["execution_provider"]) in (("fp32", "torch"), ("fp32", "CPUExecutionProvider"))
    assert httpx.post(f"{url}/setup", json={"schema": "<View"}).status_code == 400
    for action in ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED",
                   "TASKS_CREATED", "TASKS_DELETED", "PROJECT_UPDATED", "START_TRAINING"):
        t = time.perf_counter()
        r = httpx.post(f"{url}/webhook", json={"action": action, "project": {"id": 1}, "annotation": {"id": 2}})
        assert r.status_code == 200 and time.perf_counter() - t < 1.0
    job = r.json()["job"]  # a real retrain job, in its own process
    again = httpx.post(f"{url}/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}).json()
    assert again["job"] == job and again["joined"] is True  # a second click joins the running job
    for _ in range(120):
        state = httpx.get(f"{url}/jobs/{job}").json()
        if state["state"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    # No Label Studio at the configured URL: the job fails and says why; the server is unaffected.
    assert state["state"] == "failed" and "cannot reach Label Studio" in state["error"], state
    assert httpx.get(f"{url}/jobs/nope").status_code == 404
    assert httpx.post(f"{url}/webhook", json={"no": "action"}).status_code == 400
    assert httpx.get(f"{url}/versions").json()["versions"] == [health["model_version"]]
    metrics = httpx.get(f"{url}/metrics").json()
    assert metrics["bad_requests"] >= 1 and metrics["tasks"] >= 1 and metrics["predict_latency_ms"]["p50"] > 0


def test_server_survives_everything(server):
    assert server["proc"].poll() is None
    assert httpx.get(f"{server['url']}/health").status_code == 200


def test_a_bf16_server_that_cannot_run_stops_at_start_with_one_line(demo_model, media, tmp_path):
    """Forced on every machine as on AMD EPYC (OpenVINO lists no device), and with the torch runtime: the
    server stops at start with one line saying what to change. A bf16 server that runs is measured where
    OpenVINO offers BF16, by bench/serve_bench.py's (d) row."""
    overrides = [f"backend.checkpoint={demo_model['checkpoint']}", f"backend.image_dir={media}",
                 "backend.precision=bf16", "backend.score_threshold=0.3", f"work_dir={tmp_path}"]
    r = subprocess.run([sys.executable, "-c", WITHOUT_OPENVINO_DEVICES, "stage=serve", *overrides,
                        f"backend.port={free_port()}"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert r.returncode == 1 and forced_refusal() in error_line(r), r.stdout + r.stderr
    r = cli("stage=serve", *overrides, "backend.runtime=torch", f"backend.port={free_port()}")
    assert r.returncode == 1 and "use backend.runtime=onnx" in error_line(r), r.stdout + r.stderr


def error_line(r) -> str:
    """The one ERROR line a stage logs when it stops on a problem the user can fix."""
    errors = [line for line in (r.stdout + r.stderr).splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, errors
    return errors[0]


def test_fuzzing_gets_no_5xx_and_leaves_the_server_alive(server):
    """The fuzzer of bench/fuzz.py at a small budget: hostile bodies and URLs, then schemathesis cases from
    the server's own OpenAPI document (the bench runs 10,000+ requests)."""
    outcome = fuzz(server["url"], 600)
    assert outcome.requests >= 600
    assert not outcome.server_errors, outcome.server_errors[:10]
    assert server["proc"].poll() is None and httpx.get(f"{server['url']}/health").status_code == 200


def test_fuzzing_two_workers_behind_basic_auth_gets_no_5xx(start_backend, demo_model, media):
    """The same budget against the deployment shape: basic auth on (the fuzzer sends the credentials, so every
    handler is reached) and two server workers sharing one job table."""
    server = start_backend(f"backend.checkpoint={demo_model['checkpoint']}", f"backend.image_dir={media}",
                           "backend.workers=2", "backend.max_body_mb=1", f"labelstudio.url=http://127.0.0.1:{free_port()}",
                           api_key="x", env={"BASIC_AUTH_USER": "fuzz", "BASIC_AUTH_PASS": "fuzz-pw"})
    outcome = fuzz(server["url"], 600, auth=("fuzz", "fuzz-pw"))
    assert outcome.requests >= 600
    assert not outcome.server_errors, outcome.server_errors[:10]
    assert server["proc"].poll() is None and httpx.get(f"{server['url']}/health").status_code == 200
    assert httpx.get(f"{server['url']}/jobs").status_code == 401
