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
    latest = latest_prediction(task)
    return latest is None or latest.get("model_version") != version


def latest_prediction(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's newest prediction (its score is the task's place in the labeling queue), or None."""
    return newest(task.get("predictions") or [])


def newest(predictions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently created of these predictions (id breaks ties), or None."""
    return max(predictions, key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0)) if predictions \
        else None
