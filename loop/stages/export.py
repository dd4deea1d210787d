"""stage=export: pull submitted annotations from Label Studio into a COCO dataset with a frozen held-out
split (also the first step of stage=retrain)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from omegaconf import DictConfig

from loop.clients import labelstudio
from loop.common.errors import LoopError
from loop.common.paths import resolve
from loop.stages.adapters import labelstudio_session, media_fetcher, project_id
from train.export import export_project


def export(cfg: DictConfig, download: bool | None = None, on_task=None) -> dict[str, Any]:
    """Export labelstudio.project_id as the config says; a project with nothing submitted is an error."""
    project = project_id(cfg)
    settings = cfg.export
    out = resolve(settings.dir) if settings.dir else resolve(cfg.work_dir) / "exports" / f"project-{project}"
    download = bool(settings.download if download is None else download)
    # The counter stage=loop polls, read before the listing: an annotation submitted during the export counts
    # as new at the next poll (one retrain too many, never one too few). It leaves out annotations imported
    # with their tasks (Label Studio marks them ground truth), which the export includes, so the scheduler
    # compares it with this figure, not with the exported task count.
    with ExitStack() as stack:
        client = stack.enter_context(labelstudio_session(cfg))
        submitted = labelstudio.get_project(client, project)["num_tasks_with_annotations"] or 0
        fetcher = stack.enter_context(media_fetcher(cfg)) if download else None
        result = export_project(client, project, out, fetcher=fetcher, val_fraction=float(settings.val_fraction),
                                control=settings.control, skip_unreadable=bool(settings.skip_unreadable),
                                on_task=on_task, incremental=bool(settings.get("incremental", True)))
    if result["tasks"] == 0:
        raise LoopError(f"project {project} has no submitted annotations yet; label and submit some tasks in "
                        "Label Studio first")
    return {**result, "submitted_counter": int(submitted)}


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    return export(cfg)
