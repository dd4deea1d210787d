"""The Label Studio ML backend on FastAPI: /health /setup /predict /webhook /versions /metrics.

The model is loaded once when the app is created; /health and /setup answer from memory (Label Studio
calls them before every prediction batch with 1 s / 3 s timeouts). A /predict batch fetches and decodes
images concurrently, runs the model in batches, and answers one result per task in order; a task whose
image fails gets an empty result and a logged reason. Bad requests get a 4xx that says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from backend import batch
from backend.api_schema import request_body
from backend.auth import OPEN_PATHS, authorized
from backend.jobs import JobRunner, JobsBusy
from backend.labels import LabelMap, build_label_map
from backend.loading import ServeSettings, model_loader
from backend.metrics import Metrics
from backend.projects import NoModel, ProjectModels, UnknownProject
from loop.al.acquisition import queue_score
from loop.clients.media import MediaFetcher
from loop.common.label_configs import LabelConfigError, region_controls

log = logging.getLogger("backend")

JOB_ID = re.compile(r"[0-9a-f]{12}")  # what backend.jobs names jobs: anything else is no job


class BadRequest(Exception):
    pass


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"request body of {int(declared):,} bytes is over the {limit:,}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"request body is over the {limit:,}-byte limit")
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not JSON ({exc})") from None
    except RecursionError:  # thousands of nested arrays or objects: no Label Studio request looks like that
        raise BadRequest("request body is not JSON this server reads: it is nested too deeply") from None


def create_app(settings: ServeSettings, predictor=None) -> FastAPI:
    models = ProjectModels(settings, model_loader(settings), predictor)

    @asynccontextmanager
    async def lifespan(app):
        models.start()
        yield
        models.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        fetcher.close()

    fetcher = MediaFetcher(settings.media())
    pool = ThreadPoolExecutor(max_workers=max(1, settings.fetch_workers), thread_name_prefix="fetch")
    metrics = Metrics()
    label_maps: dict[str, LabelMap] = {}
    project_configs: dict[str, str] = {}
    limit = int(settings.max_body_mb * 1024 * 1024)
    jobs = None
    if settings.retrain_overrides is not None and settings.work_dir:
        jobs = JobRunner(Path(settings.work_dir), settings.retrain_overrides, settings.api_key)
    app = FastAPI(title="labelloop ML backend", lifespan=lifespan)
    app.state.models, app.state.metrics = models, metrics
    credentials = settings.credentials()

    @app.middleware("http")
    async def require_credentials(request: Request, call_next):
        if request.url.path in OPEN_PATHS or authorized(request.headers.get("authorization"), credentials):
            return await call_next(request)
        metrics.add("unauthorized")
        return JSONResponse({"error": "unauthorized"}, status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="labelloop"'})

    def label_map_for(label_config: str, predictor) -> LabelMap:
        key = hashlib.sha1((label_config + "\n" + "|".join(predictor.classes)).encode()).hexdigest()
        if key not in label_maps:
            try:
                m = build_label_map(label_config, predictor.classes)
            except LabelConfigError as exc:
                raise BadRequest(str(exc)) from None
            if m.unmatched_labels:
                log.warning("labels with no model class (they get no predictions): %s; model classes: %s. "
                            "Use <Label value=\"X\" predicted_values=\"class,...\"/> to map them",
                            ", ".join(m.unmatched_labels), ", ".join(predictor.classes))
            if m.wants_masks and not predictor.masks:
                log.warning("%s gives boxes, not masks: the project's PolygonLabels and BrushLabels controls get no "
                            "regions. Serve an instance segmentation model (e.g. one trained with "
                            "train/configs/rtmdet_ins_tiny_demo.py)", predictor.version)
            label_maps[key] = m
        return label_maps[key]

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        metrics.add("bad_requests")
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=413 if "limit" in str(exc) else 400)

    @app.exception_handler(UnknownProject)
    async def unknown_project(request: Request, exc: UnknownProject):
        metrics.add("bad_requests")
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=403)

    @app.exception_handler(NoModel)
    async def no_model(request: Request, exc: NoModel):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=503)

    async def project_holder(value):
        """(project, its holder): the first request of a project loads its model line (off the event loop)."""
        project = models.project(value)
        return project, await run_in_threadpool(models.holder, project)

    @app.get("/")
    @app.get("/health")
    def health() -> dict[str, Any]:
        holder = models.default()
        reply: dict[str, Any] = {"status": "UP", "model_version": None, "projects": models.allowed or "any"}
        if models.alias and not models.shared:
            reply["model_lines"] = models.loaded()
        if holder is None:  # serving per-project lines, none loaded yet
            return reply
        predictor = holder.current
        reply.update({"model_class": predictor.model_class, "runtime": predictor.runtime,
                      "precision": predictor.precision, "execution_provider": predictor.execution_provider,
                      "model_version": predictor.version, "input_size": predictor.input_size,
                      "classes": len(predictor.classes), "masks": predictor.masks})
        for key in ("precision_refused", "precision_note"):  # why int8 was not served (asked for / auto)
            if getattr(predictor, key, None):
                reply[key] = getattr(predictor, key)
        if holder.error:
            reply["reload_error"] = holder.error
        if holder.registry_unreachable:
            reply["registry_unreachable"] = True
        return reply

    @app.post("/setup", openapi_extra=request_body("/setup"))
    async def setup(request: Request) -> dict[str, Any]:
        body = await read_json(request, limit)
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object with 'project' and 'schema'")
        schema = body.get("schema")
        project = models.project(body.get("project"))
        # Label Studio waits 3 s: a project's first /setup starts loading its line and answers at once
        holder = await run_in_threadpool(models.holder, project, False)
        if isinstance(schema, str) and schema.strip():
            if holder is not None:
                label_map_for(schema, holder.current)
            else:  # check the config itself now; its labels are matched to classes on the first /predict
                try:
                    region_controls(schema)
                except LabelConfigError as exc:
                    raise BadRequest(str(exc)) from None
            project_configs[str(body.get("project", "")).split(".")[0]] = schema
        metrics.add("setup")
        version = holder.current.version if holder is not None else \
            await run_in_threadpool(models.expected_version, project)
        return {"model_version": version}

    # predictions carry the labeling queue's score, like bulk pre-annotation's (see backend.queue_strategy)
    task_score = partial(queue_score, settings.queue_strategy) if settings.queue_strategy else None

    def predict_tasks(tasks: list[dict], lmap: LabelMap, predictor) -> list[dict]:
        started = time.perf_counter()
        outcomes = batch.predict_tasks(tasks, lmap, predictor, fetcher, pool, settings.score_threshold,
                                       task_score, settings.polygon_tolerance)
        elapsed = time.perf_counter() - started
        with metrics.lock:
            metrics.latencies.append(elapsed)
            metrics.images_s_total += elapsed
        metrics.add("tasks", len(tasks))
        metrics.add("task_failures", sum(not o.ok for o in outcomes))
        return [o.prediction for o in outcomes]

    @app.post("/predict", openapi_extra=request_body("/predict"))
    async def predict(request: Request) -> dict[str, Any]:
        body = await read_json(request, limit)
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list) or not body["tasks"]:
            raise BadRequest("expected a JSON object with a non-empty 'tasks' list")
        tasks = body["tasks"]
        if not all(isinstance(t, dict) and isinstance(t.get("data", {}), dict) for t in tasks):
            raise BadRequest("every task must be an object with a 'data' object")
        label_config = body.get("label_config") or project_configs.get(str(body.get("project", "")).split(".")[0])
        if not isinstance(label_config, str) or not label_config.strip():
            raise BadRequest("no label config: send 'label_config' (Label Studio does) or call /setup first")
        _, holder = await project_holder(body.get("project"))
        predictor = holder.current  # this request finishes on this model, even if a swap happens meanwhile
        lmap = label_map_for(label_config, predictor)
        metrics.add("predict_requests")
        results = await run_in_threadpool(predict_tasks, tasks, lmap, predictor)
        return {"results": results, "model_version": predictor.version}

    async def start_training(project_id) -> dict[str, Any]:
        """Start (or join) one retrain job in its own process and answer at once with its id."""
        given = project_id
        project_id = models.project(project_id)  # the legacy /train call sends "<id>.<created>"
        if project_id is None:
            raise BadRequest("START_TRAINING needs the project id in 'project'"
                             + (f" (got {given!r})" if given is not None else ""))
        if jobs is None:
            log.warning("START_TRAINING for project %s: this backend was started without retrain settings; "
                        "run `python -m loop.run stage=retrain labelstudio.project_id=%s`", project_id, project_id)
            return {"status": "acknowledged", "action": "START_TRAINING", "job": None,
                    "message": "training is not configured on this backend; run stage=retrain"}
        try:
            job, started = await run_in_threadpool(jobs.start, project_id)
        except JobsBusy as exc:
            return JSONResponse({"error": str(exc)}, status_code=429)
        return {"status": job["state"], "action": "START_TRAINING", "job": job["id"], "joined": not started}

    @app.post("/train", openapi_extra=request_body("/train"))
    async def train(request: Request) -> dict[str, Any]:
        """Older Label Studio setups send Start Training here instead of to /webhook."""
        body = await read_json(request, limit)
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object with 'project'")
        return await start_training(body.get("project"))

    @app.post("/webhook", openapi_extra=request_body("/webhook"))
    async def webhook(request: Request) -> dict[str, Any]:
        body = await read_json(request, limit)
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            raise BadRequest("expected a JSON object with an 'action'")
        metrics.add("webhooks")
        action = body["action"]
        if action == "START_TRAINING":
            project = body.get("project")
            return await start_training(project.get("id") if isinstance(project, dict) else project)
        log.debug("webhook %s", action)
        return {"status": "ok", "action": action}

    @app.get("/jobs")
    def list_jobs() -> dict[str, Any]:
        return {"jobs": jobs.list() if jobs else []}

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str):
        job = jobs.get(job_id) if jobs and JOB_ID.fullmatch(job_id) else None
        if job is None:
            return JSONResponse({"error": f"no job {job_id}"}, status_code=404)
        return job

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        holder = models.default()
        return {"versions": [holder.current.version] if holder else []}

    @app.get("/metrics")
    def get_metrics() -> dict[str, Any]:
        holder = models.default()
        if holder is None:
            return {**metrics.snapshot(), "model_version": None, "model_lines": models.loaded()}
        predictor = holder.current
        return {**metrics.snapshot(), "model_version": predictor.version, "device": predictor.device,
                "runtime": predictor.runtime, "precision": predictor.precision,
                "execution_provider": predictor.execution_provider,
                "model_load_s": round(getattr(predictor, "load_s", 0.0), 2), "model_swaps": holder.swaps,
                "last_swap_load_s": holder.last_swap_s, "reload_error": holder.error}

    return app


SETTINGS_ENV = "LABELLOOP_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """uvicorn factory for several workers: each worker loads the model itself."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))


def settings_json(settings: ServeSettings) -> str:
    return json.dumps(asdict(settings))
