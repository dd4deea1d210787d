"""stage=demo: the whole loop on one machine, with a simulated annotator, in one command.

It starts a local Label Studio (its own environment), the MLflow UI and, once a first model exists, the ML
backend following the registry's champion; creates a project with demo images and the backend connected;
then runs iterations of: the annotator labels tasks (first a random batch, later the most informative
tasks, in the order the project's queue tab hands them out) -> retrain -> promotion -> the backend reloads
-> pre-annotation and queue refresh -> the champion's mAP on the fixed demo test split. The services keep
running until Ctrl-C so the project, the predictions and the MLflow runs can be looked at.

Everything lives in a fresh folder per run (work_dir/demo/<time>), so each demo starts from nothing.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, open_dict

from loop.clients import labelstudio
from loop.clients.annotator import (
    project_from_coco,
    submit_corrected,
    submit_ground_truth,
)
from loop.clients.ls_server import TOKEN_FILE, free_port, port_is_free
from loop.clients.services import spawn, stop, wait_http
from loop.common.demo_data import ensure
from loop.common.errors import LoopError
from loop.common.label_configs import segmentation_labels_config
from loop.common.paths import REPO_ROOT, resolve
from loop.common.secrets import API_KEY_ENV
from loop.stages.adapters import (
    artifact_location,
    check_queue,
    labelstudio_server,
    model_name,
    open_registry,
    train_spec,
)
from loop.stages.effort import effort
from loop.stages.preannotate import preannotate
from loop.stages.retrain import run_stage as retrain
from train.evaluate import coco_eval, segm_eval
from train.trainer import evaluate

log = logging.getLogger(__name__)

# The instance segmentation variant's model (stage.masks): RTMDet-Ins-tiny, the demo recipe otherwise.
SEG_CONFIG = REPO_ROOT / "train" / "configs" / "rtmdet_ins_tiny_demo.py"


def _port(host: str, wanted: int, what: str) -> int:
    if port_is_free(host, wanted):
        return wanted
    port = free_port(host)
    log.info("port %d is taken; %s uses %d instead", wanted, what, port)
    return port


def start_mlflow_ui(cfg: DictConfig, work: Path, stack: ExitStack) -> str:
    host = "127.0.0.1"
    port = _port(host, int(cfg.stage.mlflow_port), "the MLflow UI")
    cmd = [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", str(cfg.registry.tracking_uri),
           "--host", host, "--port", str(port)]
    proc = spawn(cmd, work / "mlflow-ui.log")
    stack.callback(stop, proc)
    url = f"http://{host}:{port}"
    wait_http(f"{url}/health", proc, "the MLflow UI", work / "mlflow-ui.log")
    return url


def start_backend(cfg: DictConfig, work: Path, stack: ExitStack) -> str:
    host = str(cfg.backend.host)
    port = _port(host, int(cfg.backend.port), "the ML backend")
    cmd = [sys.executable, "-m", "loop.run", "stage=serve", "backend.serve_alias=champion", f"backend.port={port}",
           "backend.poll_s=2", f"work_dir={work}", f"labelstudio.url={cfg.labelstudio.url}",
           f"labelstudio.project_id={cfg.labelstudio.project_id}",
           f"registry.model_prefix={cfg.registry.model_prefix}", f"registry.tracking_uri={cfg.registry.tracking_uri}",
           f"device={cfg.device}"]
    if artifact_location(cfg):
        cmd.append(f"registry.artifact_location={artifact_location(cfg)}")
    if cfg.registry.get("model_name"):
        cmd.append(f"registry.model_name={cfg.registry.model_name}")
    proc = spawn(cmd, work / "backend.log", env={API_KEY_ENV: str(cfg.labelstudio.api_key), f"{API_KEY_ENV}_FILE": ""})
    stack.callback(stop, proc)
    url = f"http://{host}:{port}"
    wait_http(f"{url}/health", proc, "the ML backend", work / "backend.log")
    return url


def wait_for_backend_version(url: str, version: str, timeout_s: float = 120) -> bool:
    """Has the backend hot-reloaded to `version` (e.g. labelloop-demo:v2) within `timeout_s`?"""
    try:
        wait_http(f"{url}/health", what="the ML backend", timeout_s=timeout_s, poll_s=1.0,
                  ready=lambda reply: reply.json().get("model_version") == version)
    except LoopError:
        return False
    return True


def champion_test_map(cfg: DictConfig, work: Path, iteration: int) -> dict[str, float]:
    """The champion's COCO mAP on the fixed demo test split (never shown to the annotator or the trainer)."""
    registry = open_registry(cfg)
    champion = registry.champion()
    files = registry.download(champion, work / "eval" / f"v{champion.version}")
    test = str(cfg.data.test_ann)
    result = evaluate(train_spec(cfg, work / "eval" / f"it{iteration}", config=files / "config.py", train_ann=test,
                                 val_ann=test, load_from=str(files / "model.pth"), num_workers=0,
                                 launcher="none", cfg_options={}))
    # scored from the dumped detections, as retrain scores versions: a model that finds nothing scores 0
    gt = resolve(cfg.data.root) / test
    boxes = coco_eval(gt, Path(result["detections"]))
    score = {"version": champion.version, "bbox_mAP": boxes["bbox_mAP"], "bbox_mAP_50": boxes["bbox_mAP_50"]}
    masks = segm_eval(gt, result)
    return score if masks is None else {**score, "segm_mAP": masks["segm_mAP"]}


