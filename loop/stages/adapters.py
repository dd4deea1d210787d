"""The config -> plain-object adapters every stage shares: the only place that turns Hydra's `cfg` into the
dataclasses and clients the libraries take (TrainSpec, ServeSettings, MediaConfig, Registry, a Label Studio
server). Libraries below this layer never see a DictConfig, so they can be called from any program.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from backend.loading import ServeSettings
from loop.al.acquisition import OBJECT_STRATEGIES, queue_strategy_error
from loop.clients import labelstudio
from loop.clients.ls_server import LabelStudioServer
from loop.clients.media import MediaConfig, MediaFetcher
from loop.clients.registry import Registry
from loop.common.errors import LoopError
from loop.common.model_zoo import resolve_config
from loop.common.paths import resolve
from loop.common.projects import model_line, project_number
from train.trainer import TrainSpec


def local(path) -> str | None:
    """A config path made absolute (None stays None); URLs are left as they are."""
    if not path:
        return None
    return str(path) if "://" in str(path) else str(resolve(path))


def zoo_or_local(config) -> str | None:
    """An mmdet config option: a model-zoo name stays a name, a path is made absolute."""
    if not config:
        return None
    path = resolve(config)
    return str(path) if path.exists() or "/" in str(config) else str(config)


def plain(node) -> Any:
    """A config node as plain Python containers (resolved)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def project_id(cfg: DictConfig) -> int:
    if cfg.labelstudio.project_id is None:
        raise LoopError("no project: set labelstudio.project_id=N (the number in the project's URL)")
    return int(cfg.labelstudio.project_id)


def labelstudio_api_key(cfg: DictConfig) -> str | None:
    """The Label Studio token: from labelstudio.api_key_file when set, else labelstudio.api_key (which comes
    from LABEL_STUDIO_API_KEY; the command line refuses it)."""
    path = cfg.labelstudio.get("api_key_file")
    if not path:
        return cfg.labelstudio.api_key
    try:
        return Path(resolve(path)).read_text().strip() or None
    except OSError as exc:
        raise LoopError(f"labelstudio.api_key_file={path} cannot be read ({exc.strerror}); point it at a file "
                        "that holds the personal access token") from None


@contextmanager
def labelstudio_session(cfg: DictConfig) -> Iterator[Any]:
    """An SDK client for the configured Label Studio (checked with one call), its connections closed when the
    block ends."""
    with labelstudio.session(cfg.labelstudio.url, labelstudio_api_key(cfg)) as client:
        yield client


def model_name(cfg: DictConfig) -> str:
    """The registered model this run reads and writes: registry.model_name when set (one shared line), else
    the project's own line."""
    if cfg.registry.get("model_name"):
        return str(cfg.registry.model_name)
    if cfg.labelstudio.project_id is None:
        raise LoopError("which project's model? set labelstudio.project_id=N (each project has its own registered "
                        "model), or registry.model_name=NAME for one shared line")
    return model_line(str(cfg.registry.model_prefix), cfg.labelstudio.project_id)


