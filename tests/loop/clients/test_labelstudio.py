"""Against a real Label Studio server started by the fixtures (legacy tokens off: PAT only)."""

from __future__ import annotations

import httpx
import pytest

from loop.clients import labelstudio
from loop.clients.ls_server import LabelStudioServer
from loop.common.errors import LoopError
from loop.common.label_configs import COCO_LABELS, rectangle_labels_config

pytestmark = pytest.mark.integration


def test_server_is_up_and_pat_is_a_refresh_token(ls_server, ls_token):
    assert httpx.get(f"{ls_server.url}/health").json()["status"] == "UP"
    assert ls_token.count(".") == 2  # a JWT
    # Legacy tokens are disabled in this organisation, and a PAT is not an access token either.
    r = httpx.get(f"{ls_server.url}/api/projects/", headers={"Authorization": f"Token {ls_token}"})
    assert r.status_code == 401


def test_coco_project_upload_and_read_back(ls_client, ls_fetcher, demo_data):
    project = labelstudio.create_project(ls_client, "coco-roundtrip", rectangle_labels_config(COCO_LABELS))
    stored = ls_client.projects.get(project.id)
    assert stored.label_config.count("<Label ") == 80 and 'value="traffic_light"' in stored.label_config

    images = sorted((demo_data / "images").glob("pool_000*.jpg"))[:5]
    task_ids = labelstudio.upload_images(ls_client, project.id, images)
    assert len(task_ids) == 5

    tasks = labelstudio.list_tasks(ls_client, project.id)
    assert sorted(t["id"] for t in tasks) == sorted(task_ids)
    urls = [t["data"]["image"] for t in tasks]
    assert all(u.startswith("/data/upload/") for u in urls)
    by_name = {p.name: p.read_bytes() for p in images}
    for url in urls:
        name = url.rsplit("/", 1)[1].split("-", 1)[1]  # LS prefixes a hash
        assert ls_fetcher.fetch(url) == by_name[name]  # the one fetcher, with the token, from Label Studio


def test_rejected_token_is_a_clear_error(ls_server):
    with pytest.raises(LoopError, match="rejected the API key"):
        labelstudio.connect(ls_server.url, "not-a-token")


def test_unreachable_server_is_a_clear_error():
    from loop.clients.ls_server import free_port

    with pytest.raises(LoopError, match="cannot reach Label Studio"):
        labelstudio.connect(f"http://127.0.0.1:{free_port()}", "whatever", timeout=3)


def test_a_local_label_studio_phones_nobody(tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "a-token-the-server-need-not-see")
    env = LabelStudioServer(venv=tmp_path, data_dir=tmp_path).environment()
    assert (env["LATEST_VERSION_CHECK"], env["COLLECT_ANALYTICS"]) == ("false", "false")
    assert env["SENTRY_DSN"] == env["FRONTEND_SENTRY_DSN"] == ""
    assert "LABEL_STUDIO_API_KEY" not in env


@pytest.mark.parametrize("n", [7, 6])  # a short last page, and a full one (Label Studio answers 404 after it)
def test_tasks_stream_page_by_page_filtered_in_label_studio(ls_client, n):
    project = labelstudio.create_project(ls_client, f"paging-{n}", rectangle_labels_config(["cat"]))
    tasks = [{"data": {"image": f"/data/upload/{i}.jpg"}} for i in range(n)]
    for task in tasks[::2]:
        task["annotations"] = [{"result": []}]
    assert labelstudio.import_tasks(ls_client, project.id, tasks) == n
    every = list(labelstudio.iter_tasks(ls_client, project.id, page_size=3))
    assert [t["data"]["image"] for t in every] == [t["data"]["image"] for t in tasks]
    annotated = list(labelstudio.iter_tasks(ls_client, project.id, only_annotated=True, page_size=3))
    unlabeled = list(labelstudio.iter_tasks(ls_client, project.id, only_unlabeled=True, page_size=3))
    assert len(annotated) == (n + 1) // 2 and all(t["annotations"] for t in annotated)
    assert len(unlabeled) == n // 2 and not any(t["annotations"] for t in unlabeled)


def test_a_session_closes_its_connections_when_the_block_ends(ls_server, ls_token):
    with labelstudio.session(ls_server.url, ls_token) as client:
        pool = client._client_wrapper.httpx_client.httpx_client  # the SDK keeps the pool it was given here
        client.users.whoami()
        assert not pool.is_closed
    assert pool.is_closed
    with pytest.raises(LoopError, match="rejected the API key"):
        with labelstudio.session(ls_server.url, "not-a-token"):
            pass
