"""stage=loop: retrain when enough new submitted annotations have arrived since the last trained snapshot,
and/or on a fixed interval; pre-annotate after each promotion. One retrain at a time across processes (the
retrain lock), survives failed iterations with back-off, stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from loop import labelstudio as lsx
from loop.errors import LoopError
from loop.registry import CHALLENGER, registry_from_cfg

log = logging.getLogger(__name__)


def due(submitted: int, trained: int, min_new: int | None, interval_s: float | None, since_last_s: float
        ) -> str | None:
    """Why a retrain is due now, or None (pure)."""
    new = submitted - trained
    if min_new is not None and new >= min_new:
        return f"{new} new submitted tasks (threshold {min_new})"
    if interval_s is not None and since_last_s >= interval_s and new > 0:
        return f"interval of {interval_s:.0f} s elapsed with {new} new submitted tasks"
    return None


def trained_snapshot_size(registry) -> int:
    """Tasks in the newest registered version's annotation snapshot (0 before the first retrain)."""
    latest = registry.by_alias(CHALLENGER)
    return int(latest.tags.get("snapshot_tasks", 0)) if latest else 0


def run_stage(cfg) -> dict[str, Any]:
    from loop.retrain import run_stage as retrain_once

    s = cfg.stage
    if cfg.labelstudio.project_id is None:
        raise LoopError("no project: set labelstudio.project_id=N (the number in the project's URL)")
    min_new = s.get("min_new_annotations")
    interval_s = s.get("interval_s")
    if min_new is None and interval_s is None:
        raise LoopError("stage=loop needs stage.min_new_annotations=N and/or stage.interval_s=SECONDS")
    client = lsx.connect(cfg.labelstudio.url, cfg.labelstudio.api_key)
    registry = registry_from_cfg(cfg)
    figures = {"iterations": 0, "failures": 0, "promotions": 0}
    backoff = float(s.poll_s)
    last_run = time.monotonic()
    log.info("loop on project %s: retrain at %s new submitted tasks%s; Ctrl-C stops", cfg.labelstudio.project_id,
             min_new, f" or every {interval_s:.0f} s" if interval_s else "")
    try:
        while s.get("max_iterations") is None or figures["iterations"] < int(s.max_iterations):
            wait = float(s.poll_s)
            try:
                submitted = lsx.get_project(client, int(cfg.labelstudio.project_id))["num_tasks_with_annotations"] or 0
                reason = due(submitted, trained_snapshot_size(registry), min_new, interval_s,
                             time.monotonic() - last_run)
                if reason:
                    log.info("retraining: %s", reason)
                    summary = retrain_once(cfg)
                    last_run = time.monotonic()
                    figures["iterations"] += 1
                    figures["promotions"] += bool(summary["promoted"])
                    log.info("iteration %d: version %d, held-out mAP %.3f, %s", figures["iterations"],
                             summary["version"], summary["heldout_bbox_mAP"],
                             "promoted" if summary["promoted"] else "not promoted")
                    if summary["promoted"] and s.get("preannotate_after_promotion"):
                        from loop.preannotate import preannotate

                        preannotate(cfg)
                backoff = float(s.poll_s)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one failed iteration must not stop the loop
                figures["failures"] += 1
                last_run = time.monotonic()
                backoff = min(backoff * 2, float(s.max_backoff_s))
                wait = backoff
                log.error("iteration failed (%s: %s); next try in %.0f s", type(exc).__name__, exc, wait)
            time.sleep(wait)
    except KeyboardInterrupt:
        log.info("stopped by Ctrl-C")
    return figures
