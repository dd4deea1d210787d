"""Where things live. Config values may be relative; they are taken from the user's current directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def resolve(path: str | os.PathLike | None) -> Path | None:
    """Absolute path for a config value (`~` expanded, relative to the current directory)."""
    if path is None or str(path) == "":
        return None
    return Path(os.path.expanduser(str(path))).resolve()