def open_registry(cfg: DictConfig, name: str | None = None) -> Registry:
    """The registry for this run's model line (or `name`, for stages that only log tracking runs). Artifacts
    go to registry.artifact_location when set; else, with a local store, to <work_dir>/mlartifacts; with a
    tracking server, to the server's own artifact store (uploaded through it with --serve-artifacts)."""
    settings = cfg.registry
    uri = str(settings.tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return Registry(uri, name or model_name(cfg), settings.experiment, artifact_location(cfg))


def artifact_location(cfg: DictConfig) -> str | None:
    """registry.artifact_location; when unset, <work_dir>/mlartifacts for a local store and None (the
    server's own store) for a tracking server."""
    location = cfg.registry.get("artifact_location")
    if location:
        return str(location)
    if str(cfg.registry.tracking_uri).startswith(("http://", "https://", "databricks")):
        return None
    return str(resolve(cfg.work_dir) / "mlartifacts")


def served_projects(cfg: DictConfig) -> list[int]:
    """backend.projects and labelstudio.project_id: the projects a backend answers (empty: any)."""
    given = list(plain(cfg.backend.get("projects")) or [])
    if cfg.labelstudio.project_id is not None:
        given.append(cfg.labelstudio.project_id)
    numbers = [project_number(p) for p in given]
    if None in numbers:
        raise LoopError(f"backend.projects={given}: project ids are numbers (the number in the project's URL)")
    return sorted(set(numbers))


def labelstudio_server(cfg: DictConfig) -> LabelStudioServer:
    server = cfg.labelstudio.server
    return LabelStudioServer(venv=resolve(server.venv), data_dir=resolve(server.data_dir), host=server.host,
                             port=int(server.port), username=server.username, password=server.password,
                             allow_local_backends=bool(server.allow_local_backends),
                             enable_legacy_tokens=bool(server.enable_legacy_tokens),
                             startup_timeout_s=float(server.startup_timeout_s),
                             database=plain(server.get("database")) or None)


def media_config(cfg: DictConfig) -> MediaConfig:
    """How task images are fetched (serving, pre-annotation and export share it): Label Studio's URL and
    token, its folders when they are on this machine, and the hosts allowed besides it."""
    backend = cfg.backend
    return MediaConfig(ls_url=cfg.labelstudio.url, api_key=labelstudio_api_key(cfg),
                       image_dir=resolve(backend.image_dir) if backend.image_dir else None,
                       local_files_root=resolve(backend.local_files_root) if backend.local_files_root else None,
                       allow_hosts=list(plain(backend.allow_hosts) or []))


def media_fetcher(cfg: DictConfig) -> MediaFetcher:
    return MediaFetcher(media_config(cfg))


def check_queue_strategy(strategy: str | None) -> None:
    """Refuse a queue strategy Label Studio's queue cannot follow, before anything is predicted or written."""
    why = queue_strategy_error(strategy)
    if why:
        raise LoopError(why)


def check_queue(cfg: DictConfig) -> None:
    """check_queue_strategy, and object_diverse's batch sizes (`preannotate.queue_*`)."""
    settings = cfg.preannotate
    strategy = settings.get("queue_strategy") or None
    check_queue_strategy(strategy)
    if strategy in OBJECT_STRATEGIES and min(int(settings.queue_batch), int(settings.queue_prefilter)) < 1:
        raise LoopError(f"preannotate.queue_batch={settings.queue_batch} and preannotate.queue_prefilter="
                        f"{settings.queue_prefilter}: both must be at least 1 (the tasks labeled before the next "
                        "retrain, which stage=loop takes from stage.min_new_annotations and stage=demo from "
                        "stage.per_iteration; and the shortlist's size in batches)")


def serve_settings(cfg: DictConfig, checkpoint: str | None = None) -> ServeSettings:
    """The backend's model settings (runtime, precision, device, threads, caches) from `backend.*`."""
    backend = cfg.backend
    media = media_config(cfg)
    queue = cfg.preannotate.get("queue_strategy") or None
    check_queue_strategy(queue)  # predictions carry the queue's score: refuse before any model loads
    return ServeSettings(
        checkpoint=checkpoint if checkpoint is not None else local(backend.checkpoint),
        config=zoo_or_local(backend.config), device=str(backend.device),
        img_size=int(backend.img_size) if backend.get("img_size") else None,
        score_threshold=float(backend.score_threshold), polygon_tolerance=float(backend.polygon_tolerance),
        batch_size=int(backend.batch_size) if backend.batch_size else None, fetch_workers=int(backend.fetch_workers),
        threads=int(backend.threads) if backend.get("threads") else None,
        ls_url=media.ls_url, api_key=media.api_key,
        image_dir=str(media.image_dir) if media.image_dir else None,
        local_files_root=str(media.local_files_root) if media.local_files_root else None,
        allow_hosts=media.allow_hosts, max_body_mb=float(backend.max_body_mb),
        trust_checkpoint=bool(backend.trust_checkpoint), runtime=str(backend.get("runtime", "auto")),
        precision=str(backend.get("precision", "auto")), queue_strategy=queue,
        serve_alias=backend.get("serve_alias") or None,
        tracking_uri=str(cfg.registry.tracking_uri), model_name=cfg.registry.get("model_name") or None,
        model_prefix=str(cfg.registry.model_prefix), projects=served_projects(cfg),
        max_models=int(backend.get("max_models") or 4),
        poll_s=float(backend.poll_s), cache_dir=str(resolve(cfg.work_dir) / "serve-cache"),
        work_dir=str(resolve(cfg.work_dir)), basic_auth_user=backend.auth.basic_user or None,
        basic_auth_pass=backend.auth.basic_password or None, bearer_token=backend.auth.bearer_token or None)


def train_spec(cfg: DictConfig, work_dir: Path, **changes: Any) -> TrainSpec:
    """The one TrainSpec builder: `model.*`, `train.*` and `data.*` of the config, then `changes` (the data
    a stage trains on, the weights it starts from, ...) over them."""
    recipe, data = cfg.train, cfg.data
    spec = TrainSpec(
        config=resolve_config(zoo_or_local(cfg.model.config)), data_root=resolve(data.root),
        train_ann=str(data.train_ann),
        val_ann=str(data.test_ann), img_prefix=data.get("img_prefix", "") or "", work_dir=Path(work_dir),
        img_size=cfg.model.get("img_size"), epochs=int(recipe.epochs), batch_size=int(recipe.batch_size),
        lr=float(recipe.lr), warmup_iters=int(recipe.warmup_iters), num_workers=int(recipe.num_workers),
        val_interval=int(recipe.val_interval), min_iters=int(recipe.get("min_iters") or 0),
        drop_small_last=bool(recipe.get("drop_small_last", True)),
        load_from=local(cfg.model.get("checkpoint")), seed=int(cfg.seed),
        device=str(cfg.device), launcher=str(recipe.get("launcher", "none")),
        cfg_options=dict(plain(recipe.cfg_options) or {}))
    for key, value in changes.items():
        if not hasattr(spec, key):
            raise TypeError(f"TrainSpec has no field {key!r}")
        setattr(spec, key, value)
    return spec
