"""Benchmark: the model on a GPU (device=cuda:0) against the CPU: its detections, and a short fine-tune.

    .venv/bin/python bench/cuda_bench.py [--checkpoint PATH] [--data data/demo] [--device cuda:0]

Needs a CUDA build of torch and mmcv built with its CUDA ops (`FORCE_CUDA=1 MMCV_WITH_OPS=1`, README "On a
GPU"). Without --checkpoint it uses the model the test suite trains on the demo data
(runs/test-cache/demo-model-*/model.pth, made by `make test`).

1. The checkpoint's detections on 16 test images, on the CPU (in a child process: device=cpu hides the GPUs
   from the process) and on the GPU: of the CPU's detections clear of the serving threshold, how many the GPU
   keeps with the same label, IoU >= 0.98 and a score within 0.02; and the time of each.
2. A fine-tune from the checkpoint on the GPU, 4 epochs in batches of 8, through the trainer as stage=retrain
   calls it: on the whole pool, and on its first 25 images (whose last batch, of 1 image, the recipe leaves
   out): the iterations run against the count `batches_per_epoch` gives, the time, and mAP on the test split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from backend.predictor import Detections, Predictor  # noqa: E402
from bench.precision_bench import kept_clear, trained_checkpoint  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402
from train.trainer import TrainSpec, batches_per_epoch, train  # noqa: E402

IMAGES = 16


def detect(checkpoint: Path, data: Path, device: str) -> tuple[list[Detections], float]:
    """The checkpoint's detections on the first test images, and the seconds they took after one warm-up."""
    test = json.loads((data / "test.json").read_text())
    images = [cv2.imread(str(data / im["file_name"])) for im in test["images"][:IMAGES]]
    predictor = Predictor.load(str(checkpoint), device=device)
    predictor.predict(images[:1])
    started = time.perf_counter()
    detections = predictor.predict(images)
    return detections, time.perf_counter() - started


def cpu_detections(args, work: Path) -> tuple[list[Detections], float]:
    """The CPU's detections from a child process, since device=cpu hides the GPUs from the process it runs in."""
    out = work / "cpu.json"
    subprocess.run([sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--data", str(args.data),
                    "--cpu-to", str(out)], check=True)
    saved = json.loads(out.read_text())
    return [Detections(np.array(d["boxes"], np.float32).reshape(-1, 4), np.array(d["scores"], np.float32),
                       np.array(d["labels"], np.int64)) for d in saved["detections"]], saved["seconds"]


def fine_tune(args, work: Path, images: int) -> None:
    pool = json.loads((args.data / "pool.json").read_text())
    kept = pool["images"][:images]
    ids = {im["id"] for im in kept}
    subset = dict(pool, images=kept, annotations=[a for a in pool["annotations"] if a["image_id"] in ids])
    (work / f"pool{images}.json").write_text(json.dumps(subset))
    spec = TrainSpec(config=REPO_ROOT / "train" / "configs" / "rtmdet_tiny_demo.py", data_root=work,
                     train_ann=f"pool{images}.json", val_ann=str((args.data / "test.json").resolve()),
                     img_prefix=str(args.data.resolve()) + "/", work_dir=work / f"train{images}", epochs=4,
                     batch_size=8, warmup_iters=10, val_interval=4, num_workers=4, load_from=str(args.checkpoint),
                     device=args.device)
    result = train(spec)
    expected = spec.epochs * batches_per_epoch(images, spec.batch_size)
    print(f"fine-tune on {images} images, {result['device']}: {result['iterations']} iterations "
          f"(batches_per_epoch gives {expected}), {result['train_s']:.1f} s, "
          f"mAP {result['bbox_mAP']:.3f}, mAP@50 {result['bbox_mAP_50']:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "demo")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--score-threshold", type=float, default=0.3)
    ap.add_argument("--cpu-to", type=Path, help=argparse.SUPPRESS)  # the child process's output
    args = ap.parse_args()
    args.checkpoint = trained_checkpoint(args.checkpoint)
    if args.cpu_to:
        detections, seconds = detect(args.checkpoint, args.data, "cpu")
        args.cpu_to.write_text(json.dumps({"seconds": seconds, "detections": [
            {"boxes": d.boxes.tolist(), "scores": d.scores.tolist(), "labels": d.labels.tolist()}
            for d in detections]}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cpu, cpu_s = cpu_detections(args, work)
        gpu, gpu_s = detect(args.checkpoint, args.data, args.device)
        kept, clear = kept_clear(cpu, gpu, args.score_threshold)
        print(f"detections on {IMAGES} test images: CPU {cpu_s:.2f} s, {args.device} {gpu_s:.2f} s; of the CPU's "
              f"{clear} detections clear of the threshold {args.score_threshold}, {args.device} keeps {kept}",
              flush=True)
        pool_size = len(json.loads((args.data / "pool.json").read_text())["images"])
        for images in (pool_size, 25):
            fine_tune(args, work, images)


if __name__ == "__main__":
    main()
