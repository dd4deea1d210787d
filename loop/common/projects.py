"""Label Studio projects and their model lines (pure)."""

from __future__ import annotations

import re

_PROJECT = re.compile(r"\s*(\d+)(?:\.\d*)?\s*")


def project_number(value) -> int | None:
    """The project id in what Label Studio sends: 12, "12" or "12.1700000000" (id.timestamp); None else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        match = _PROJECT.fullmatch(value)
        return int(match.group(1)) if match else None
    return None


def model_line(prefix: str, project_id) -> str:
    """The registered model of one project: `<prefix>-project-<id>`."""
    number = project_number(project_id)
    if number is None:
        raise ValueError(f"not a project id: {project_id!r}")
    return f"{prefix}-project-{number}"
