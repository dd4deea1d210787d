"""stage=loop: retrain when enough new submitted annotations have arrived since the last trained snapshot,
and/or on a fixed interval; pre-annotate after each promotion. One retrain at a time across processes (the
retrain lock), survives failed iterations with back-off, stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from omegaconf import DictConfig

from loop.al.gate import due
from loop.clients import labelstudio
from loop.clients.registry import CHALLENGER
from loop.common.errors import LoopError
from loop.stages.adapters import check_queue, labelstudio_session, open_registry, project_id
from loop.stages.preannotate import preannotate
from loop.stages.retrain import run_stage as retrain_once

log = logging.getLogger(__name__)


def trained_snapshot_size(registry) -> int:
    """The project's submitted-tasks counter when the newest registered version's snapshot was exported (0
    before the first retrain), in the units of what the loop polls (`num_tasks_with_annotations`). That
    counter leaves out annotations imported with their tasks, which the snapshot's task count includes:
    compared with the task count, a project with imported annotations would never look as if it had new
    ones. Versions registered before the counter was recorded have only the task count."""
    latest = registry.by_alias(CHALLENGER)
    if latest is None:
        return 0
    return int(latest.tags.get("snapshot_submitted", latest.tags.get("snapshot_tasks", 0)))


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    stage = cfg.stage
    project = project_id(cfg)
    min_new = stage.get("min_new_annotations")
    interval_s = stage.get("interval_s")
    if min_new is None and interval_s is None:
        raise LoopError("stage=loop needs stage.min_new_annotations=N and/or stage.interval_s=SECONDS")
    if stage.get("preannotate_after_promotion"):
        if min_new is not None:  # object_diverse's batch: what people label before the next retrain
            cfg.preannotate.queue_batch = int(min_new)
        check_queue(cfg)  # before the first retrain, not after it
    registry = open_registry(cfg)
    report = {"iterations": 0, "failures": 0, "promotions": 0}
    log.info("loop on project %s: retrain at %s new submitted tasks%s; Ctrl-C stops", project,
             min_new, f" or every {interval_s:.0f} s" if interval_s else "")
    with labelstudio_session(cfg) as client:
        try:
            follow(cfg, client, registry, report)
        except KeyboardInterrupt:
            log.info("stopped by Ctrl-C")
    return report


def follow(cfg: DictConfig, client, registry, report: dict[str, int]) -> None:
    """Poll the project's counter every stage.poll_s and retrain when due, until stage.max_iterations (or
    forever); counts into `report`. A failed iteration is logged and retried with a growing back-off."""
    stage, project = cfg.stage, project_id(cfg)
    min_new, interval_s = stage.get("min_new_annotations"), stage.get("interval_s")
    backoff = float(stage.poll_s)
    last_run = time.monotonic()
    while stage.get("max_iterations") is None or report["iterations"] < int(stage.max_iterations):
        wait = float(stage.poll_s)
        try:
            submitted = labelstudio.get_project(client, project)["num_tasks_with_annotations"] or 0
            reason = due(submitted, trained_snapshot_size(registry), min_new, interval_s,
                         time.monotonic() - last_run)
            if reason:
                log.info("retraining: %s", reason)
                summary = retrain_once(cfg)
                last_run = time.monotonic()
                report["iterations"] += 1
                report["promotions"] += bool(summary["promoted"])
                log.info("iteration %d: version %d, held-out mAP %.3f, %s", report["iterations"],
                         summary["version"], summary["heldout_bbox_mAP"],
                         "promoted" if summary["promoted"] else "not promoted")
                if summary["promoted"] and stage.get("preannotate_after_promotion"):
                    preannotate(cfg)
            backoff = float(stage.poll_s)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one failed iteration must not stop the loop
            report["failures"] += 1
            last_run = time.monotonic()
            backoff = min(backoff * 2, float(stage.max_backoff_s))
            wait = backoff
            log.error("iteration failed (%s: %s); next try in %.0f s", type(exc).__name__, exc, wait)
        time.sleep(wait)
