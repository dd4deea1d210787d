"""Where things live. Config values may be relative; they are taken from the user's current directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"


def resolve(path: str | os.PathLike | None) -> Path | None:
    """Absolute path for a config value (`~` expanded, relative to the current directory)."""
    if path is None or str(path) == "":
        return None
    return Path(os.path.expanduser(str(path))).resolve()


def code_revision() -> str:
    """The repository's commit (with -dirty when tracked files changed), recorded with every model version."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
