"""stage=effort: the labeling effort per model version (loop.al.effort) from a project's submitted
annotations, printed as a table, written as metrics on each registered version's run, and as a table and a
plot over versions (also run by each retrain, on the tasks its export read)."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from loop.al.effort import NO_PREDICTION, EffortTable, effort_by_version, format_table
from loop.clients import labelstudio
from loop.common.paths import resolve
from loop.stages.adapters import labelstudio_session, model_name, open_registry, project_id
from train.plots import plot_effort

log = logging.getLogger(__name__)
VERSION = re.compile(r"^(?P<line>.+):v(?P<number>\d+)$")


def registered(table: EffortTable, line: str) -> dict[str, int]:
    """{model version string: registry version number} for the versions of this model line, oldest first."""
    out = {}
    for version in table.by_version:
        found = VERSION.match(version)
        if found and found["line"] == line:
            out[version] = int(found["number"])
    return dict(sorted(out.items(), key=lambda item: item[1]))


def write_files(table: EffortTable, out: Path) -> list[Path]:
    """effort.csv, effort.json and effort.png (share of predicted boxes kept, seconds per task, per version,
    with the no-prediction baseline) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = table.records()
    with open(out / "effort.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model_version"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "effort.json").write_text(json.dumps(rows, indent=1))
    plot_effort(rows, NO_PREDICTION, out / "effort.png")
    return [out / "effort.csv", out / "effort.json", out / "effort.png"]


def record(cfg: DictConfig, table: EffortTable, project: int) -> dict[str, Any]:
    """Metrics on each registered version's run; table and plot on the newest one's, under effort/."""
    folder = resolve(cfg.work_dir) / "effort" / f"project-{project}"
    files = write_files(table, folder)
    line = model_name(cfg)
    versions = registered(table, line)
    if versions:
        registry = open_registry(cfg)
        for name, number in versions.items():
            registry.run_of(number).log_metrics(table.by_version[name].metrics())
        newest = registry.run_of(max(versions.values()))
        for path in files:
            newest.log_artifact(path, "effort")
    return {"folder": str(folder), "logged_versions": list(versions.values()), "line": line}


def record_table(cfg: DictConfig, table: EffortTable, project: int) -> dict[str, Any]:
    """Log, write and record a table (see `record`); the stage's result."""
    text = format_table(table)
    for row in text.splitlines():
        log.info("%s", row)
    written = record(cfg, table, project)
    return {"project_id": project, **written, "table": text,
            "versions": {r.pop("model_version"): r for r in table.records()}}


def effort(cfg: DictConfig) -> dict[str, Any]:
    project = project_id(cfg)
    with labelstudio_session(cfg) as client:
        tasks = labelstudio.iter_tasks(client, project, only_annotated=True, include=labelstudio.EXPORT_FIELDS)
        table = effort_by_version(tasks, decode_brush=labelstudio.brush_to_mask)
    return record_table(cfg, table, project)


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    result = effort(cfg)
    print(result["table"], flush=True)
    print(f"effort figures: {result['folder']} (and on the runs of versions {result['logged_versions'] or 'none'})",
          flush=True)
    return result
