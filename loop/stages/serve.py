"""stage=serve: run the ML backend with uvicorn."""

from __future__ import annotations

import logging
import os

import uvicorn
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from backend.app import SETTINGS_ENV, create_app, settings_json
from backend.auth import is_loopback
from backend.loading import ServeSettings
from loop.common.errors import LoopError
from loop.common.paths import resolve
from loop.common.secrets import without_secrets
from loop.stages.adapters import serve_settings

log = logging.getLogger(__name__)

# the serving settings a retrain's export needs too: where task images are read from, and which hosts
MEDIA_KEYS = ("backend.image_dir=", "backend.local_files_root=", "backend.allow_hosts=")


def settings_from_cfg(cfg: DictConfig) -> ServeSettings:
    if not cfg.backend.checkpoint and not cfg.backend.get("serve_alias"):
        raise LoopError("nothing to serve: set backend.serve_alias=champion (serve the registry's champion and "
                        "follow it) or backend.checkpoint=PATH_OR_URL")
    settings = serve_settings(cfg)
    settings.retrain_overrides = retrain_overrides(cfg)
    host = str(cfg.backend.host)
    if not is_loopback(host) and not settings.credentials().configured and not cfg.backend.allow_unauthenticated:
        raise LoopError(f"backend.host={host} is reachable from other machines and no auth is set: anyone who can "
                        "reach the port could start trainings and read job state. Set BASIC_AUTH_USER and "
                        "BASIC_AUTH_PASS (in Label Studio's Connect Model form: Use basic auth) or "
                        "LABELLOOP_BACKEND_TOKEN, or backend.allow_unauthenticated=true behind your own proxy")
    return settings


def retrain_overrides(cfg: DictConfig) -> list[str]:
    """The command-line overrides this server was started with, minus the serving ones: a retrain job started
    by Start Training uses the same Label Studio, registry, model and training settings, and reads task images
    the way this server does (its export goes through the same fetcher settings)."""
    given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    keep = [o for o in without_secrets(given)
            if o.lstrip("+~").startswith(MEDIA_KEYS)
            or not o.lstrip("+~").startswith(("stage=", "backend.", "backend=", "hydra."))]
    return [o for o in keep if not o.startswith("work_dir=")] + [f"work_dir={resolve(cfg.work_dir)}"]


def run_stage(cfg: DictConfig) -> dict:
    settings = settings_from_cfg(cfg)
    host, port, workers = cfg.backend.host, int(cfg.backend.port), int(cfg.backend.workers)
    if workers > 1 and not settings.threads:  # don't let N workers each start one thread per core
        settings.threads = max(1, (os.cpu_count() or 1) // workers)
    log.info("serving on http://%s:%d: in Label Studio, Settings > Model > Connect Model, URL "
             "http://%s:%d", host, port, host, port)
    if workers > 1:
        os.environ[SETTINGS_ENV] = settings_json(settings)
        uvicorn.run("backend.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="info")
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return {"url": f"http://{host}:{port}"}
