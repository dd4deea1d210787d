"""Which Label Studio tasks need what, from their plain dicts (pure): labeled ones, and ones whose latest
prediction is from another model version."""

from __future__ import annotations

from typing import Any


def labeled(task: dict[str, Any]) -> bool:
    """Has someone submitted (not skipped) an annotation for this task?"""
    return any(not a.get("was_cancelled") for a in task.get("annotations") or [])


def stale(task: dict[str, Any], version: str, include_labeled: bool) -> bool:
    """Does this task need a prediction from `version`?"""
    if not include_labeled and labeled(task):
        return False
    predictions = task.get("predictions") or []
    if not predictions:
        return True
    latest = max(predictions, key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0))
    return latest.get("model_version") != version
