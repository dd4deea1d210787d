"""stage=retrain: export -> train -> evaluate -> register -> gate, and the manual alias moves.

Nothing is registered until the run's artifacts are completely logged; a failing step marks the MLflow
run FAILED and leaves the registry as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from backend.jobs import retrain_is_running, retrain_lock, update_current_job
from backend.onnx_check import onnx_check
from loop.al.effort import EffortTable
from loop.al.gate import gate_metric, should_promote
from loop.clients import labelstudio
from loop.clients.checkpoints import file_sha256
from loop.clients.registry import DIGEST_TAG, Version
from loop.clients.services import run_to_end
from loop.common.errors import LoopError
from loop.common.paths import code_revision, resolve
from loop.common.secrets import redact
from loop.stages.adapters import local, open_registry, train_spec
from loop.stages.effort import record_table
from loop.stages.export import export
from loop.stages.int8_check import int8_check
from train.evaluate import coco_eval, segm_eval
from train.launch import RESULT, spec_command, write_spec
from train.package import package_model
from train.trainer import evaluate as evaluate_weights
from train.trainer import read_classes, train

log = logging.getLogger(__name__)

def redacted_config(cfg: DictConfig) -> str:
    """The resolved Hydra config as YAML, with secrets blanked (it is stored as a registry tag)."""
    return OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(cfg, resolve=True))))


def _export(cfg: DictConfig, on_task=None) -> dict[str, Any]:
    result = export(cfg, download=True, on_task=on_task)
    if result["train"] == 0 or result["val"] == 0:
        raise LoopError(f"{result['tasks']} submitted task(s) give {result['train']} for training and "
                        f"{result['val']} held out; submit more tasks (about {int(2 / cfg.export.val_fraction)} "
                        "or more)")
    return result


def _spec(cfg: DictConfig, exported: Path, work: Path, load_from: str | None, config: Path | None = None):
    """Training (or evaluation) on an export: train.json to learn from, val.json held out; `config` replaces
    model.config (the champion's own, to evaluate it)."""
    changes = {"config": config} if config is not None else {}
    return train_spec(cfg, work, data_root=exported, train_ann="train.json", val_ann="val.json", img_prefix="",
                      load_from=load_from, **changes)


def _train(cfg: DictConfig, spec) -> dict[str, Any]:
    """Train in this process, or, with train.gpus > 1 or train.nodes > 1, as this node's ranks under
    torchrun (mmengine's pytorch launcher; gloo on CPU cores). Either way the result comes back here, and
    only this process evaluates, packages, registers and gates."""
    processes, nodes = int(cfg.train.get("gpus") or 1), int(cfg.train.get("nodes") or 1)
    if processes <= 1 and nodes <= 1:
        return train(spec)
    spec_file = write_spec(spec, spec.work_dir / "spec.json")
    address, port = str(cfg.train.master_addr), int(cfg.train.master_port)
    command = spec_command(spec_file, processes, nodes, 0, address, port)
    if nodes > 1:
        log.info("on each other node R (1..%d), with this export and spec on a shared path, run: %s", nodes - 1,
                 " ".join(command).replace("--node_rank=0", "--node_rank=R"))
    log_file = spec.work_dir / "torchrun.log"
    log.info("training in %d process(es) on %d node(s) under torchrun; log %s", processes, nodes, log_file)
    run_to_end(command, log_file, "torchrun")
    return json.loads((spec.work_dir / RESULT).read_text())


def _record_effort(cfg: DictConfig, table: EffortTable) -> None:
    """The earlier versions' labeling effort, from the tasks the export just listed, onto their runs. It is
    evidence next to held-out mAP, not a step a new version depends on: a failure here is a warning."""
    try:
        record_table(cfg, table, int(cfg.labelstudio.project_id))
    except Exception as exc:  # noqa: BLE001 - never fails the retrain; the warning says what went wrong
        log.warning("labeling effort not recorded: %s", " ".join(str(exc).split())[:300])


def _gate_metric(cfg: DictConfig, ev_segm, champion, old_segm) -> str:
    try:
        return gate_metric(str(cfg.registry.get("gate_metric") or "auto"), ev_segm is not None,
                           None if champion is None else old_segm is not None)
    except ValueError as exc:
        raise LoopError(str(exc)) from None


def retrain(cfg: DictConfig) -> dict[str, Any]:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    work = resolve(cfg.work_dir) / "retrain" / f"project-{cfg.labelstudio.project_id}" / stamp
    timings: dict[str, float] = {}

    t = time.perf_counter()
    # counted from the tasks the export streams past, no second listing
    effort = EffortTable(decode_brush=labelstudio.brush_to_mask)
    exp = _export(cfg, on_task=effort.add_task)
    exported = Path(exp["out_dir"])
    manifest = json.loads((exported / "manifest.json").read_text())
    classes = read_classes(exported / "train.json")
    timings["export_s"] = time.perf_counter() - t

    models = open_registry(cfg)
    host = socket.gethostname()
    # under this project's retrain lock: a RUNNING run of it from this host whose process is gone was killed
    models.fail_abandoned(str(cfg.labelstudio.project_id),
                          lambda tags: tags.get("host") != host or retrain_is_running(int(tags.get("pid") or 0)))
    _record_effort(cfg, effort)
    champion: Version | None = models.champion()
    champion_dir = None
    if champion is not None:
        champion_dir = models.download(champion, work / "champion")
    if champion is not None and cfg.train.get("init", "champion") == "champion":
        load_from, parent = str(champion_dir / "model.pth"), str(champion.version)
    else:
        load_from, parent = local(cfg.model.get("checkpoint")), "none"
    log.info("training from %s", f"champion version {champion.version}" if champion else (load_from or "scratch"))

    snapshot_ids = sorted(int(k) for k in manifest["tasks"])
    snapshot = {"task_ids": snapshot_ids, "max_updated_at": manifest["max_updated_at"]}
    with models.run(f"retrain-{stamp}", tags={"project_id": str(cfg.labelstudio.project_id), "host": host,
                                               "pid": str(os.getpid())}) as run:
        run.log_params({"epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
                        "model_config": cfg.model.config, "device": cfg.device,
                        "val_fraction": cfg.export.val_fraction, "parent_version": parent,
                        "train_images": exp["train"], "heldout_images": exp["val"], "start_weights": load_from})
        t = time.perf_counter()
        result = _train(cfg, _spec(cfg, exported, work / "train", load_from))
        run.log_params({"train_processes": result["processes"]})
        timings["train_s"] = time.perf_counter() - t
        if result.get("start_weights"):  # e.g. a COCO checkpoint onto this project's classes
            run.log_params({"start_weights_loaded": result["start_weights"]["loaded"],
                            "start_weights_fresh": len(result["start_weights"]["fresh"])})
        for row in result["history"]:
            run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

        t = time.perf_counter()
        ev = coco_eval(exported / "val.json", Path(result["detections"]))
        ev_segm = segm_eval(exported / "val.json", result)
        champion_map = champion_map50 = old_segm = None
        if champion is not None:
            old = evaluate_weights(_spec(cfg, exported, work / "champion_eval", str(champion_dir / "model.pth"),
                                         config=champion_dir / "config.py"))
            old_ev = coco_eval(exported / "val.json", Path(old["detections"]))
            champion_map, champion_map50 = old_ev["bbox_mAP"], old_ev["bbox_mAP_50"]
            old_segm = segm_eval(exported / "val.json", old)
        metric = _gate_metric(cfg, ev_segm, champion, old_segm)
        timings["evaluate_s"] = time.perf_counter() - t
        run.log_metrics({"heldout_bbox_mAP": ev["bbox_mAP"], "heldout_bbox_mAP_50": ev["bbox_mAP_50"],
                         "champion_heldout_bbox_mAP": champion_map, "champion_heldout_bbox_mAP_50": champion_map50,
                         **{f"AP_{k}": v for k, v in ev["per_class_AP"].items() if v == v},
                         **({"heldout_segm_mAP": ev_segm["segm_mAP"], "heldout_segm_mAP_50": ev_segm["segm_mAP_50"]}
                            if ev_segm else {}),
                         **({"champion_heldout_segm_mAP": old_segm["segm_mAP"]} if old_segm else {})})

        t = time.perf_counter()
        img_size = package_model(result, classes, cfg.model.img_size, work / "model", work / "plots", exported, ev)
        run.log_params({"img_size": img_size})
        (work / "model" / "snapshot.json").write_text(json.dumps(snapshot))
        heldout = [exported / im["file_name"] for im in json.loads((exported / "val.json").read_text())["images"][:8]]
        onnx_state, onnx_reason = onnx_check(work / "model", heldout, float(cfg.backend.score_threshold))
        log.info("ONNX export check: %s (%s)", onnx_state, onnx_reason)
        int8_state, int8_reason = "unsupported", "the fp32 ONNX check did not pass"
        if onnx_state == "passed":
            int8_state, int8_reason = int8_check(work / "model", exported, float(cfg.backend.score_threshold),
                                                 float(cfg.backend.int8_tolerance))
        log.info("int8 check: %s (%s)", int8_state, int8_reason)
        run.log_artifacts(work / "model", "model")
        run.log_artifacts(work / "plots", "plots")
        run_id = run.run_id

    ids_text = ",".join(map(str, snapshot_ids))
    tags = {"heldout_bbox_mAP": f"{ev['bbox_mAP']:.6f}", "heldout_bbox_mAP_50": f"{ev['bbox_mAP_50']:.6f}",
            "train_images": exp["train"], "heldout_images": exp["val"],
            "snapshot_tasks": len(snapshot_ids), "snapshot_submitted": exp["submitted_counter"],
            "snapshot_max_updated_at": manifest["max_updated_at"],
            "snapshot_task_ids": ids_text if len(ids_text) <= 4000 else "see model/snapshot.json",
            "snapshot_sha256": hashlib.sha256(ids_text.encode()).hexdigest()[:16],
            "resolved_config": redacted_config(cfg)[:5000], "code_revision": code_revision(),
            "parent_version": parent, "classes": json.dumps(classes)[:5000],
            "project_id": str(cfg.labelstudio.project_id), "onnx_check": onnx_state,
            "onnx_check_detail": onnx_reason[:1000], "int8_check": int8_state,
            "int8_check_detail": int8_reason[:1000], DIGEST_TAG: file_sha256(work / "model" / "model.pth"),
            "gate_metric": metric,
            **({f"heldout_segm_{k}": f"{ev_segm[f'segm_{k}']:.6f}" for k in ("mAP", "mAP_50")} if ev_segm else {})}
    version = models.register(run_id, tags)
    if metric == "segm":
        promote, reason = should_promote(ev_segm["segm_mAP"], old_segm and old_segm["segm_mAP"],
                                         float(cfg.registry.promotion_margin), "segm")
    else:
        promote, reason = should_promote(ev["bbox_mAP"], champion_map, float(cfg.registry.promotion_margin))
    if promote and onnx_state == "failed":
        promote, reason = False, f"its ONNX export disagrees with torch ({onnx_reason})"
    if promote:
        models.promote(version.version, reason)
    else:
        log.info("version %d stays challenger: %s", version.version, reason)
    timings["register_s"] = time.perf_counter() - t
    summary = {"version": version.version, "promoted": promote, "reason": reason,
               "heldout_bbox_mAP": round(ev["bbox_mAP"], 4), "heldout_bbox_mAP_50": round(ev["bbox_mAP_50"], 4),
               **({"heldout_segm_mAP": round(ev_segm["segm_mAP"], 4)} if ev_segm else {}), "gate_metric": metric,
               "champion_before": champion.version if champion else None,
               "champion_heldout_bbox_mAP": None if champion_map is None else round(champion_map, 4),
               "train_images": exp["train"], "heldout_images": exp["val"], "run_id": run_id,
               "train_processes": result["processes"], **{k: round(v, 1) for k, v in timings.items()}}
    log.info("retrain: %s", summary)
    return summary


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    """stage=retrain: one iteration, never in parallel with another (see backend.jobs)."""
    try:
        with retrain_lock(resolve(cfg.work_dir), cfg.labelstudio.project_id):
            update_current_job(state="running", started_at=time.time(), pid=os.getpid())
            summary = retrain(cfg)
    except BaseException as exc:
        update_current_job(state="failed", error=str(exc)[:500] or type(exc).__name__)
        raise
    update_current_job(state="succeeded", version=summary["version"], promoted=summary["promoted"], result=summary)
    return summary


def promote_stage(cfg: DictConfig) -> dict[str, Any]:
    version = cfg.get("version")
    if version is None:
        raise LoopError("say which version: python -m loop.run stage=promote version=N")
    before, after = open_registry(cfg).promote(int(version), reason="by hand")
    return {"from": before, "to": after}


def rollback_stage(cfg: DictConfig) -> dict[str, Any]:
    before, after = open_registry(cfg).rollback()
    return {"from": before, "to": after}
