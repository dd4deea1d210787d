"""Benchmark: naive per-image mmdet loop vs one batched /predict, on the same model and 32 images served by
a real Label Studio; plus single-task latency and backend cold start.

    .venv/bin/python bench/serve_bench.py [--images 32] [--img-size 640] [--checkpoint PATH]

(a) download each image from Label Studio, then mmdet's `inference_detector` on it, one by one;
(b) one POST /predict with the 32 tasks to `python -m loop.run stage=serve` (a separate process) with
    backend.runtime=torch, (c) the same with backend.runtime=onnx (ONNX Runtime); (c') as (c), with the
    backend reading Label Studio's upload folder (backend.image_dir) instead of downloading over HTTP.
Label Studio runs on the same cores, so every row also says how much CPU it spent serving the images.
Without --checkpoint a randomly initialised RTMDet-tiny (our config at --img-size) is used: speed does not
depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from loop import labelstudio as lsx  # noqa: E402
from loop.demo_data import ensure  # noqa: E402
from loop.label_configs import rectangle_labels_config  # noqa: E402
from loop.ls_server import LabelStudioServer, free_port  # noqa: E402
from loop.paths import REPO_ROOT  # noqa: E402
from loop.services import spawn, stop, wait_http  # noqa: E402

CONFIG = REPO_ROOT / "train" / "configs" / "rtmdet_tiny_demo.py"
CLASSES = ["circle", "square", "triangle", "star"]


def random_checkpoint(img_size: int, out: Path) -> Path:
    import torch
    from mmengine.config import Config
    from mmdet.apis import init_detector

    from train.slim import FORMAT
    from train.trainer import _set_num_classes, _set_scale

    cfg = Config.fromfile(str(CONFIG))
    _set_num_classes(cfg.model, len(CLASSES))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        _set_scale(loader.dataset.pipeline, img_size)
    cfg.test_dataloader.dataset.pipeline = [s for s in cfg.test_dataloader.dataset.pipeline
                                            if s["type"] != "LoadAnnotations"]
    model = init_detector(cfg, checkpoint=None, device="cpu")
    torch.save({"state_dict": model.state_dict(), "meta": {"format": FORMAT, "classes": CLASSES,
                                                           "img_size": img_size, "config": cfg.pretty_text}}, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--img-size", type=int, default=640)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--latency-requests", type=int, default=20)
    args = ap.parse_args()
    import torch

    demo = ensure(REPO_ROOT / "data" / "demo")
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    ckpt = args.checkpoint or random_checkpoint(args.img_size, tmp / "rtmdet_tiny_random.pth")

    with LabelStudioServer(venv=REPO_ROOT / ".venv-labelstudio", data_dir=tmp / "ls") as ls:
        token = ls.personal_access_token()
        client = lsx.connect(ls.url, token)
        project = lsx.create_project(client, "serve-bench", rectangle_labels_config(CLASSES))
        files = sorted((demo / "images").glob("test_*.jpg"))[:args.images]
        lsx.upload_images(client, project.id, files)
        tasks = [{"id": t["id"], "data": t["data"]} for t in lsx.list_tasks(client, project.id)]

        # (a) naive: download, then inference_detector, one image at a time
        import mmcv
        from mmdet.apis import inference_detector

        from mmengine.config import Config
        from mmdet.apis import init_detector

        from train.slim import load_slim

        slim = load_slim(ckpt)  # mmdet's own model as a user builds it: init_detector, default test settings
        naive_model = init_detector(Config.fromstring(slim["meta"]["config"], ".py"), checkpoint=None, device="cpu")
        naive_model.load_state_dict(slim["state_dict"])
        naive_model.dataset_meta = {"classes": slim["meta"]["classes"]}
        inference_detector(naive_model, mmcv.imfrombytes(lsx.download(client, tasks[0]["data"]["image"])))  # warm
        t, ls_cpu = time.perf_counter(), group_cpu_s(ls.proc.pid)
        for task in tasks:
            inference_detector(naive_model, mmcv.imfrombytes(lsx.download(client, task["data"]["image"])))
        naive_s = time.perf_counter() - t
        naive_ls = group_cpu_s(ls.proc.pid) - ls_cpu
        del naive_model

        # (b) and (c): the backend as its own process, with torch/mmdet and with ONNX Runtime
        upload = tmp / "ls" / "media" / "upload"
        served = {key: serve(ckpt, ls, token, tmp, tasks, project.id, args.latency_requests, *overrides)
                  for key, overrides in (("torch", ["backend.runtime=torch"]), ("onnx", ["backend.runtime=onnx"]),
                                         ("onnx-disk", ["backend.runtime=onnx", f"backend.image_dir={upload}"]))}
    n = len(tasks)
    print(f"model: RTMDet-tiny {'random init' if not args.checkpoint else ckpt}, input {args.img_size}, "
          f"{n} images ({files[0].name}...), torch threads {torch.get_num_threads()}")
    rows = (("(a)", "naive", None), ("(b)", "torch", "torch"), ("(c)", "onnx", "onnx"),
            ("(c')", "onnx, images from disk", "onnx-disk"))
    print(f"(a) naive download + inference_detector loop: {n / naive_s:6.2f} images/s ({naive_s:.2f} s)")
    for label, what, key in rows[1:]:
        r = served[key]
        print(f"{label} one /predict with {n} tasks, {what}: {n / r['batch_s']:6.2f} images/s "
              f"({r['batch_s']:.2f} s), ratio to (a) {naive_s / r['batch_s']:.2f}x")
        print(f"    single-task /predict latency: p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms; "
              f"cold start (process start -> /health OK): {r['cold_s']:.1f} s; peak RSS {r['peak_mb']:.0f} MB")
    from backend.predictor import Predictor

    predictor = Predictor.load(str(ckpt))
    gflop, floor_ms, how = flops_floor(predictor.model, args.img_size, torch.get_num_threads())
    print(f"floating-point floor: {gflop:.1f} GFLOP per {args.img_size}^2 image / ({how}) = {floor_ms:.0f} ms")
    net_ms, shapes = network_only(predictor, files, tmp)
    print(f"(n)  the network alone in ONNX Runtime, same images ({shapes}), in this process: {net_ms:.0f} ms per "
          f"image = {net_ms / floor_ms:.2f}x the floor; (c) spends {net_ms / (served['onnx']['batch_s'] / n * 1000):.0%}"
          " of its time there")
    for label, what, key in rows:
        total_s, ls_s = (naive_s, naive_ls) if key is None else (served[key]["batch_s"], served[key]["ls_cpu_s"])
        per_image = total_s / n * 1000
        print(f"{label:<4} {per_image:6.0f} ms per image end to end = {per_image / floor_ms:.2f}x the floor, "
              f"{naive_s / total_s:.2f}x faster than (a); Label Studio CPU serving the images "
              f"{ls_s / n * 1000:.0f} ms per image ({what})")

def serve(ckpt, ls, token, tmp, tasks, project_id, latency_requests, *overrides) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "loop.run", "stage=serve", f"backend.checkpoint={ckpt}", f"backend.port={port}",
           f"labelstudio.url={ls.url}", f"labelstudio.api_key={token}", f"work_dir={tmp}", *overrides]
    runtime = "torch" if "backend.runtime=torch" in overrides else "onnxruntime"
    started = time.perf_counter()
    proc = spawn(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, "stage=serve")
        cold_s = time.perf_counter() - started
        body = {"tasks": tasks, "label_config": rectangle_labels_config(CLASSES), "project": f"{project_id}.0"}
        httpx.post(f"{url}/predict", json={**body, "tasks": tasks[:2]}, timeout=600)  # warm
        t, ls_cpu = time.perf_counter(), group_cpu_s(ls.proc.pid)
        r = httpx.post(f"{url}/predict", json=body, timeout=600)
        batch_s = time.perf_counter() - t
        ls_cpu_s = group_cpu_s(ls.proc.pid) - ls_cpu
        assert r.status_code == 200 and len(r.json()["results"]) == len(tasks), r.text[:300]
        assert httpx.get(f"{url}/health").json()["runtime"] == runtime
        failures = httpx.get(f"{url}/metrics").json()["task_failures"]
        assert failures == 0, f"{failures} tasks failed with {overrides}"
        peak_mb = _peak_rss_mb(proc.pid)
        lat = []
        for i in range(latency_requests):
            t = time.perf_counter()
            httpx.post(f"{url}/predict", json={**body, "tasks": [tasks[i % len(tasks)]]}, timeout=60)
            lat.append(time.perf_counter() - t)
    finally:
        stop(proc)
    q = statistics.quantiles(lat, n=20)
    return {"batch_s": batch_s, "p50": statistics.median(lat), "p95": q[18], "cold_s": cold_s, "peak_mb": peak_mb,
            "ls_cpu_s": ls_cpu_s}


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of one process group (Label Studio's)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...; utime, stime at 11, 12
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory of the serving process (VmHWM), one model loaded and after the benchmark."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def network_only(predictor, files: list[Path], tmp: Path) -> tuple[float, str]:
    """ms per image of ONNX Runtime's session.run alone on the images as the backend prepares them."""
    from backend.images import decode
    from backend.models import configure_threads
    from backend.onnx_runtime import load_onnx

    configure_threads(None)
    det = load_onnx(predictor, tmp / "onnx-cache")
    inputs = [det._batch([det._prepare(decode(f.read_bytes()).bgr)[0]]) for f in files]
    det.session.run(None, {"input": inputs[0]})
    started = time.perf_counter()
    for x in inputs:
        det.session.run(None, {"input": x})
    shapes = sorted({f"{x.shape[3]}x{x.shape[2]}" for x in inputs})
    return (time.perf_counter() - started) / len(inputs) * 1000, ", ".join(shapes)


def flops_floor(net, img_size: int, cores: int) -> tuple[float, float, str]:
    """(GFLOP per image, floor in ms, how the peak was taken): the network's multiply-adds at this input size
    (mmengine's counter) times 2, over the cores' nominal FP32 FMA peak from the CPU flags and clock."""
    from mmengine.analysis import get_model_complexity_info

    info = get_model_complexity_info(net, input_shape=(3, img_size, img_size), show_table=False, show_arch=False)
    gflop = 2 * info["flops"] / 1e9  # mmengine counts one multiply-add as one flop
    flags = Path("/proc/cpuinfo").read_text()
    mhz = max(float(line.split(":")[1]) for line in flags.splitlines() if line.startswith("cpu MHz"))
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    peak = cores * mhz / 1000 * lanes * 2 * 2  # GFLOP/s: 2 FMA units, 2 flops per FMA
    how = f"{cores} cores x {mhz / 1000:.2f} GHz x {lanes} fp32 lanes x 2 FMA units x 2 = {peak:.0f} GFLOP/s"
    return gflop, gflop / peak * 1000, how


if __name__ == "__main__":
    main()
