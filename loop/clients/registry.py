"""The MLflow model registry and tracking runs: the only module that imports mlflow.

Semantics (see README, "Registry"): one registered model per Label Studio project; every retrain registers
a version and points the alias `challenger` at it; `champion` (what the backend serves) moves only through
`promote`, which remembers the previous champion so `rollback` can move it back. No deprecated stages.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from loop.common.errors import LoopError

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_DIR = "model"  # artifact folder of a run that holds the slim checkpoint, config and classes
_HISTORY_TAG = "champion_history"
DIGEST_TAG = "model_sha256"  # SHA-256 of model/model.pth, recorded at registration


def is_missing(error_code: str, message: str) -> bool:
    """Does an MLflow error mean "there is no such model, version or alias"? (pure)

    Only then may the registry answer "none": a tracking server that is down, refuses the token or fails
    inside must stop a retrain, not make it believe there is no champion (it would promote its model as
    "the first version")."""
    if error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    # MLflow reports a missing alias on an existing model as a bad parameter
    return (error_code == "INVALID_PARAMETER_VALUE" and " alias " in message
            and message.rstrip(".").endswith("not found"))


@dataclass(frozen=True)
class Version:
    version: int
    run_id: str
    tags: dict[str, str]

    def metric(self, key: str) -> float | None:
        value = self.tags.get(key)
        return float(value) if value not in (None, "") else None


class Registry:
    def __init__(self, tracking_uri: str, model_name: str, experiment: str = "labelloop",
                 artifact_location: str | None = None):
        import mlflow
        from mlflow import MlflowClient

        self._mlflow = mlflow
        self.tracking_uri, self.model_name = tracking_uri, model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.experiment = experiment
        self.artifact_location = artifact_location

    # -- tracking runs ---------------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        location = self.artifact_location
        if location and "://" not in location:
            location = Path(location).resolve().as_uri()
        return self.client.create_experiment(self.experiment, artifact_location=location)

    @contextmanager
    def run(self, name: str, tags: dict[str, str] | None = None) -> Iterator["Run"]:
        """A tracking run that ends FINISHED, or FAILED (and re-raises) if the block raises."""
        created = self.client.create_run(self._experiment_id(), run_name=name, tags=tags or {})
        run = Run(self.client, created.info.run_id)
        try:
            yield run
        except BaseException:
            self.client.set_terminated(run.run_id, status="FAILED")
            raise
        self.client.set_terminated(run.run_id, status="FINISHED")

    def fail_abandoned(self, project_id: str, still_running) -> list[str]:
        """Mark FAILED this project's runs left RUNNING by a retrain that was killed (`still_running(tags)`
        says whether the process that owns a run is alive); returns their ids. Such runs never registered
        anything; this only keeps the tracking UI honest."""
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            return []
        runs = self.client.search_runs([exp.experiment_id],
                                       f"tags.project_id = '{project_id}' and attributes.status = 'RUNNING'")
        gone = []
        for run in runs:
            if not still_running(run.data.tags):
                self.client.set_tag(run.info.run_id, "abandoned", "its process ended before the run finished")
                self.client.set_terminated(run.info.run_id, status="FAILED")
                gone.append(run.info.run_id)
        if gone:
            log.warning("runs %s of project %s were left running by a stopped retrain; marked FAILED",
                        ", ".join(gone), project_id)
        return gone

    # -- versions and aliases --------------------------------------------------------------------------
    def _unless_missing(self, call, what: str):
        """call(), or None when MLflow says it does not exist; any other registry error stops here with one
        line (fail closed: nothing is read as "no champion" that is not)."""
        from mlflow.exceptions import MlflowException

        try:
            return call()
        except MlflowException as exc:
            if is_missing(str(exc.error_code), str(exc.message)):
                return None
            raise LoopError(f"the model registry at {self.tracking_uri} failed while reading {what} "
                            f"({exc.error_code}: {str(exc.message)[:200]}); nothing was changed. Check that it is "
                            "running and that registry.tracking_uri and its credentials are right") from None

    def _ensure_model(self) -> None:
        if self._unless_missing(lambda: self.client.get_registered_model(self.model_name), "the model") is None:
            self.client.create_registered_model(self.model_name, description="labelloop detector")

    def register(self, run_id: str, tags: dict[str, Any]) -> Version:
        """A new version from the run's `model/` artifacts (logged completely before this is called)."""
        self._ensure_model()
        mv = self.client.create_model_version(self.model_name, f"runs:/{run_id}/{MODEL_DIR}", run_id=run_id,
                                              tags={k: str(v) for k, v in tags.items()})
        self.client.set_registered_model_alias(self.model_name, CHALLENGER, mv.version)
        return self.get(int(mv.version))

    def get(self, version: int) -> Version:
        mv = self._unless_missing(lambda: self.client.get_model_version(self.model_name, str(version)),
                                  f"version {version}")
        if mv is None:
            raise LoopError(f"model '{self.model_name}' has no version {version} in {self.tracking_uri}")
        return Version(int(mv.version), mv.run_id, dict(mv.tags))

    def run_of(self, version: int) -> "Run":
        """The tracking run a registered version came from (to add figures measured later, e.g. effort)."""
        return Run(self.client, self.get(version).run_id)

    def by_alias(self, alias: str) -> Version | None:
        mv = self._unless_missing(lambda: self.client.get_model_version_by_alias(self.model_name, alias),
                                  f"the alias '{alias}'")
        return None if mv is None else Version(int(mv.version), mv.run_id, dict(mv.tags))

    def champion(self) -> Version | None:
        return self.by_alias(CHAMPION)

    def _history(self) -> list[int]:
        model = self._unless_missing(lambda: self.client.get_registered_model(self.model_name), "the model")
        return [] if model is None else json.loads(model.tags.get(_HISTORY_TAG, "[]"))

    def promote(self, version: int, reason: str = "") -> tuple[int | None, int]:
        """Point `champion` at `version`; returns (previous, new). The previous one is kept for rollback."""
        target = self.get(version)
        current = self.champion()
        if current and current.version == target.version:
            log.info("champion of %s is already version %d", self.model_name, target.version)
            return current.version, target.version
        history = self._history()
        if current and (not history or history[-1] != current.version):  # once, even after an interrupted call
            history.append(current.version)
        # History first: a call interrupted between the two writes leaves the old champion serving and
        # remembered, never a new champion whose predecessor is forgotten.
        self.client.set_registered_model_tag(self.model_name, _HISTORY_TAG, json.dumps(history[-50:]))
        self.client.set_registered_model_alias(self.model_name, CHAMPION, str(target.version))
        log.info("champion of %s: %s -> version %d%s", self.model_name,
                 f"version {current.version}" if current else "none", target.version,
                 f" ({reason})" if reason else "")
        return (current.version if current else None), target.version

    def rollback(self) -> tuple[int, int]:
        """Move `champion` back to the champion before it; returns (from, to)."""
        current = self.champion()
        history = self._history()
        while current is not None and history and history[-1] == current.version:
            history.pop()  # left by a promotion interrupted before its alias moved
        if current is None or not history:
            raise LoopError(f"nothing to roll back: model '{self.model_name}' has "
                            f"{'no champion' if current is None else 'no earlier champion'}")
        previous = history.pop()
        self.client.set_registered_model_alias(self.model_name, CHAMPION, str(previous))
        self.client.set_registered_model_tag(self.model_name, _HISTORY_TAG, json.dumps(history))
        log.info("rollback of %s: champion version %d -> version %d", self.model_name, current.version, previous)
        return current.version, previous

    def download(self, version: Version, dst: Path) -> Path:
        """The version's `model/` artifacts in a local folder."""
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self._mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=MODEL_DIR,
                                                              dst_path=str(dst), tracking_uri=self.tracking_uri))


class Run:
    """The calls a retrain makes on its tracking run."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:5000])

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_artifact(self, local_file: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_file), artifact_path)
