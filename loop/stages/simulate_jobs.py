"""stage=simulate's seeds side by side (stage.jobs > 1): each seed in a process of its own, one thread each
where the cores allow no more, its rows sent back to the process that writes results.csv and MLflow.

Why: a benchmark is mostly training, and a small detector at 160 px keeps two threads only partly busy: on
a 2-core AMD EPYC three one-thread processes did 1.4x the work per hour of one two-thread process, and a
machine with many cores runs many seeds at once. Seeds are independent (a seed's rounds are not), so a
worker runs whole seeds. One process writes, since an MLflow SQLite store takes one writer at a time.

A worker that fails or dies stops the run with one line that names its seed and its log; the others are
stopped, and the rows already written stay in results.csv.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queues
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from loop.common.errors import LoopError

log = logging.getLogger(__name__)

# How long a worker that has exited may stay silent before its end counts as a crash (its last messages
# can still be in the pipe when the process is gone).
GRACE_S = 10.0


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Each worker's threads: the cores shared out, at least one."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, jobs))


def side_by_side(target: Callable, items: list, jobs: int, handle: Callable[[object, tuple], None],
                 log_of: Callable[[object], Path], poll_s: float = 1.0) -> None:
    """Run `target(item, emit)` for every item, at most `jobs` at a time, each in a fresh process (spawned:
    nothing of this process's threads or state is inherited) that logs to `log_of(item)`. `handle(item,
    message)` runs here for every message a worker emits, in order, and once more with ("done",) when the
    item finished. `target` must be picklable (a module-level function, or a partial of one)."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    pending, running, exited = list(items), {}, {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                item = pending.pop(0)
                proc = context.Process(target=_work, args=(target, item, str(log_of(item)), messages),
                                       name=f"simulate-{item}")
                proc.start()
                running[item] = proc
            try:
                item, message = messages.get(timeout=poll_s)
            except queues.Empty:
                _check_alive(running, exited, log_of)
                continue
            if message[0] == "failed":
                raise LoopError(f"seed {item}: {message[1]} (the whole traceback is in {log_of(item)})")
            handle(item, message)
            if message[0] == "done":
                running.pop(item).join()
                exited.pop(item, None)
    finally:
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            proc.join()
        messages.close()


def _check_alive(running: dict, exited: dict, log_of: Callable) -> None:
    now = time.monotonic()
    for item, proc in running.items():
        if proc.exitcode is None:
            continue
        since = exited.setdefault(item, now)
        if now - since > GRACE_S:
            raise LoopError(f"seed {item}: its process ended (exit code {proc.exitcode}) before it finished; see "
                            f"{log_of(item)}")


def _work(target: Callable, item, log_file: str, messages) -> None:
    """A worker process: everything it prints or logs goes to its own file (the console is the parent's
    progress bar), then run, then report the end or the error."""
    with open(log_file, "ab") as out:  # the file descriptors too, so the libraries' own output lands there
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    try:
        target(item, lambda message: messages.put((item, message)))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as one line
        logging.getLogger(__name__).error("failed:\n%s", traceback.format_exc())
        messages.put((item, ("failed", f"{type(exc).__name__}: {exc}")))
        messages.close()
        messages.join_thread()
        raise SystemExit(1) from None
    messages.put((item, ("done",)))
    messages.close()
    messages.join_thread()


def _exit_with(parent: int, poll_s: float = 1.0) -> None:
    """End this worker when the process that started it is gone (killed, say, with no chance to stop its
    workers): nobody would read its rows, and it would keep the cores busy for hours."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)
