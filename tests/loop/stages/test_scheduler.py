"""stage=loop's trigger: what it compares the polled counter with (pure; stand-in registry)."""

from __future__ import annotations

from types import SimpleNamespace

from loop.stages.scheduler import trained_snapshot_size


class Latest:
    def __init__(self, tags):
        self.version = None if tags is None else SimpleNamespace(tags=tags)

    def by_alias(self, alias):
        return self.version


def test_the_trigger_compares_counter_with_counter_and_falls_back_to_the_task_count():
    # imported annotations: 4 exported tasks Label Studio does not count, 3 it does
    assert trained_snapshot_size(Latest({"snapshot_tasks": "7", "snapshot_submitted": "3"})) == 3
    assert trained_snapshot_size(Latest({"snapshot_tasks": "7"})) == 7  # a version from before the counter
    assert trained_snapshot_size(Latest(None)) == 0  # nothing trained yet
