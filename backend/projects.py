"""Which model answers which Label Studio project: one registered model line per project.

Serving a registry alias (`backend.serve_alias=champion`), each project gets its own line's champion
(`<registry.model_prefix>-project-<id>`), loaded on the project's first request and followed by its own
watcher; at most `max_models` lines stay in memory (the least recently used one goes). A project without a
champion yet is answered by the base checkpoint (`backend.checkpoint`), and switches to its champion as soon
as one is promoted. An explicit `registry.model_name` is one line shared by every project. Serving a fixed
checkpoint, every project gets that checkpoint. A project the backend is not configured for
(`backend.projects`, `labelstudio.project_id`) is refused by name, never answered with another's model.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from backend.reload import AliasWatcher, ModelHolder, load_registered
from loop.clients.registry import Registry
from loop.common.errors import LoopError
from loop.common.projects import model_line, project_number

log = logging.getLogger("backend")


class UnknownProject(LoopError):
    """The request names a project this backend does not serve."""


class NoModel(LoopError):
    """The project has no champion yet and no base checkpoint is configured."""


class ProjectModels:
    def __init__(self, settings, load, predictor=None):
        self.settings, self.load = settings, load
        self.allowed = sorted({int(p) for p in settings.projects or []})
        self.alias = settings.serve_alias
        self.cache = Path(settings.cache_dir or Path.home() / ".cache" / "labelloop") / "registry"
        self._lines: OrderedDict[str, tuple[ModelHolder, AliasWatcher]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="load-line")
        self._started = False
        self.base: ModelHolder | None = None
        if predictor is not None or not self.alias or settings.checkpoint:
            self.base = ModelHolder(predictor or load(settings.checkpoint))
        if self.alias and predictor is None:
            for project in (self.allowed or [None])[: self.max_models]:
                if self.shared or project is not None:
                    self.holder(project)  # configured lines load at start: their errors show now

    @property
    def shared(self) -> bool:
        """One line for every project (an explicit registry.model_name)."""
        return bool(self.settings.model_name)

    @property
    def max_models(self) -> int:
        return max(1, int(self.settings.max_models or 1))

    def project(self, value) -> int | None:
        """The project a request is for (Label Studio sends "<id>.<timestamp>"); UnknownProject when this
        backend does not serve it. A request without one is for the only configured project, if there is one."""
        number = project_number(value)
        if number is None and len(self.allowed) == 1:
            return self.allowed[0]
        if number is not None and self.allowed and number not in self.allowed:
            raise UnknownProject(f"project {number} is not served by this backend (it serves project"
                                 f"{'s' if len(self.allowed) > 1 else ''} {', '.join(map(str, self.allowed))}); add "
                                 "it to backend.projects, or connect the project to its own backend")
        return number

    def holder(self, project: int | None, wait: bool = True) -> ModelHolder | None:
        """The holder that answers `project` (checked with `project()` first). A line not loaded yet is loaded
        in the background; `wait=False` returns None meanwhile (Label Studio's /setup waits 3 s at most)."""
        if not self.alias:
            return self.base
        if not self.shared and project is None:
            if self.base is not None:
                return self.base
            raise UnknownProject("the request names no project: this backend serves one model line per project")
        name = self.line(project)
        with self._lock:
            if name in self._lines:
                self._lines.move_to_end(name)
                return self._lines[name][0]
            future = self._loading.get(name)
            if future is None:
                future = self._loading[name] = self._pool.submit(self._add, name, project)
        return future.result() if wait else None

    def line(self, project: int | None) -> str:
        return self.settings.model_name or model_line(self.settings.model_prefix, project)

    def expected_version(self, project: int | None) -> str | None:
        """What a line not loaded yet will serve, from one registry read (None if it cannot say)."""
        name = self.line(project)
        try:
            version = Registry(self.settings.tracking_uri, name).by_alias(self.alias)
        except LoopError:
            return None
        if version is not None:
            return f"{name}:v{version.version}"
        return self.base.current.version if self.base is not None else None

    def _add(self, name: str, project: int | None) -> ModelHolder:
        try:
            holder, watcher = self._open(name, project)
            with self._lock:
                self._lines[name] = (holder, watcher)
                while len(self._lines) > self.max_models:
                    old, (_, old_watcher) = self._lines.popitem(last=False)
                    old_watcher.stop()
                    log.info("model line %s unloaded (at most %d kept)", old, self.max_models)
                if self._started:
                    watcher.start()
            return holder
        finally:
            with self._lock:
                self._loading.pop(name, None)

    def _open(self, name: str, project: int | None) -> tuple[ModelHolder, AliasWatcher]:
        registry = Registry(self.settings.tracking_uri, name)
        version = registry.by_alias(self.alias)
        cache = self.cache / name
        if version is not None:
            holder = ModelHolder(load_registered(registry, version, cache, self.load))
        elif self.base is not None:
            log.info("%s has no %s yet: project %s gets the base model %s until it has", name, self.alias, project,
                     self.base.current.version)
            holder = ModelHolder(self.base.current)
        else:
            raise NoModel(f"registered model '{name}' has no '{self.alias}' version in {self.settings.tracking_uri}"
                          f"; run stage=retrain labelstudio.project_id={project if project is not None else 'N'} "
                          "first, or set backend.checkpoint to a base model for projects without one")
        return holder, AliasWatcher(holder, registry, self.alias, cache, self.load, self.settings.poll_s)

    def default(self) -> ModelHolder | None:
        """What /health and /metrics describe: the base model, else the line used last."""
        if self.base is not None and not (self.alias and self.shared):
            return self.base
        with self._lock:
            return next(reversed(self._lines.values()))[0] if self._lines else self.base

    def loaded(self) -> dict[str, str]:
        with self._lock:
            return {name: holder.current.version for name, (holder, _) in self._lines.items()}

    def start(self) -> None:
        with self._lock:
            self._started = True
            for _, watcher in self._lines.values():
                watcher.start()

    def stop(self) -> None:
        with self._lock:
            for _, watcher in self._lines.values():
                watcher.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
