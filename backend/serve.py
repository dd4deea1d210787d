"""stage=serve: run the ML backend with uvicorn."""

from __future__ import annotations

import logging
import os

from omegaconf import OmegaConf

from backend.app import SETTINGS_ENV, create_app, settings_json
from backend.models import ServeSettings
from loop.errors import LoopError
from loop.paths import resolve

log = logging.getLogger(__name__)


def settings_from_cfg(cfg) -> ServeSettings:
    b = cfg.backend
    follow = b.get("follow")
    if not b.checkpoint and not follow:
        raise LoopError("nothing to serve: set backend.follow=champion (serve the registry's champion and follow "
                        "it) or backend.checkpoint=PATH_OR_URL")
    local = lambda p: str(resolve(p)) if p else None  # noqa: E731
    checkpoint = str(b.checkpoint) if "://" in str(b.checkpoint or "") else local(b.checkpoint)
    return ServeSettings(checkpoint=checkpoint, config=local(b.config), default_config=local(cfg.model.config),
                         device=str(b.device), score_threshold=float(b.score_threshold),
                         batch_size=int(b.batch_size) if b.batch_size else None, fetch_workers=int(b.fetch_workers),
                         threads=int(b.threads) if b.get("threads") else None,
                         ls_url=cfg.labelstudio.url, api_key=cfg.labelstudio.api_key, image_dir=local(b.image_dir),
                         local_files_root=local(b.local_files_root),
                         allow_hosts=list(OmegaConf.to_container(b.allow_hosts, resolve=True) or []),
                         max_body_mb=float(b.max_body_mb), trust_checkpoint=bool(b.trust_checkpoint),
                         runtime=str(b.get("runtime", "auto")), precision=str(b.get("precision", "fp32")),
                         follow_alias=follow or None, tracking_uri=str(cfg.registry.tracking_uri),
                         model_name=str(cfg.registry.model_name), poll_s=float(b.poll_s),
                         cache_dir=str(resolve(cfg.work_dir) / "serve-cache"), work_dir=str(resolve(cfg.work_dir)),
                         retrain_overrides=retrain_overrides(cfg))


def retrain_overrides(cfg) -> list[str]:
    """The command-line overrides this server was started with, minus the serving ones: a retrain job started
    by Start Training uses the same Label Studio, registry, model and training settings."""
    try:
        from hydra.core.hydra_config import HydraConfig

        given = list(HydraConfig.get().overrides.task)
    except ValueError:  # not started through Hydra
        given = []
    keep = [o for o in given if not o.lstrip("+~").startswith(("stage=", "backend.", "backend=", "hydra."))]
    return [o for o in keep if not o.startswith("work_dir=")] + [f"work_dir={resolve(cfg.work_dir)}"]


def run_stage(cfg) -> dict:
    import uvicorn

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
