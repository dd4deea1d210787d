"""The import contracts in pyproject.toml: they hold for the code as it is, and an upward import, a library
reading Hydra's config or a second module talking to the same external system breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loop.common.paths import REPO_ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "250"}  # one line per contract
    return subprocess.run([str(LINT)], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_contracts_hold():
    r = lint(REPO_ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The three packages and pyproject.toml, to break one import at a time."""
    root = tmp_path_factory.mktemp("layers")
    for package in ("loop", "backend", "train"):
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize("module, line, contract", [
    ("loop/common/errors.py", "from loop.stages import adapters", "Layers"),       # ground -> top
    ("loop/clients/media.py", "import backend.images", "Layers"),                 # client -> library
    ("train/slim.py", "from backend import predictor", "Layers"),                 # train -> backend
    ("backend/results.py", "from train import export_coco", "Layers"),            # backend -> train
    ("loop/al/acquisition.py", "from loop.clients import registry", "Layers"),    # pure -> client
    ("train/trainer.py", "from omegaconf import DictConfig", "Hydra"),            # a library reads cfg
    ("backend/app.py", "import mlflow", "mlflow"),                                # a second mlflow importer
])
def test_a_wrong_import_breaks_a_contract(copy, module, line, contract):
    path = copy / module
    original = path.read_text()
    try:
        # inside a function, as a lazy import would be: the contracts see those too
        path.write_text(original + f"\n\ndef _wrong():\n    {line}\n")
        r = lint(copy)
    finally:
        path.write_text(original)
    assert r.returncode != 0, r.stdout
    broken = [ln for ln in r.stdout.splitlines() if ln.strip().endswith("BROKEN")]
    assert broken and any(contract in ln for ln in broken), r.stdout
