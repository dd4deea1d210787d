"""Benchmark: fuzz the ML backend as an attacker would, and count what got through.

    .venv/bin/python bench/fuzz.py [--requests 10000] [--no-auth] [--workers 2]

Serves a randomly initialised RTMDet-tiny with `python -m loop.run stage=serve` (basic auth on, as Label
Studio's Connect Model form would send it; Start Training enabled), then sends about --requests requests:
half hand-written hostile ones (huge, deeply nested, wrong types, unicode, 10 MB strings, path traversal in
every URL kind, file:// and gopher://, loopback spelled every way, cloud metadata addresses), half generated
by schemathesis from the server's own OpenAPI document, positive and negative cases for every endpoint.
Prints the requests sent, the answers by status, every 5xx, whether the server is alive, and its memory
before and after (after a warm-up of the same requests). The test suite runs the same at a small budget.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.serve_bench import random_checkpoint  # noqa: E402
from loop.clients.ls_server import free_port  # noqa: E402
from loop.clients.services import spawn, stop, wait_http  # noqa: E402
from loop.common.demo_data import ensure  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402
from tests.fuzzing import fuzz  # noqa: E402

USER, PASSWORD = "fuzz", "fuzz-password"


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (the server workers), in MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in (children.read_text().split() if children.exists() else []):
        try:
            total += rss_mb(int(child))
        except OSError:
            pass  # it ended meanwhile
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--no-auth", action="store_true", help="fuzz without basic auth (every handler reachable)")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (one job table between them)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-bench-"))
    ckpt = random_checkpoint(160, tmp / "random.pth")
    media = tmp / "upload" / "1"
    media.mkdir(parents=True)
    shutil.copy(ensure(REPO_ROOT / "data" / "demo") / "images" / "test_0001.jpg", media / "a.jpg")
    port = free_port()
    auth = None if args.no_auth else (USER, PASSWORD)
    env = {} if args.no_auth else {"BASIC_AUTH_USER": USER, "BASIC_AUTH_PASS": PASSWORD}
    proc = spawn([sys.executable, "-m", "loop.run", "stage=serve", f"backend.checkpoint={ckpt}",
                  f"backend.port={port}", f"backend.image_dir={media.parent}", "backend.max_body_mb=16",
                  f"backend.workers={args.workers}", f"labelstudio.url=http://127.0.0.1:{free_port()}",
                  f"work_dir={tmp}"], tmp / "serve.log",
                 env={**env, "LABEL_STUDIO_API_KEY": "fuzz-token"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, "stage=serve", tmp / "serve.log")
        fuzz(url, 300, auth)  # warm-up: every kind of request once, so the baseline includes what they allocate
        before = rss_mb(proc.pid)
        started = time.perf_counter()
        outcome = fuzz(url, args.requests, auth, seed=1)
        took = time.perf_counter() - started
        alive = proc.poll() is None and httpx.get(f"{url}/health", timeout=10).status_code == 200
        after = rss_mb(proc.pid)
    finally:
        stop(proc)
    print(f"workers: {args.workers}, auth: {'basic' if auth else 'off'}")
    print(f"requests: {outcome.requests} in {took:.0f} s; answers by status: {dict(sorted(outcome.statuses.items()))}")
    print(f"5xx answers: {len(outcome.server_errors)}" + "".join(f"\n  {e}" for e in outcome.server_errors[:20]))
    print(f"server alive after: {alive}; memory {before:.0f} MB after warm-up -> {after:.0f} MB after the run "
          f"({after - before:+.0f} MB)")
    print(f"server log: {tmp / 'serve.log'}")
    sys.exit(0 if alive and not outcome.server_errors else 1)


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
