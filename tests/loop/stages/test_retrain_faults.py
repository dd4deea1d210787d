"""Fault injection around a real retrain process: `kill -9` while it uploads its artifacts to a tracking
server, and a disk that refuses the checkpoint. Nothing half-written becomes a version, `challenger` or
`champion`, and the next run recovers."""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from loop.clients.registry import CHALLENGER, Registry
from loop.clients.services import spawn, stop
from tests.backend.conftest import publish
from tests.helpers import key_file, make_demo_project, submit_ground_truth

pytestmark = pytest.mark.integration


class StallingProxy(ThreadingHTTPServer):
    """Forwards to the tracking server, but holds the first artifact upload of `model/` until released: the
    moment the test kills the retrain."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.uploading, self.release = upstream, threading.Event(), threading.Event()
        self.errors: list[BaseException] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _relay(self):
        server: StallingProxy = self.server
        try:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.command == "PUT" and "/mlflow-artifacts/artifacts/" in self.path and "/model/" in self.path:
                server.uploading.set()
                server.release.wait(300)
                return  # the client is gone by now
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            reply = httpx.request(self.command, server.upstream + self.path, content=body, headers=headers,
                                  timeout=120)
            self.send_response(reply.status_code)
            for key, value in reply.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("content-length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except BaseException as exc:  # recorded: the test fails on it
            server.errors.append(exc)
            raise

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay


@pytest.fixture(scope="module")
def labeled(ls_client, demo_data):
    project, gt, file_of = make_demo_project(ls_client, demo_data, 30, "retrain-faults")
    submit_ground_truth(ls_client, gt, file_of)
    return project


def _retrain_cmd(ls_server, token, project, tracking_uri, tmp_path, demo_model) -> list[str]:
    return [sys.executable, "-m", "loop.run", "stage=retrain", f"labelstudio.url={ls_server.url}",
            f"labelstudio.api_key_file={key_file(tmp_path, token)}", f"labelstudio.project_id={project.id}",
            f"work_dir={tmp_path}", f"registry.tracking_uri={tracking_uri}", "train=smoke", "model.img_size=160",
            "export.val_fraction=0.3", f"model.checkpoint={demo_model['checkpoint']}"]


def test_kill_9_while_uploading_artifacts_leaves_the_registry_as_it_was(ls_server, ls_token, labeled, demo_model,
                                                                         tracking_server, tmp_path):
    line = Registry(tracking_server["tracking_uri"], f"labelloop-project-{labeled.id}")
    first = publish(line, demo_model, tmp_path, "v1")
    line.promote(first)
    proxy = StallingProxy(tracking_server["tracking_uri"])
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proc = spawn(_retrain_cmd(ls_server, ls_token, labeled, proxy.url, tmp_path, demo_model), tmp_path / "killed.log")
    try:
        assert proxy.uploading.wait(300), (tmp_path / "killed.log").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        proxy.release.set()
        stop(proc)
        proxy.shutdown()
    assert not proxy.errors, proxy.errors
    versions = [int(v.version) for v in line.client.search_model_versions(f"name='{line.model_name}'")]
    assert versions == [first] and line.champion().version == first == line.by_alias(CHALLENGER).version
    runs = line.client.search_runs([line.client.get_experiment_by_name("labelloop").experiment_id],
                                   f"tags.project_id = '{labeled.id}'")
    assert [r.info.status for r in runs] == ["RUNNING"]  # the killed one: never finished, never registered

    again = spawn(_retrain_cmd(ls_server, ls_token, labeled, tracking_server["tracking_uri"], tmp_path, demo_model),
                  tmp_path / "again.log")
    assert again.wait(600) == 0, (tmp_path / "again.log").read_text()[-2000:]  # the lock died with the process
    latest = line.by_alias(CHALLENGER)
    assert latest.version == first + 1 and line.download(latest, tmp_path / "dl").joinpath("model.pth").is_file()
    killed = line.client.get_run(runs[0].info.run_id)  # the rerun closed the run the killed process left open
    assert killed.info.status == "FAILED" and "abandoned" in killed.data.tags


def test_a_disk_that_refuses_the_checkpoint_fails_the_retrain_in_one_line(ls_server, ls_token, labeled, demo_model,
                                                                           mlflow_store, tmp_path):
    """The file-size limit (RLIMIT_FSIZE) makes every write past 5 MB fail as a full disk does: the training
    log and export fit, the checkpoint does not."""
    cmd = _retrain_cmd(ls_server, ls_token, labeled, mlflow_store["tracking_uri"], tmp_path, demo_model)
    limit = "import resource, signal, os, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); " \
            "resource.setrlimit(resource.RLIMIT_FSIZE, (5 << 20, 5 << 20)); os.execv(sys.argv[1], sys.argv[1:])"
    proc = spawn([sys.executable, "-c", limit, *cmd], tmp_path / "full.log")
    assert proc.wait(600) == 1
    log = (tmp_path / "full.log").read_text()
    assert "Traceback" not in log and "no space" in log.lower(), log[-3000:]
    line = Registry(mlflow_store["tracking_uri"], f"labelloop-project-{labeled.id}")
    assert line.client.search_model_versions(f"name='{line.model_name}'") == []
    runs = line.client.search_runs([line.client.get_experiment_by_name("labelloop").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
