"""Shared fixtures: real services for integration tests (Label Studio server, MLflow store, demo data).

Integration tests are marked `integration`; `pytest -m "not integration"` runs the fast unit tests alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loop.demo_data import generate, is_complete
from loop.ls_server import LabelStudioServer
from loop.paths import REPO_ROOT

LS_VENV = Path(os.environ.get("LABEL_STUDIO_VENV", REPO_ROOT / ".venv-labelstudio"))


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The demo dataset (data/demo), generated here if setup has not done it yet."""
    root = REPO_ROOT / "data" / "demo"
    if not is_complete(root):
        generate(root)
    return root


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """A small dataset of the same kind for quick training tests (24 train, 8 test images)."""
    root = tmp_path_factory.mktemp("small_demo")
    generate(root, splits={"pool": 24, "test": 8}, seed=7)
    return root


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory):
    """A real Label Studio server on a free loopback port, own data dir, admin user; legacy tokens off."""
    data_dir = tmp_path_factory.mktemp("labelstudio")
    server = LabelStudioServer(venv=LS_VENV, data_dir=data_dir, username="admin@example.com",
                               password="test-admin-pw", enable_legacy_tokens=False,
                               local_files_root=data_dir.parent)
    with server:
        yield server


@pytest.fixture(scope="session")
def ls_token(labelstudio) -> str:
    """A personal access token created the way a user does it (log in, Account & Settings → create)."""
    return labelstudio.personal_access_token()


@pytest.fixture(scope="session")
def ls_client(labelstudio, ls_token):
    from loop.labelstudio import connect

    return connect(labelstudio.url, ls_token)


@pytest.fixture
def mlflow_store(tmp_path) -> dict[str, str]:
    """A real MLflow store (SQLite + artifact folder) in a temp dir; returns tracking/registry URIs."""
    db = tmp_path / "mlflow.db"
    artifacts = tmp_path / "mlartifacts"
    artifacts.mkdir()
    return {"tracking_uri": f"sqlite:///{db}", "artifact_location": artifacts.as_uri()}


def load_coco(path: Path) -> dict:
    return json.loads(Path(path).read_text())
