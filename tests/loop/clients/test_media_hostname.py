"""A Label Studio reached by a host name (the tutorials' LABEL_STUDIO_HOSTNAME; here `localhost` for the
server on 127.0.0.1): the guarded fetcher reads every kind of task URL from the real server."""

from __future__ import annotations

import shutil

import pytest

from loop.clients import labelstudio
from loop.clients.media import MediaConfig, MediaFetcher
from tests.helpers import make_demo_project

pytestmark = pytest.mark.integration


def test_label_studio_by_host_name_serves_every_url_kind(ls_server, ls_token, ls_client, demo_data):
    named = ls_server.url.replace("127.0.0.1", "localhost")
    assert named != ls_server.url
    project, gt, file_of = make_demo_project(ls_client, demo_data, 1, "by-host-name", split="test")
    task = labelstudio.list_tasks(ls_client, project.id)[0]
    upload = task["data"]["image"]
    assert upload.startswith("/data/upload/")
    uploaded = (demo_data / gt[file_of[task["id"]]][0]["file_name"]).read_bytes()

    folder = ls_server.local_files_root / "by-host-name"
    folder.mkdir(exist_ok=True)
    shutil.copy(demo_data / "images" / "test_0002.jpg", folder / "b.jpg")
    ls_client.import_storage.local.create(project=project.id, path=str(folder), use_blob_urls=True)
    local = f"/data/local-files/?d={folder.relative_to(ls_server.local_files_root)}/b.jpg"

    with MediaFetcher(MediaConfig(ls_url=named, api_key=ls_token)) as fetcher:
        assert fetcher.fetch(upload, task["id"]) == uploaded  # relative, as Label Studio stores uploads
        assert fetcher.fetch(named + upload, task["id"]) == uploaded  # absolute, under the host name
        assert fetcher.fetch(ls_server.url + upload, task["id"]) == uploaded  # the same server by its address
        assert fetcher.fetch(local, task["id"]) == (folder / "b.jpg").read_bytes()  # local files storage
        assert fetcher.fetch(named + local, task["id"]) == (folder / "b.jpg").read_bytes()
