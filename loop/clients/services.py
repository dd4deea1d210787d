"""Child services (the ML backend, the MLflow UI): start one, wait until it answers, stop it.

One place for the "wait until the URL answers, but fail at once with the log's tail if the process dies"
loop that the demo, the benchmarks and the test fixtures all need.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable

import httpx

from loop.common.errors import LoopError
from loop.common.paths import REPO_ROOT


def spawn(cmd: list[str], log_file: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `cmd` in the repository, its output appended to `log_file` (discarded without one), with `env`
    added to this process's environment (the way secrets reach a child: never on its command line)."""
    environment = {**os.environ, **(env or {})}
    if log_file is None:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, env=environment)
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=environment)


def stop(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM (the services shut down cleanly on it), SIGKILL if that is not enough."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_to_end(cmd: list[str], log_file: Path, what: str) -> None:
    """Run `cmd` to its end, its output in `log_file`; a non-zero exit is a LoopError with the log's tail.
    Ctrl-C stops it too."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    proc = spawn(cmd, log_file)
    try:
        code = proc.wait()
    except BaseException:
        stop(proc)
        raise
    if code != 0:
        raise LoopError(f"{what} exited with code {code}; see {log_file}{_tail(log_file)}")


def _tail(log_file: Path | None, lines: int = 15) -> str:
    if log_file is None or not Path(log_file).exists():
        return ""
    return ":\n" + "\n".join(Path(log_file).read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, proc: subprocess.Popen | None = None, what: str = "the service",
              log_file: Path | None = None, timeout_s: float = 180, poll_s: float = 0.2,
              ready: Callable[[httpx.Response], bool] | None = None) -> float:
    """Block until GET `url` answers 200 (and `ready(reply)` holds, when given); returns the seconds waited.
    Fails with the log's tail as soon as `proc` exits, and after `timeout_s`. The one wait-for-a-URL loop:
    child services, Label Studio, and a backend reloading a new version all wait here."""
    started = time.monotonic()
    see = f"; see {log_file}" if log_file else ""
    with httpx.Client(timeout=2) as http:
        while time.monotonic() - started < timeout_s:
            if proc is not None and proc.poll() is not None:
                raise LoopError(f"{what} exited with code {proc.returncode} while starting{see}{_tail(log_file)}")
            try:
                reply = http.get(url)
                if reply.status_code == 200 and (ready is None or ready(reply)):
                    return time.monotonic() - started
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(poll_s)
    raise LoopError(f"{what} did not answer {url} within {timeout_s:.0f} s{see}{_tail(log_file)}")
