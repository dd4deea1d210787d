"""Benchmark: naive per-image mmdet loop vs one batched /predict, on the same model and 32 images served by
a real Label Studio; plus single-task latency and backend cold start.

    .venv/bin/python bench/serve_bench.py [--images 32] [--img-size 640] [--checkpoint PATH]

(a) download each image from Label Studio, then mmdet's `inference_detector` on it, one by one, with the
    model config's own test settings (what users run); (a') the same with our score threshold applied
    before NMS, to show how much of the gain is post-processing. Both get the same warm-up as the served
    paths (one pass over every image size first) and the same subnormal flushing;
(b) one POST /predict with the 32 tasks to `python -m loop.run stage=serve` (a separate process) with
    backend.runtime=torch, (c) the same with backend.runtime=onnx (ONNX Runtime); (c') as (c), with the
    backend reading Label Studio's upload folder (backend.image_dir) instead of downloading over HTTP;
(d) as (c) with backend.precision=bf16 (OpenVINO; only where OpenVINO offers BF16 on this CPU);
(e) as (c) with backend.precision=int8 (the network quantized and checked as retrain does it); (e') as (c');
(s) with --seg-checkpoint, an instance segmentation model (RTMDet-Ins) over /predict on a boxes-only, a
    PolygonLabels and a BrushLabels project (what masks cost next to the same model's boxes), and its naive loop.
Every row prints how many boxes it returned. The floor is measured, not assumed: the network's work on
these images, at the sizes the backend letterboxes them to, over the multiply throughput measured on the
same cores in the same run (for fp32 the faster of a large matrix product in torch and in ONNX Runtime:
torch's MKL takes a slower path on AMD CPUs than ONNX Runtime's own kernels, which the network runs on;
for int8, ONNX Runtime's MatMulInteger).
Label Studio runs on the same cores, so every row also says how much CPU it spent serving the images.
With --checkpoint and --img-size, the checkpoint is served at that size (a copy whose config says so): a
model trained small timed at the model zoo's 640. Without --checkpoint a randomly initialised RTMDet-tiny
(our config at --img-size, mmdet's initialisation, seed 0) is used: the network's speed does not depend on
the weights, and like any untrained model it finds nothing above the score threshold, as a trained one finds
a few boxes; the bench prints how many.
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

from backend.ort_session import bf16_refusal_here  # noqa: E402
from loop.clients import labelstudio  # noqa: E402
from loop.clients.ls_server import LabelStudioServer, free_port  # noqa: E402
from loop.clients.media import MediaConfig, MediaFetcher  # noqa: E402
from loop.clients.services import spawn, stop, wait_http  # noqa: E402
from loop.common.demo_data import ensure, heldout_export  # noqa: E402
from loop.common.label_configs import rectangle_labels_config, segmentation_labels_config  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402

CONFIG = REPO_ROOT / "train" / "configs" / "rtmdet_tiny_demo.py"
CLASSES = ["circle", "square", "triangle", "star"]
SCORE_THRESHOLD = 0.3  # the backend's default


def sized(cfg, img_size: int):
    """`cfg` with every data pipeline (train, val, test) at a square of `img_size`."""
    from loop.common.model_config import set_input_size

    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        set_input_size(loader.dataset.pipeline, img_size)
    return cfg


def random_checkpoint(img_size: int, out: Path) -> Path:
    import torch
    from mmdet.apis import init_detector
    from mmengine.config import Config

    from train.slim import FORMAT
    from train.trainer import set_num_classes

    cfg = sized(Config.fromfile(str(CONFIG)), img_size)
    set_num_classes(cfg.model, len(CLASSES))
    cfg.test_dataloader.dataset.pipeline = [s for s in cfg.test_dataloader.dataset.pipeline
                                            if s["type"] != "LoadAnnotations"]
    torch.manual_seed(0)
    model = init_detector(cfg, checkpoint=None, device="cpu")
    # As training starts it (mmdet's init: class biases at a 1 % prior), not bare module defaults: those give
    # every location a score near 0.5, so post-processing would sort and NMS thousands of boxes per image that
    # no real model produces. Like an untrained model, this one finds nothing above the score threshold.
    model.init_weights()
    torch.save({"state_dict": model.state_dict(), "meta": {"format": FORMAT, "classes": CLASSES,
                                                           "img_size": img_size, "config": cfg.pretty_text}}, out)
    return out


def resized_checkpoint(ckpt: Path, img_size: int, out: Path) -> Path:
    """A copy of a slim checkpoint whose config serves (and tests, and trains) at `img_size`: the same weights,
    timed at another input size."""
    import torch
    from mmengine.config import Config

    from train.slim import load_slim

    slim = load_slim(ckpt)
    cfg = sized(Config.fromstring(slim["meta"]["config"], ".py"), img_size)
    torch.save({**slim, "meta": {**slim["meta"], "img_size": img_size, "config": cfg.pretty_text}}, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--img-size", type=int, help="input size (default 640; with --checkpoint: its config's)")
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--latency-requests", type=int, default=20)
    ap.add_argument("--seg-checkpoint", type=Path, help="an instance segmentation model (RTMDet-Ins) for rows (s)")
    args = ap.parse_args()
    import torch

    demo = ensure(REPO_ROOT / "data" / "demo")
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    if args.checkpoint is None:
        ckpt = random_checkpoint(args.img_size or 640, tmp / "rtmdet_tiny_random.pth")
    else:
        ckpt = args.checkpoint if args.img_size is None else \
            resized_checkpoint(args.checkpoint, args.img_size, tmp / f"{args.checkpoint.stem}-{args.img_size}.pth")

    with LabelStudioServer(venv=REPO_ROOT / ".venv-labelstudio", data_dir=tmp / "ls") as ls, \
            MediaFetcher(MediaConfig(ls_url=ls.url, api_key=ls.personal_access_token())) as fetcher, \
            labelstudio.session(ls.url, ls.personal_access_token()) as client:
        token = ls.personal_access_token()
        project = labelstudio.create_project(client, "serve-bench", rectangle_labels_config(CLASSES))
        files = sorted((demo / "images").glob("test_*.jpg"))[:args.images]
        labelstudio.upload_images(client, project.id, files)
        tasks = [{"id": t["id"], "data": t["data"]} for t in labelstudio.list_tasks(client, project.id)]

        # (a) naive: download, then inference_detector, one image at a time
        torch.set_flush_denormal(True)  # as the backend does (backend.loading.configure_threads)
        naive = {label: naive_loop(ckpt, fetcher, tasks, ls, threshold)
                 for label, threshold in (("(a)", None), ("(a')", SCORE_THRESHOLD))}
        naive_s = naive["(a)"]["s"]

        # (b), (c), (c') and (d): the backend as its own process, with torch/mmdet and with ONNX Runtime
        upload = tmp / "ls" / "media" / "upload"
        int8_dir = int8_version(ckpt, demo, tmp)
        rows = [("(a)", "naive, the config's test settings", None),
                ("(a')", f"naive, score >= {SCORE_THRESHOLD} before NMS", None),
                ("(b)", "torch", ["backend.runtime=torch"]),
                ("(c)", "onnx", ["backend.runtime=onnx", "backend.precision=fp32"]),
                ("(c')", "onnx, images from disk", ["backend.runtime=onnx", "backend.precision=fp32",
                                                   f"backend.image_dir={upload}"])]
        bf16 = bf16_refusal_here()
        if bf16 is None:
            rows.append(("(d)", "onnx bf16 (OpenVINO)", ["backend.runtime=onnx", "backend.precision=bf16"]))
        rows.append(("(e)", "onnx int8", ["backend.runtime=onnx", "backend.precision=int8"]))
        rows.append(("(e')", "onnx int8, images from disk", ["backend.runtime=onnx", "backend.precision=int8",
                                                            f"backend.image_dir={upload}"]))
        served = {label: serve(int8_dir / "model.pth" if label.startswith("(e") else ckpt, ls, token, tmp, tasks,
                               project.id, args.latency_requests, *overrides)
                  for label, _, overrides in rows[2:]}
        if args.seg_checkpoint:
            segmentation(args.seg_checkpoint, ls, token, tmp, tasks, project.id, fetcher)
    n = len(tasks)
    size = f"input {args.img_size or 640}" if args.img_size or not args.checkpoint else "input size of its config"
    print(f"model: RTMDet-tiny {'random init' if not args.checkpoint else args.checkpoint}, {size}, "
          f"{n} images ({files[0].name}...), torch threads {torch.get_num_threads()}")
    thresholded_s = naive["(a')"]["s"]
    for label, what, _ in rows[:2]:
        r = naive[label]
        print(f"{label} download + inference_detector loop, {what}: {n / r['s']:6.2f} images/s ({r['s']:.2f} s); "
              f"{r['boxes']:.1f} boxes per image")
    for label, what, _ in rows[2:]:
        r = served[label]
        print(f"{label} one /predict with {n} tasks, {what}: {n / r['batch_s']:6.2f} images/s "
              f"({r['batch_s']:.2f} s; first pass over these image sizes {r['first_s']:.2f} s), "
              f"ratio to (a) {naive_s / r['batch_s']:.2f}x, to (a') {thresholded_s / r['batch_s']:.2f}x; "
              f"{r['regions']:.1f} regions per image")
        print(f"    single-task /predict latency: p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms; "
              f"cold start (process start -> /health OK): {r['cold_s']:.1f} s; peak RSS {r['peak_mb']:.0f} MB")
    if bf16 is not None:
        print(f"(d) bf16 not measured: {bf16}")
    from backend.predictor import Predictor

    predictor = Predictor.load(str(ckpt))
    fp32, inputs = prepared(predictor, files, tmp)
    shapes = [tuple(x.shape[2:]) for x in inputs]
    threads = torch.get_num_threads()
    torch_rate, ort_rate, int8_rate = sgemm_gflops(threads), matmul_gflops(threads), matmul_integer_gops(threads)
    fp32_rate = max(torch_rate, ort_rate)
    side = fp32.input_size
    square = gflop(predictor.model, (side, side))
    per_shape = {s: gflop(predictor.model, s) for s in set(shapes)}
    mean_gflop = sum(per_shape[s] for s in shapes) / len(shapes)
    floor_ms = mean_gflop / fp32_rate * 1000
    print(f"measured on {threads} threads, 2048^3 products: fp32 {torch_rate:.0f} GFLOP/s in torch, {ort_rate:.0f} "
          f"GFLOP/s in ONNX Runtime (the floor takes the faster); int8 MatMulInteger {int8_rate:.0f} GOP/s "
          "(ONNX Runtime)")
    print(f"floor: {square:.1f} GFLOP per {side}^2 image = {square / fp32_rate * 1000:.0f} ms in fp32; "
          f"these images as the backend letterboxes them ({', '.join(f'{w}x{h}' for h, w in sorted(per_shape))}) "
          f"average {mean_gflop:.1f} GFLOP = {floor_ms:.0f} ms per image in fp32 (the floor used below), "
          f"{mean_gflop / int8_rate * 1000:.0f} ms in int8")
    from backend.onnx_runtime import OnnxDetector, load_onnx

    int8_det = OnnxDetector(int8_dir / "model.int8.onnx", predictor.model.cfg, predictor.classes, "int8",
                            fp32.input_size, precision="int8")
    for precision, key in [("fp32", "(c)"), ("int8", "(e)")] + ([("bf16", "(d)")] if bf16 is None else []):
        det = {"fp32": fp32, "int8": int8_det}.get(precision) or load_onnx(predictor, tmp / "onnx-cache",
                                                                           precision=precision)
        net_ms = network_only(det, inputs)
        own_floor = mean_gflop / (int8_rate if precision == "int8" else fp32_rate) * 1000
        print(f"(n) the network alone in ONNX Runtime, {precision}, same images, in this process: {net_ms:.0f} ms "
              f"per image = {net_ms / floor_ms:.2f}x the fp32 floor, {net_ms / own_floor:.2f}x its own; {key} "
              f"spends {net_ms / (served[key]['batch_s'] / n * 1000):.0%} of its time there")
    for label, what, _ in rows:
        total_s, ls_s = (naive[label]["s"], naive[label]["ls"]) if label in naive else \
            (served[label]["batch_s"], served[label]["ls_cpu_s"])
        per_image = total_s / n * 1000
        print(f"{label:<4} {per_image:6.0f} ms per image end to end = {per_image / floor_ms:.2f}x the floor, "
              f"{naive_s / total_s:.2f}x faster than (a); Label Studio CPU serving the images "
              f"{ls_s / n * 1000:.0f} ms per image ({what})")


def naive_loop(ckpt: Path, fetcher, tasks, ls, threshold: float | None) -> dict:
    """Download, then mmdet's `inference_detector`, one image at a time, on mmdet's own model as a user builds
    it (init_detector, the config's test settings; with `threshold`, that score threshold), after the same
    warm-up as the served paths get: every image size once."""
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    from train.slim import load_slim

    slim = load_slim(ckpt)
    model = init_detector(Config.fromstring(slim["meta"]["config"], ".py"), checkpoint=None, device="cpu")
    model.load_state_dict(slim["state_dict"])
    model.dataset_meta = {"classes": slim["meta"]["classes"]}
    if threshold is not None:
        model.test_cfg.score_thr = model.bbox_head.test_cfg.score_thr = threshold
    for task in tasks:
        inference_detector(model, mmcv.imfrombytes(fetcher.fetch(task["data"]["image"])))
    t, ls_cpu, boxes = time.perf_counter(), group_cpu_s(ls.proc.pid), 0
    for task in tasks:
        boxes += len(inference_detector(model, mmcv.imfrombytes(fetcher.fetch(task["data"]["image"]))).pred_instances)
    return {"s": time.perf_counter() - t, "ls": group_cpu_s(ls.proc.pid) - ls_cpu, "boxes": boxes / len(tasks)}


def segmentation(ckpt: Path, ls, token, tmp, tasks, project_id, fetcher) -> None:
    """(s) an instance segmentation model over /predict: the same model on a boxes-only project, a PolygonLabels
    project and a BrushLabels project (what masks cost), next to its naive inference_detector loop."""
    n = len(tasks)
    naive = naive_loop(ckpt, fetcher, tasks, ls, None)
    print(f"(s-a) instance segmentation model {ckpt}: naive loop {naive['s'] / n * 1000:.0f} ms per image, "
          f"{naive['boxes']:.1f} instances per image")
    configs = {"boxes": rectangle_labels_config(CLASSES), "polygons": segmentation_labels_config(CLASSES),
               "brush": segmentation_labels_config(CLASSES, "BrushLabels")}
    rows = {what: serve(ckpt, ls, token, tmp, tasks, project_id, 5, label_config=xml) for what, xml in configs.items()}
    for what, r in rows.items():
        print(f"(s) one /predict with {n} tasks, {what}: {r['batch_s'] / n * 1000:.0f} ms per image, "
              f"{naive['s'] / r['batch_s']:.2f}x faster than its naive loop, {r['regions']:.1f} regions per image, "
              f"{r['batch_s'] / rows['boxes']['batch_s']:.2f}x the boxes alone (goal <= 1.5x)")


def serve(ckpt, ls, token, tmp, tasks, project_id, latency_requests, *overrides, label_config: str | None = None
          ) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "loop.run", "stage=serve", f"backend.checkpoint={ckpt}", f"backend.port={port}",
           f"labelstudio.url={ls.url}", f"work_dir={tmp}", f"backend.score_threshold={SCORE_THRESHOLD}", *overrides]
    runtime = "torch" if "backend.runtime=torch" in overrides else "onnxruntime"
    precision = next((o.split("=")[1] for o in overrides if o.startswith("backend.precision=")), "fp32")
    started = time.perf_counter()
    proc = spawn(cmd, env={"LABEL_STUDIO_API_KEY": token})  # never on the command line
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, "stage=serve")
        cold_s = time.perf_counter() - started
        body = {"tasks": tasks, "label_config": label_config or rectangle_labels_config(CLASSES),
                "project": f"{project_id}.0"}
        # A first pass meets every input shape once (OpenVINO prepares its kernels per shape); the timed pass
        # is the steady state of a server that has seen these sizes before.
        t = time.perf_counter()
        httpx.post(f"{url}/predict", json=body, timeout=600)
        first_s = time.perf_counter() - t
        t, ls_cpu = time.perf_counter(), group_cpu_s(ls.proc.pid)
        r = httpx.post(f"{url}/predict", json=body, timeout=600)
        batch_s = time.perf_counter() - t
        ls_cpu_s = group_cpu_s(ls.proc.pid) - ls_cpu
        assert r.status_code == 200 and len(r.json()["results"]) == len(tasks), r.text[:300]
        regions = sum(len(result["result"]) for result in r.json()["results"]) / len(tasks)
        health = httpx.get(f"{url}/health").json()
        assert health["runtime"] == runtime and (health["precision"] == precision or health.get("precision_refused")), \
            health
        if health.get("precision_refused"):
            print(f"note: {' '.join(overrides)} served {health['precision']}: {health['precision_refused']}")
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
    return {"batch_s": batch_s, "first_s": first_s, "regions": regions, "p50": statistics.median(lat), "p95": q[18],
            "cold_s": cold_s, "peak_mb": peak_mb, "ls_cpu_s": ls_cpu_s}


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


def prepared(predictor, files: list[Path], tmp: Path):
    """(fp32 ONNX detector, network inputs): the images as the ONNX backend prepares them."""
    from backend.images import decode
    from backend.loading import configure_threads
    from backend.onnx_runtime import load_onnx

    configure_threads(None)
    det = load_onnx(predictor, tmp / "onnx-cache")
    return det, [det.network_input([decode(f.read_bytes()).bgr]) for f in files]


def network_only(det, inputs) -> float:
    """ms per image of ONNX Runtime's session.run alone on these inputs."""
    for x in inputs:
        det.session.run(None, {"input": x})  # every shape once, as the served runs are warmed
    started = time.perf_counter()
    for x in inputs:
        det.session.run(None, {"input": x})
    return (time.perf_counter() - started) / len(inputs) * 1000


def gflop(net, shape: tuple[int, int]) -> float:
    """The network's floating-point work for one input of this (height, width), mmengine's counter x 2
    (it counts one multiply-add as one flop)."""
    from mmengine.analysis import get_model_complexity_info

    info = get_model_complexity_info(net, input_shape=(3, *shape), show_table=False, show_arch=False)
    return 2 * info["flops"] / 1e9


def sgemm_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """fp32 multiply-add throughput measured here: the best of `repeats` n x n x n matrix products in torch."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def matmul_integer_gops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """int8 multiply-add throughput measured here: ONNX Runtime's MatMulInteger (uint8 x int8 -> int32), the
    kernel its quantized convolutions run on, best of `repeats` n x n x n products."""
    import numpy as np

    rng = np.random.default_rng(0)
    return _ort_matmul_rate("MatMulInteger", {"a": rng.integers(0, 255, (n, n), dtype=np.uint8),
                                              "b": rng.integers(-127, 127, (n, n), dtype=np.int8)}, threads, repeats)


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """fp32 multiply-add throughput of ONNX Runtime's own MatMul (its MLAS kernels, which its convolutions
    share), best of `repeats` n x n x n products."""
    import numpy as np

    rng = np.random.default_rng(0)
    return _ort_matmul_rate("MatMul", {"a": rng.standard_normal((n, n), dtype=np.float32),
                                       "b": rng.standard_normal((n, n), dtype=np.float32)}, threads, repeats)


def _ort_matmul_rate(op: str, feed: dict, threads: int, repeats: int) -> float:
    """2 n^3 / the best time of one `op` (MatMul or MatMulInteger) on these two n x n inputs, in G/s."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = feed["a"].shape[0]
    kind = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "int8": TensorProto.INT8}
    out = TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], op,
                              [helper.make_tensor_value_info(k, kind[str(v.dtype)], [n, n]) for k, v in feed.items()],
                              [helper.make_tensor_value_info("y", out, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    session.run(None, feed)
    best = min(_timed(lambda: session.run(None, feed)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def int8_version(ckpt: Path, demo: Path, tmp: Path) -> Path:
    """A version folder for (e), made as retrain makes one: the fp32 network exported and checked, then
    quantized on held-out images (16 demo test images) and checked against fp32 by their mAP."""
    import shutil

    from backend.onnx_check import onnx_check
    from loop.stages.int8_check import int8_check

    model, exported = tmp / "int8-version" / "model", tmp / "int8-version" / "export"
    model.mkdir(parents=True)
    shutil.copy(ckpt, model / "model.pth")
    coco = heldout_export(demo, exported, 16)
    onnx_state = onnx_check(model, [exported / im["file_name"] for im in coco["images"][:8]], SCORE_THRESHOLD)
    state, detail = int8_check(model, exported, SCORE_THRESHOLD, 0.01)
    print(f"(e) the version's checks: fp32 ONNX {onnx_state[0]}; int8 {state}: {detail}")
    return model


if __name__ == "__main__":
    main()
