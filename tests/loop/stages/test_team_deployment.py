"""The team profile on its own stack: PostgreSQL (the Debian package) under Label Studio and under an MLflow
tracking server with --serve-artifacts, two backend replicas following the same champion, and one loop
iteration through it: annotate -> retrain -> promote -> both replicas reload -> pre-annotate. Nothing in the
code differs from the embedded default: only `labelstudio=team registry=team` and the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from loop.al.tasks import latest_prediction
from loop.clients import labelstudio
from loop.clients.ls_server import LabelStudioServer, free_port
from loop.clients.services import spawn, stop, wait_http
from loop.common.paths import REPO_ROOT
from tests.helpers import command_lines, make_demo_project, submit_ground_truth
from tests.postgres import USER, Postgres

pytestmark = [pytest.mark.integration, pytest.mark.team]

PASSWORD = "pg-team-secret-8431"


def test_one_loop_iteration_on_postgresql_with_two_replicas(demo_data, demo_model, start_backend, tmp_path,
                                                            monkeypatch):
    with Postgres(["labelstudio", "mlflow"], PASSWORD) as pg:
        monkeypatch.setenv("POSTGRE_PASSWORD", PASSWORD)  # Label Studio's variable, read from the environment
        database = {"host": "127.0.0.1", "port": pg.port, "name": "labelstudio", "user": USER}
        with LabelStudioServer(venv=REPO_ROOT / ".venv-labelstudio", data_dir=tmp_path / "ls",
                               database=database) as server:
            assert not list((tmp_path / "ls").glob("*.sqlite3"))  # its data is in PostgreSQL
            token = server.personal_access_token()
            client = labelstudio.connect(server.url, token)
            project, gt, file_of = make_demo_project(client, demo_data, 24, "team")
            ids = sorted(file_of)
            submit_ground_truth(client, gt, file_of, ids[:18])

            # the tracking server on PostgreSQL, its password through libpq's environment, not its command line
            port = free_port()
            cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
                   f"postgresql+psycopg://{USER}@127.0.0.1:{pg.port}/mlflow", "--serve-artifacts",
                   "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "1"]
            mlflow = spawn(cmd, tmp_path / "mlflow.log",
                           env={"PGPASSWORD": PASSWORD, "MLFLOW_DISABLE_TELEMETRY": "true"})
            try:
                tracking = f"http://127.0.0.1:{port}"
                wait_http(f"{tracking}/health", mlflow, "mlflow server", tmp_path / "mlflow.log", timeout_s=120)
                env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": token, "MLFLOW_TRACKING_URI": tracking,
                       "POSTGRE_PASSWORD": PASSWORD}
                profile = ["labelstudio=team", "registry=team", f"labelstudio.project_id={project.id}"]
                replicas = [start_backend("backend.serve_alias=champion", "backend.poll_s=1", *profile,
                                          f"backend.checkpoint={demo_model['checkpoint']}", api_key=token, env=env)
                            for _ in range(2)]
                line = f"labelloop-project-{project.id}"
                task = labelstudio.get_task(client, ids[-1])
                body = {"tasks": [{"id": task["id"], "data": task["data"]}], "project": f"{project.id}.1700000000",
                        "label_config": labelstudio.get_project(client, project.id)["label_config"]}
                for replica in replicas:  # the project's line is loaded on its first request: the base model
                    assert httpx.post(f"{replica['url']}/predict", json=body, timeout=120).status_code == 200

                retrain = subprocess.run(
                    [sys.executable, "-m", "loop.run", "stage=retrain", *profile, "train=smoke", "model.img_size=160",
                     "export.val_fraction=0.3", f"model.checkpoint={demo_model['checkpoint']}",
                     f"work_dir={tmp_path / 'work'}"], capture_output=True, text=True, env={**_environ(), **env},
                    cwd=REPO_ROOT, timeout=1200)
                assert retrain.returncode == 0, retrain.stdout[-2000:] + retrain.stderr[-2000:]
                for replica in replicas:  # each follows the alias on its own
                    wait_http(f"{replica['url']}/health", what="the replica's reload", timeout_s=120,
                              ready=lambda r: r.json().get("model_lines", {}).get(line) == f"{line}:v1",
                              log_file=replica["log"])
                    reply = httpx.post(f"{replica['url']}/predict", json=body, timeout=120).json()
                    assert reply["model_version"] == f"{line}:v1"

                pre = subprocess.run([sys.executable, "-m", "loop.run", "stage=preannotate", *profile,
                                      f"work_dir={tmp_path / 'work'}"], capture_output=True, text=True,
                                     env={**_environ(), **env}, cwd=REPO_ROOT, timeout=600)
                assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-2000:]
                unlabeled = [t for t in labelstudio.list_tasks(client, project.id) if not t["annotations"]]
                assert len(unlabeled) == 6
                assert {latest_prediction(t)["model_version"] for t in unlabeled} == {f"{line}:v1"}
                assert not any(PASSWORD.encode() in c or token.encode() in c for c in command_lines())
                # both stores are PostgreSQL's: the project, the version and the predictions are rows there
                assert pg.query("labelstudio", f"select title from project where id = {project.id}") == "team"
                assert int(pg.query("labelstudio", "select count(*) from prediction")) == 6
                assert pg.query("mlflow", "select name from registered_models") == line
            finally:
                for replica in locals().get("replicas", []):
                    stop(replica["proc"])
                stop(mlflow)


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "MLFLOW_"))}
