"""Start Training jobs across server restarts and workers, with real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from backend.jobs import JobRunner, JobsBusy


def stand_in(args: list[str]) -> subprocess.Popen:
    """A process that lives until its stdin closes (`args` only shape its command line)."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", *args], stdin=subprocess.PIPE)


def job_file(runner_dir, job_id, state, pid, project=1):
    runner_dir.mkdir(parents=True, exist_ok=True)
    (runner_dir / f"{job_id}.json").write_text(json.dumps({"id": job_id, "project_id": project, "state": state,
                                                            "created_at": time.time(), "pid": pid}))


def test_jobs_whose_process_is_gone_are_failed_at_start_and_live_ones_are_left_alone(tmp_path):
    jobs = tmp_path / "jobs"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    live = stand_in(["-m", "loop.run", "stage=retrain"])  # a live process that is a retrain of ours
    other = stand_in([])  # alive, but not a retrain: its number was reused
    try:
        job_file(jobs, "gone", "running", ended.pid)
        job_file(jobs, "queued", "queued", None)
        job_file(jobs, "reused", "running", other.pid)
        job_file(jobs, "live", "running", live.pid)
        job_file(jobs, "done", "succeeded", ended.pid)
        runner = JobRunner(tmp_path, [])  # what a restarted backend does first
        states = {j["id"]: j["state"] for j in runner.list()}
        assert states == {"gone": "failed", "queued": "failed", "reused": "failed", "live": "running",
                          "done": "succeeded"}
        assert "is gone" in runner.get("gone")["error"] and "Start Training again" in runner.get("gone")["error"]
        # a second worker starting now finds nothing more to fix, and joins the live job instead of a new one
        second = JobRunner(tmp_path, [])
        assert second.reconcile() == []
        job, started = second.start(1)
        assert job["id"] == "live" and not started
    finally:
        for proc in (live, other):
            proc.stdin.close()
            proc.wait()


def test_past_two_waiting_retrains_start_training_is_refused_until_one_ends(tmp_path):
    retrains = [stand_in(["-m", "loop.run", "stage=retrain"]) for _ in range(2)]
    try:
        for project, proc in zip((1, 2), retrains):
            job_file(tmp_path / "jobs", f"p{project}", "running", proc.pid, project)
        runner = JobRunner(tmp_path, [])
        assert runner.start(2)[0]["id"] == "p2"  # the same project joins its job
        with pytest.raises(JobsBusy, match="2 retrain jobs are already queued or running"):
            runner.start(3)
    finally:
        for proc in retrains:
            proc.stdin.close()
            proc.wait()