def label_batch(client, project_id: int, view_id: int | None, gt, file_of, n: int, rng, strategy: str,
                mask_config: str | None = None) -> list[int]:
    """The simulated annotator labels n tasks: in queue order, or at random when strategy=random. Boxes are
    corrected from the prediction shown; with `mask_config` (a PolygonLabels or BrushLabels project) it draws
    each object's mask."""

    def label(task: dict) -> None:
        if mask_config:
            submit_ground_truth(client, gt, file_of, [task["id"]], label_config=mask_config)
        else:
            submit_corrected(client, task, gt, file_of)

    if strategy == "random" or view_id is None:
        todo = {t["id"]: t for t in labelstudio.list_tasks(client, project_id) if not t.get("annotations")}
        picked = [int(i) for i in rng.permutation(sorted(todo))[:n]]
        for task_id in picked:
            label(todo[task_id])
        return picked
    picked = []
    for _ in range(n):
        task = labelstudio.next_task(client, project_id, view_id)
        if task is None:
            break
        label(task)
        picked.append(task["id"])
    return picked


def demo(cfg: DictConfig, stack: ExitStack) -> dict[str, Any]:
    stage = cfg.stage
    queue = None if stage.strategy == "random" else str(stage.strategy)
    with open_dict(cfg):
        cfg.preannotate.queue_strategy = queue
        cfg.preannotate.queue_batch = int(stage.per_iteration)  # object_diverse's batch: one iteration's labels
    check_queue(cfg)  # before any folder or service
    masks = stage.get("masks") or None
    if masks not in (None, "PolygonLabels", "BrushLabels"):
        raise LoopError(f"stage.masks={masks!r}: use PolygonLabels or BrushLabels (instance segmentation), or "
                        "null (boxes)")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    work = resolve(cfg.work_dir) / "demo" / stamp
    work.mkdir(parents=True, exist_ok=True)
    data_root = ensure(resolve(cfg.data.root)) if cfg.data.name == "demo" else resolve(cfg.data.root)
    with open_dict(cfg):
        cfg.work_dir = str(work)  # Label Studio data, MLflow store, exports and runs all go here
        if masks:
            cfg.model.config = str(SEG_CONFIG)
        cfg.labelstudio.server.port = _port(str(cfg.labelstudio.server.host), int(cfg.labelstudio.server.port),
                                            "Label Studio")
    log.info("demo folder: %s", work)

    server = labelstudio_server(cfg)
    stack.enter_context(server)
    token = server.personal_access_token()
    mlflow_url = start_mlflow_ui(cfg, work, stack) if stage.get("mlflow_ui", True) else None
    client = stack.enter_context(labelstudio.session(server.url, token))  # its connections close with the demo
    project, gt, file_of = project_from_coco(client, data_root / cfg.data.train_ann, data_root, int(stage.images),
                                             f"labelloop demo {stamp}",
                                             partial(segmentation_labels_config, kind=masks) if masks else None)
    mask_config = project.label_config if masks else None
    with open_dict(cfg):
        cfg.labelstudio.url, cfg.labelstudio.api_key, cfg.labelstudio.project_id = server.url, token, project.id
        cfg.labelstudio.api_key_file = None  # the demo's own server and token, whatever the environment says
    log.info("project %d: %d demo images; the simulated annotator labels %d, then %d per iteration (%s order)",
             project.id, len(file_of), int(stage.initial), int(stage.per_iteration), stage.strategy)

    rng = np.random.default_rng(int(cfg.seed))
    backend_url, view_id, history = None, None, []
    labeled = len(label_batch(client, project.id, None, gt, file_of, int(stage.initial), rng, "random", mask_config))
    for iteration in range(1, int(stage.iterations) + 1):
        if iteration > 1:
            labeled += len(label_batch(client, project.id, view_id, gt, file_of, int(stage.per_iteration), rng,
                                       str(stage.strategy), mask_config))
        summary = retrain(cfg)
        if backend_url is None:
            backend_url = start_backend(cfg, work, stack)
            labelstudio.connect_ml_backend(client, project.id, backend_url)
        version = f"{model_name(cfg)}:v{summary['version']}"
        reloaded = wait_for_backend_version(backend_url, version) if summary["promoted"] else None
        if reloaded is False:
            log.warning("the backend did not load %s within 2 minutes; see %s", version, work / "backend.log")
        pushed = preannotate(cfg)
        view_id = pushed.get("queue_view", view_id)
        score = champion_test_map(cfg, work, iteration)
        history.append({"iteration": iteration, "labeled": labeled, "champion": score["version"],
                        "promoted": summary["promoted"], "backend_reloaded": reloaded,
                        "test_mAP": round(score["bbox_mAP"], 4),
                        "test_mAP_50": round(score["bbox_mAP_50"], 4),
                        **({"test_segm_mAP": round(score["segm_mAP"], 4)} if "segm_mAP" in score else {})})
        log.info("iteration %d: %d tasks labeled, version %d %s; champion v%d test mAP %.3f (mAP@50 %.3f)",
                 iteration, labeled, summary["version"], "promoted" if summary["promoted"] else "not promoted",
                 score["version"], score["bbox_mAP"], score["bbox_mAP_50"])
    for h in history:
        segm = f"  segm mAP {h['test_segm_mAP']:.3f}" if "test_segm_mAP" in h else ""
        print(f"iteration {h['iteration']}: {h['labeled']:4d} labeled  champion v{h['champion']}  "
              f"test mAP {h['test_mAP']:.3f}  mAP@50 {h['test_mAP_50']:.3f}{segm}", flush=True)
    spent = effort(cfg)  # what the simulated annotator did with each version's predictions
    print(f"labeling effort per model version (simulated annotator, {Path(spent['folder']) / 'effort.png'}):\n"
          f"{spent['table']}", flush=True)
    # the project's data (random order has no queue tab), so the link opens what the annotator labeled
    tab = f"?tab={view_id}" if view_id else ""
    urls = {"labelstudio": f"{server.url}/projects/{project.id}/data{tab}",
            "mlflow": mlflow_url, "backend": backend_url}
    print(f"Label Studio: {urls['labelstudio']}  (log in as {server.username}, password {server.password})\n"
          f"MLflow UI:    {mlflow_url or 'off (stage.mlflow_ui=false)'}\nML backend:   {backend_url}", flush=True)
    result = {"history": history, "effort": spent["versions"], "urls": urls, "project_id": project.id,
              "view_id": view_id,
              "work_dir": str(work), "token_file": str(Path(server.data_dir) / TOKEN_FILE),
              "labelstudio_url": server.url, "username": server.username}
    # For tools that look at a running demo (scripts/screenshot.py); the password stays in the config.
    (work / "demo.json").write_text(json.dumps(result, indent=1))
    return result


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds the ExitStack, so the services stop with the demo


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with ExitStack() as stack:
        result = demo(cfg, stack)
        if cfg.stage.keep_running:
            print("Services keep running; Ctrl-C stops them.", flush=True)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                log.info("stopping the demo services")
    return result
