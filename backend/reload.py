"""Serve whatever a registry alias points at, and follow it: a background watcher polls the alias, loads a
new version beside the running model, then swaps one reference. Requests in flight keep the predictor they
started with; a version that fails to load is refused and the old model keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from loop.clients.checkpoints import file_sha256
from loop.clients.registry import DIGEST_TAG
from loop.common.errors import LoopError

log = logging.getLogger(__name__)


class DownloadError(LoopError):
    """The artifacts could not be fetched (registry or storage trouble): worth trying again later."""


class ModelHolder:
    """The predictor requests use now, and what went wrong with the last version that was tried."""

    def __init__(self, predictor=None):
        self.current = predictor
        self.error: dict | None = None
        self.registry_unreachable = False  # the last poll could not read the alias: serving on, unchanged
        self.swaps = 0
        self.last_swap_s: float | None = None

    def swap(self, predictor) -> None:
        old, self.current = self.current, predictor  # one reference: atomic for readers
        self.error, self.swaps = None, self.swaps + 1
        log.info("now serving %s (was %s)", predictor.version, old.version if old else "nothing")


def cache_key(version) -> str:
    """A registered version's cache folder: its run id and, when retrain recorded it, its weights' digest.
    Version numbers are not keys: a reset store or another tracking_uri starts again at v1 (pure)."""
    digest = version.tags.get(DIGEST_TAG, "")[:12]
    return f"{version.run_id}-{digest}" if digest else version.run_id


def load_registered(registry, version, cache_dir: Path, load: Callable[..., object], keep: int = 3):
    """Download a registered version's model/ folder and load it; LoopError with the reason if it is unusable.
    The cache keeps the `keep` folders used last."""
    target = Path(cache_dir) / cache_key(version)
    if not (target / "model" / "model.pth").exists():
        # Several server workers may fetch the same version at once: each downloads into its own folder and
        # the first complete one is kept.
        tmp = Path(cache_dir) / f".{target.name}.partial-{os.getpid()}-{threading.get_ident()}"
        try:
            registry.download(version, tmp)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DownloadError(f"cannot download the artifacts of version {version.version} "
                                f"({type(exc).__name__}: {str(exc)[:200]})") from None
        try:
            tmp.rename(target)
        except OSError:  # another worker was first
            shutil.rmtree(tmp, ignore_errors=True)
    model_dir = target / "model"
    if not (model_dir / "model.pth").exists():
        raise LoopError(f"version {version.version} has no model/model.pth artifact")
    expected = version.tags.get(DIGEST_TAG)
    if expected and file_sha256(model_dir / "model.pth") != expected:
        shutil.rmtree(target, ignore_errors=True)
        raise DownloadError(f"version {version.version}: model.pth does not match the digest recorded at "
                            "registration (a partial or altered download); it will be fetched again")
    os.utime(target)
    predictor = load(str(model_dir / "model.pth"), version=f"{registry.model_name}:v{version.version}")
    predictor.run_id = version.run_id
    classes_file = model_dir / "classes.json"
    if classes_file.exists() and json.loads(classes_file.read_text()) != list(predictor.classes):
        raise LoopError(f"version {version.version}: classes.json does not match the checkpoint's classes")
    prune(Path(cache_dir), keep)
    return predictor


def prune(cache_dir: Path, keep: int) -> list[str]:
    """Remove all but the `keep` most recently used entries of a cache folder; returns what went."""
    entries = sorted((p for p in cache_dir.iterdir() if not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    gone = []
    for old in entries[keep:]:
        (shutil.rmtree if old.is_dir() else os.remove)(old)
        gone.append(old.name)
    if gone:
        log.info("cache %s: removed %s", cache_dir, ", ".join(gone))
    return gone


class AliasWatcher(threading.Thread):
    def __init__(self, holder: ModelHolder, registry, alias: str, cache_dir: Path, load: Callable[..., object],
                 poll_s: float = 5.0):
        super().__init__(name=f"watch-{alias}", daemon=True)
        self.holder, self.registry, self.alias, self.cache_dir = holder, registry, alias, Path(cache_dir)
        self.load, self.poll_s = load, poll_s
        self.stopped = threading.Event()
        self._refused: set[int] = set()

    def check_once(self) -> bool:
        """One poll; True if a new version is now being served."""
        try:
            version = self.registry.by_alias(self.alias)
        except Exception as exc:  # registry unreachable: keep serving, say so
            self.holder.error = {"alias": self.alias, "error": f"registry unreachable: {exc}"[:300]}
            self.holder.registry_unreachable = True
            log.warning("cannot read alias %s: %s", self.alias, exc)
            return False
        if self.holder.registry_unreachable:
            self.holder.registry_unreachable, self.holder.error = False, None
            log.info("the registry answers again")
        current = self.holder.current
        if version is None or (current and current.version == f"{self.registry.model_name}:v{version.version}"
                               and getattr(current, "run_id", None) == version.run_id):
            return False
        if version.version in self._refused:
            return False
        started = time.perf_counter()
        try:
            predictor = load_registered(self.registry, version, self.cache_dir, self.load)
        except Exception as exc:
            if not isinstance(exc, DownloadError):  # the version itself is unusable: do not try it again
                self._refused.add(version.version)
            reason = str(exc) if isinstance(exc, LoopError) else f"{type(exc).__name__}: {exc}"
            self.holder.error = {"version": version.version, "error": reason[:500]}
            log.error("refusing version %d of %s (alias %s): %s; still serving %s", version.version,
                      self.registry.model_name, self.alias, reason, current.version if current else "nothing")
            return False
        self.holder.swap(predictor)
        self.holder.last_swap_s = time.perf_counter() - started
        return True

    def run(self) -> None:
        while not self.stopped.wait(self.poll_s):
            self.check_once()

    def stop(self) -> None:
        self.stopped.set()
