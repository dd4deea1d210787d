"""Fault injection: Label Studio killed in the middle of an export. The stage fails naming the tasks it could
not read, writes no dataset that looks complete, and a rerun after Label Studio is back finishes it."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from loop.clients import labelstudio
from loop.clients.ls_server import LabelStudioServer
from loop.clients.media import MediaConfig, MediaFetcher
from loop.common.errors import LoopError
from tests.conftest import LS_VENV
from tests.helpers import make_demo_project, submit_ground_truth
from train.export import export_project

pytestmark = pytest.mark.integration


class CrashesLabelStudio(MediaFetcher):
    """The fetcher, with Label Studio's whole process group killed (as by the OOM killer) after `after` images."""

    def __init__(self, config, server: LabelStudioServer, after: int):
        super().__init__(config)
        self.server, self.after, self.fetched = server, after, 0

    def fetch(self, url, task_id=None):
        if self.fetched == self.after:
            os.killpg(self.server.proc.pid, signal.SIGKILL)
            self.server.proc.wait()
        self.fetched += 1
        return super().fetch(url, task_id)


def test_label_studio_killed_during_export(demo_data, tmp_path):
    server = LabelStudioServer(venv=LS_VENV, data_dir=tmp_path / "ls", password="fault-pw")
    with server:
        # the signing key the server was given, which it read back (one it generated itself may begin with "$"
        # and then be lost at the restart below, and the token with it)
        keys = signing_keys(tmp_path / "ls")
        assert len(keys) == 1 and re.fullmatch(r"SECRET_KEY=[A-Za-z0-9_-]{50,}", keys[0])  # URL-safe: ours
        token = server.personal_access_token()
        client = labelstudio.connect(server.url, token)
        project, gt, file_of = make_demo_project(client, demo_data, 10, "export-crash")
        submit_ground_truth(client, gt, file_of)
        out = tmp_path / "export"
        with CrashesLabelStudio(MediaConfig(ls_url=server.url, api_key=token), server, after=4) as crashing:
            with pytest.raises(LoopError, match=r"the images of 6 submitted task\(s\) cannot be read"):
                export_project(client, project.id, out, fetcher=crashing, progress=False)
        assert not (out / "train.json").exists() and not (out / "manifest.json").exists()

        server.stop()
        server.port = 0  # the killed server's port can linger in TIME_WAIT; the data folder is what matters
        server.start()  # Label Studio is back, with the same data and the same key
        assert signing_keys(tmp_path / "ls") == keys
        client = labelstudio.connect(server.url, token)
        with MediaFetcher(MediaConfig(ls_url=server.url, api_key=token)) as fetcher:
            result = export_project(client, project.id, out, fetcher=fetcher, progress=False)
        assert result["tasks"] == 10 and result["unreadable"] == []
        manifest = json.loads((out / "manifest.json").read_text())
        assert sorted(int(t) for t in manifest["tasks"]) == sorted(file_of)


def signing_keys(data_dir):
    """The SECRET_KEY lines of a Label Studio data folder's .env."""
    return [line for line in (data_dir / ".env").read_text().splitlines() if "SECRET_KEY=" in line]
