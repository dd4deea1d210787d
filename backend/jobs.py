"""Retrain jobs: single-flight across processes, with state a person (or Label Studio) can look up.

Every retrain takes an exclusive lock on `<work_dir>/locks/retrain-project-<id>.lock` (fcntl), so a click on
Start Training, the scheduler and a hand-run `stage=retrain` of one project never train in parallel: the
second one waits. Each project has its own lock, as it has its own model line. Jobs started from
the backend run as separate processes (`python -m loop.run stage=retrain ...`), never in request threads;
their state lives in `<work_dir>/jobs/<id>.json`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from loop.common.errors import LoopError
from loop.common.secrets import API_KEY_ENV, without_secrets

log = logging.getLogger(__name__)

JOB_FILE_ENV = "LABELLOOP_JOB_FILE"
ACTIVE = ("queued", "running")


@contextmanager
def _exclusive(path: Path, waiting: str | None = None) -> Iterator[None]:
    """One holder at a time across threads, server workers and processes (an flock on `path`; each open()
    is its own lock owner, so threads of one process exclude each other too). `waiting` is logged when the
    lock is taken by someone else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info("%s (%s)", waiting, path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def retrain_lock(work_dir: Path, project_id: int | None = None):
    """One retrain at a time per project (each project trains its own model line), whichever process starts
    it; different projects may train side by side (Start Training allows `JobRunner.max_active` at once)."""
    name = "retrain.lock" if project_id is None else f"retrain-project-{int(project_id)}.lock"
    return _exclusive(Path(work_dir) / "locks" / name, f"another retrain of project {project_id} is running; "
                      "waiting for it")


def _write(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def update_current_job(**fields: Any) -> None:
    """Called inside a job's own process (no-op elsewhere): record its progress."""
    name = os.environ.get(JOB_FILE_ENV)
    if not name:
        return
    path = Path(name)
    state = json.loads(path.read_text()) if path.exists() else {}
    state.update(fields, updated_at=time.time())
    _write(path, state)


def retrain_is_running(pid: int | None) -> bool:
    """Is `pid` alive and still a retrain of ours (not a process that reused the number)?"""
    if not pid:
        return False
    for _ in range(20):
        try:
            cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
        except OSError:
            return False
        if cmdline:
            break
        time.sleep(0.05)  # empty while the process is in the middle of exec (or a zombie): look again
    args = cmdline.split(b"\0")
    return b"loop.run" in args and b"stage=retrain" in args


class JobsBusy(LoopError):
    """As many jobs are queued or running as the server allows; the message says so."""


class JobRunner:
    """Start Training jobs: one file per job under work_dir/jobs, shared by every server worker and process.
    A project's retrains run one at a time (its retrain lock) and projects may train side by side, so more than
    `max_active` processes would only compete for the same cores and memory: past that, Start Training
    answers 429 until one ends."""

    max_active = 2

    def __init__(self, work_dir: Path, retrain_overrides: list[str], api_key: str | None = None):
        self.dir = Path(work_dir) / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.overrides = without_secrets(list(retrain_overrides))  # argv is public (ps) and goes to the job log
        self.env = {API_KEY_ENV: api_key} if api_key else {}
        self.reconcile()

    def reconcile(self) -> list[str]:
        """Mark failed every queued or running job whose process is gone (the server that watched it was
        restarted or killed); returns their ids. A job still running keeps its state: it records its own end."""
        gone = []
        with _exclusive(self.dir / ".lock"):
            for path in self.dir.glob("*.json"):
                job = json.loads(path.read_text())
                if job.get("state") in ACTIVE and not retrain_is_running(job.get("pid")):
                    job.update(state="failed", updated_at=time.time(),
                               error=f"its process (pid {job.get('pid')}) is gone: the backend that started it "
                                     "stopped while it ran; press Start Training again")
                    _write(path, job)
                    gone.append(job["id"])
        if gone:
            log.warning("retrain jobs %s were left running by a stopped backend; marked failed", ", ".join(gone))
        return gone

    def get(self, job_id: str) -> dict | None:
        path = self.dir / f"{job_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def list(self) -> list[dict]:
        jobs = [json.loads(p.read_text()) for p in self.dir.glob("*.json")]
        return sorted(jobs, key=lambda j: j.get("created_at", 0), reverse=True)

    def start(self, project_id: int | None) -> tuple[dict, bool]:
        """(job, started): joins a queued/running job for the same project instead of starting another."""
        with _exclusive(self.dir / ".lock"):
            active = [job for job in self.list() if job.get("state") in ACTIVE]
            for job in active:
                if job.get("project_id") == project_id:
                    return job, False
            if len(active) >= self.max_active:
                raise JobsBusy(f"{len(active)} retrain jobs are already queued or running "
                               f"({', '.join(j['id'] for j in active)}); try again when one has ended")
            job_id = uuid.uuid4().hex[:12]
            path = self.dir / f"{job_id}.json"
            job = {"id": job_id, "project_id": project_id, "state": "queued", "created_at": time.time(),
                   "version": None, "error": None}
            _write(path, job)
            # the job's project is the one asked for, whatever project the server was started with
            cmd = [sys.executable, "-m", "loop.run", "stage=retrain",
                   *[o for o in self.overrides if not o.startswith("labelstudio.project_id=")]]
            if project_id is not None:
                cmd.append(f"labelstudio.project_id={project_id}")
            log_path = self.dir / f"{job_id}.log"
            with open(log_path, "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, **self.env, JOB_FILE_ENV: str(path)},
                                        start_new_session=True)
            job["pid"] = proc.pid
            _write(path, {**json.loads(path.read_text()), "pid": proc.pid})
            threading.Thread(target=self._watch, args=(proc, path, log_path), daemon=True).start()
            log.info("retrain job %s started for project %s (pid %d, log %s)", job_id, project_id, proc.pid, log_path)
            return job, True

    def _watch(self, proc: subprocess.Popen, path: Path, log_path: Path) -> None:
        code = proc.wait()
        state = json.loads(path.read_text())
        if state.get("state") in ACTIVE:  # the job died without saying how it ended
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
            state.update(state="failed" if code else "succeeded", exit_code=code,
                         error=(tail[0][:500] if tail else None) if code else None, updated_at=time.time())
            _write(path, state)
        log.info("retrain job %s %s (exit code %d)", state["id"], state["state"], code)
