"""Benchmark: hot swap of the served model while clients keep predicting.

    .venv/bin/python bench/swap_bench.py [--clients 2] [--steady-s 15] [--img-size 320] \
        [--runtimes torch,onnx,onnx-bf16]

Registers two versions of a randomly initialised RTMDet-tiny in a temporary MLflow store, serves
`champion` with `python -m loop.run stage=serve backend.serve_alias=champion backend.poll_s=1`, runs clients in a
loop, promotes version 2, and prints: swap time (promotion -> first response from v2), failures, and request
latency p50/p99 in steady state vs during the swap (promotion -> 2 s after the first v2 response), for
each runtime in turn (`backend.runtime`; onnx-bf16 is onnx with `backend.precision=bf16`, measured by default
where the CPU has bfloat16 units). Versions carry model.onnx as stage=retrain registers them, so
the ONNX swap loads the exported network rather than exporting it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from backend.ort_session import bf16_refusal_here  # noqa: E402
from bench.serve_bench import CLASSES, random_checkpoint  # noqa: E402
from loop.clients.ls_server import free_port  # noqa: E402
from loop.clients.registry import Registry  # noqa: E402
from loop.clients.services import spawn, stop, wait_http  # noqa: E402
from loop.common.demo_data import ensure  # noqa: E402
from loop.common.label_configs import rectangle_labels_config  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402


def publish(registry: Registry, ckpt: Path, onnx: Path, tmp: Path, name: str) -> int:
    """A version as stage=retrain registers one: weights, classes and the network exported to ONNX."""
    model = tmp / name / "model"
    model.mkdir(parents=True)
    shutil.copy(ckpt, model / "model.pth")
    shutil.copy(onnx, model / "model.onnx")
    (model / "classes.json").write_text(json.dumps(CLASSES))
    with registry.run(name) as run:
        run.log_artifacts(model, "model")
    return registry.register(run.run_id, {}).version


RUNTIMES = {"torch": ["backend.runtime=torch"], "onnx": ["backend.runtime=onnx", "backend.precision=fp32"],
            "onnx-bf16": ["backend.runtime=onnx", "backend.precision=bf16"]}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


def measure(runtime: str, args, demo: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"swap-bench-{runtime}-"))
    from backend.onnx_runtime import export_onnx
    from backend.predictor import Predictor

    ckpt = random_checkpoint(args.img_size, tmp / "random.pth")
    # Exported once, before the clients start: both versions share the weights, and an export during the
    # steady-state window would slow the requests it measures.
    onnx = export_onnx(Predictor.load(str(ckpt)).model, args.img_size, tmp / "random.onnx")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    registry = Registry(uri, "swap-bench", artifact_location=str(tmp / "artifacts"))
    registry.promote(publish(registry, ckpt, onnx, tmp, "v1"))
    media = tmp / "media" / "1"
    media.mkdir(parents=True)
    shutil.copy(demo / "images" / "test_0001.jpg", media / "a.jpg")

    port = free_port()
    proc = spawn([sys.executable, "-m", "loop.run", "stage=serve", "backend.serve_alias=champion",
                  "backend.poll_s=1", f"backend.port={port}", f"registry.tracking_uri={uri}",
                  *RUNTIMES[runtime], "registry.model_name=swap-bench",
                  f"backend.image_dir={media.parent}", f"work_dir={tmp}"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, "stage=serve")
        records: list[tuple[float, float, bool, str]] = []  # (start, latency, ok, version)
        done = threading.Event()
        body = {"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}}],
                "label_config": rectangle_labels_config(CLASSES)}

        def client():
            with httpx.Client(timeout=60) as http:
                for _ in range(100000):
                    if done.is_set():
                        return
                    t = time.monotonic()
                    try:
                        r = http.post(f"{url}/predict", json=body)
                        ok, version = r.status_code == 200, r.json().get("model_version", "?")
                    except httpx.HTTPError:
                        ok, version = False, "?"
                    records.append((t, time.monotonic() - t, ok, version))

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.steady_s)
        v2 = publish(registry, ckpt, onnx, tmp, "v2")
        promoted = time.monotonic()
        registry.promote(v2)
        new = f"swap-bench:v{v2}"
        while not any(v == new for _, _, _, v in records[-args.clients:]) and time.monotonic() - promoted < 120:
            time.sleep(0.05)
        first_new = min(t + lat for t, lat, _, v in records if v == new)
        time.sleep(2)
        done.set()
        for t in threads:
            t.join()
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    steady = [lat for t, lat, _, _ in records if t < promoted]
    during = [lat for t, lat, _, _ in records if promoted <= t <= first_new + 2]
    return {"requests": len(records), "swap_s": first_new - promoted,
            "failures": sum(not ok for _, _, ok, _ in records),
            "steady_p50": pct(steady, .5), "steady_p99": pct(steady, .99),
            "swap_p50": pct(during, .5), "swap_p99": pct(during, .99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--steady-s", type=float, default=15)
    ap.add_argument("--img-size", type=int, default=320)
    ap.add_argument("--runtimes", default="torch,onnx" + (",onnx-bf16" if bf16_refusal_here() is None else ""))
    args = ap.parse_args()
    unknown = set(args.runtimes.split(",")) - set(RUNTIMES)
    if unknown:
        ap.error(f"unknown runtimes {sorted(unknown)}: choose from {', '.join(RUNTIMES)}")
    demo = ensure(REPO_ROOT / "data" / "demo")
    results = {rt: measure(rt, args, demo) for rt in args.runtimes.split(",")}
    print(f"RTMDet-tiny random init at {args.img_size}, {args.clients} clients, alias poll 1 s")
    print(f"{'runtime':9} {'requests':>8} {'swap s':>7} {'failed':>6} {'steady p50/p99 ms':>18} "
          f"{'swap p50/p99 ms':>16} {'p99 ratio':>9}")
    for rt, r in results.items():
        print(f"{rt:9} {r['requests']:8d} {r['swap_s']:7.2f} {r['failures']:6d} "
              f"{r['steady_p50']:9.0f}/{r['steady_p99']:<8.0f} {r['swap_p50']:8.0f}/{r['swap_p99']:<7.0f} "
              f"{r['swap_p99'] / r['steady_p99']:8.2f}x")


if __name__ == "__main__":
    main()
