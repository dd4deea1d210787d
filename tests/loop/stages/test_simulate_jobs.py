"""stage.jobs' process pool (loop.stages.simulate_jobs) with small stand-in workers in real spawned processes:
messages come back in order, output goes to each worker's log, a failure or a crash stops the run in one line."""

import multiprocessing
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import loop.stages.simulate_jobs as jobs
from loop.common.errors import LoopError
from loop.common.paths import REPO_ROOT
from loop.stages.simulate_jobs import side_by_side, threads_per_job


def counting(item, emit):
    print(f"hello from {item}", flush=True)
    for k in range(3):
        emit(("row", item, k))


def failing(item, emit):
    emit(("row", item, 0))
    if item == 2:
        raise ValueError("broken input")
    signal.pause()  # still running when item 2 fails: until it is stopped


def dying(item, emit):
    os._exit(3)


def sleeping(item, emit):
    Path(item + ".tmp").write_text(str(os.getpid()))
    Path(item + ".tmp").rename(item)  # whole, or not there yet
    signal.pause()  # until something ends it


def test_each_items_messages_come_back_in_order_and_its_output_goes_to_its_log(tmp_path, capfd):
    got = {}
    side_by_side(counting, [1, 2, 3], 2, lambda item, message: got.setdefault(item, []).append(message),
                 log_of=lambda item: tmp_path / f"seed{item}.log")
    assert got == {i: [("row", i, 0), ("row", i, 1), ("row", i, 2), ("done",)] for i in (1, 2, 3)}
    for i in (1, 2, 3):
        assert f"hello from {i}" in (tmp_path / f"seed{i}.log").read_text()
    assert "hello from" not in capfd.readouterr().out
    assert not multiprocessing.active_children()


def test_a_failing_item_stops_the_run_in_one_line_and_stops_the_others(tmp_path):
    got = []
    with pytest.raises(LoopError, match=r"^seed 2: ValueError: broken input \(the whole traceback is in .*seed2\.log"):
        side_by_side(failing, [1, 2], 2, lambda item, message: got.append((item, message)),
                     log_of=lambda item: tmp_path / f"seed{item}.log")
    assert not multiprocessing.active_children()  # item 1, still asleep, was stopped
    assert "Traceback" in (tmp_path / "seed2.log").read_text()
    assert (2, ("done",)) not in got


def test_a_worker_that_dies_is_named_with_its_exit_code(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "GRACE_S", 0.5)
    with pytest.raises(LoopError, match=r"seed 5: its process ended \(exit code 3\) before it finished; see .*seed5"):
        side_by_side(dying, [5], 1, lambda item, message: None, log_of=lambda item: tmp_path / f"seed{item}.log")


def test_threads_share_the_cores_and_never_drop_to_zero():
    assert threads_per_job(3, cores=2) == 1
    assert threads_per_job(2, cores=16) == 8
    assert threads_per_job(1, cores=2) == 2
    assert threads_per_job(4) >= 1


def test_workers_end_when_the_stage_is_killed(tmp_path):
    """kill -9 of the stage's process leaves no worker behind."""
    pid_file = tmp_path / "worker.pid"
    stage = subprocess.Popen([sys.executable, "-c", (
        "from tests.loop.stages.test_simulate_jobs import sleeping\n"
        "from loop.stages.simulate_jobs import side_by_side\n"
        f"side_by_side(sleeping, [{str(pid_file)!r}], 1, lambda item, message: None, "
        f"log_of=lambda item: {str(tmp_path / 'worker.log')!r})")], cwd=REPO_ROOT)
    try:
        while not pid_file.is_file():  # the worker is up (a hang here is caught by the stage's exit below)
            assert stage.poll() is None, "the stage ended before its worker started"
            time.sleep(0.2)
        worker = os.pidfd_open(int(pid_file.read_text()))  # readable once the worker has ended
        stage.kill()
        stage.wait()
        ended, _, _ = select.select([worker], [], [], 300)  # the bound only guards against a hang
        assert ended, "the worker outlived the stage"
        os.close(worker)
    finally:
        stage.kill()
