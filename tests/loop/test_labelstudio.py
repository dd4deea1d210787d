"""Against a real Label Studio server started by the fixtures (legacy tokens off: PAT only)."""

from __future__ import annotations

import httpx
import pytest

from loop import labelstudio as lsx
from loop.errors import LoopError
from loop.label_configs import COCO_LABELS, rectangle_labels_config

pytestmark = pytest.mark.integration


def test_server_is_up_and_pat_is_a_refresh_token(labelstudio, ls_token):
    assert httpx.get(f"{labelstudio.url}/health").json()["status"] == "UP"
    assert ls_token.count(".") == 2  # a JWT
    # Legacy tokens are disabled in this organisation, and a PAT is not an access token either.
    r = httpx.get(f"{labelstudio.url}/api/projects/", headers={"Authorization": f"Token {ls_token}"})
    assert r.status_code == 401


def test_coco_project_upload_and_read_back(ls_client, demo_data):
    project = lsx.create_project(ls_client, "coco-roundtrip", rectangle_labels_config(COCO_LABELS))
    stored = ls_client.projects.get(project.id)
    assert stored.label_config.count("<Label ") == 80 and 'value="traffic_light"' in stored.label_config

    images = sorted((demo_data / "images").glob("pool_000*.jpg"))[:5]
    task_ids = lsx.upload_images(ls_client, project.id, images)
    assert len(task_ids) == 5

    tasks = lsx.list_tasks(ls_client, project.id)
    assert sorted(t["id"] for t in tasks) == sorted(task_ids)
    urls = [t["data"]["image"] for t in tasks]
    assert all(u.startswith("/data/upload/") for u in urls)
    by_name = {p.name: p.read_bytes() for p in images}
    for url in urls:
        name = url.rsplit("/", 1)[1].split("-", 1)[1]  # LS prefixes a hash
        assert lsx.download(ls_client, url) == by_name[name]


def test_rejected_token_is_a_clear_error(labelstudio):
    with pytest.raises(LoopError, match="rejected the API key"):
        lsx.connect(labelstudio.url, "not-a-token")


def test_unreachable_server_is_a_clear_error():
    from loop.ls_server import free_port

    with pytest.raises(LoopError, match="cannot reach Label Studio"):
        lsx.connect(f"http://127.0.0.1:{free_port()}", "whatever", timeout=3)
