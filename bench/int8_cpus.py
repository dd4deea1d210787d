"""Benchmark: does a version's int8 network give the same detections on every CPU it is meant for?

    .venv/bin/python bench/int8_cpus.py [--checkpoint PATH] [--arm-root DIR --arm-site DIR]

The int8 network is made as retrain makes it (the fp32 network exported and checked, then quantized on 16
held-out demo images), with the weights' 7 bits (ours) and, for comparison, with all 8 (same calibration).
Both run over the 60 demo test images on:
- this CPU, natively;
- an x86-64 with AVX2 and neither AVX-512 nor VNNI (Haswell), emulated by `qemu-x86_64 -cpu Haswell`: ONNX
  Runtime's u8 x s8 kernels there add pairs of products in 16 bits, which full-range weights can saturate;
- ARM (aarch64), emulated by `qemu-aarch64`, with dot-product instructions (`-cpu max`) and without
  (`-cpu cortex-a72`, as on a Raspberry Pi 4). This needs an aarch64 Python with numpy and onnxruntime:
  `--arm-root` an extracted arm64 Debian (python3, libstdc++6), `--arm-site` their aarch64 wheels
  (docs/serving-speed.md).
Each run saves the raw network outputs (bench/ort_outputs.py, numpy and onnxruntime only); our own
post-processing turns them into boxes here. Printed per CPU: the largest difference in the raw outputs
from this CPU's, how many of this CPU's detections scoring >= 0.3 it keeps (same label, IoU >= 0.5), and
COCO mAP on the test split. Emulated timings mean nothing and are not printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.precision_bench import coco_dets  # noqa: E402
from bench.serve_bench import int8_version  # noqa: E402
from loop.common.demo_data import ensure  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402

WORKER = Path(__file__).resolve().parent / "ort_outputs.py"
SCORE_THRESHOLD = 0.3


def cpus(arm_root: Path | None, arm_site: Path | None) -> dict[str, tuple[list[str], dict[str, str]] | str]:
    """name -> (command prefix, extra environment), or why that CPU cannot be run here."""
    found = {"this CPU": ([sys.executable], {})}
    qemu_x86, qemu_arm = shutil.which("qemu-x86_64"), shutil.which("qemu-aarch64")
    found["x86-64 AVX2 only (Haswell)"] = ([qemu_x86, "-cpu", "Haswell", sys.executable], {}) if qemu_x86 else \
        "qemu-x86_64 not found (apt-get install qemu-user)"
    arm_ready = qemu_arm and arm_root and arm_site and (arm_root / "usr/bin/python3").exists()
    for name, cpu in (("aarch64 with dot product", "max"), ("aarch64 without dot product (Cortex-A72)", "cortex-a72")):
        found[name] = ([qemu_arm, "-cpu", cpu, "-L", str(arm_root), str(arm_root / "usr/bin/python3")],
                       {"PYTHONPATH": str(arm_site)}) if arm_ready else \
            "needs qemu-aarch64 (qemu-user 8 or newer), --arm-root and --arm-site (see docs/serving-speed.md)"
    return found


def run_outputs(prefix: list[str], env: dict[str, str], network: Path, inputs: Path, out: Path) -> tuple[list, str]:
    """Every input's raw outputs from the worker run under `prefix`, and the line it printed."""
    done = subprocess.run([*prefix, str(WORKER), str(network), str(inputs), str(out)], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", **env}, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(prefix[:3])}: {done.stderr.strip()[-500:]}")
    saved, count = np.load(out), len(np.load(inputs).files)
    per_input = len(saved.files) // count
    return [[saved[f"y{i}_{k}"] for k in range(per_input)] for i in range(count)], done.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--arm-root", type=Path, help="an extracted arm64 Debian with python3 and libstdc++6")
    ap.add_argument("--arm-site", type=Path, help="numpy and onnxruntime installed for that Python (aarch64)")
    args = ap.parse_args()
    cached = sorted((REPO_ROOT / "runs" / "test-cache").glob("demo-model-*/model.pth"))
    ckpt = args.checkpoint or next(iter(cached), None)
    if ckpt is None:
        sys.exit("no trained model: pass --checkpoint PATH, or run `make test` once (it trains the demo model)")

    from backend.images import decode
    from backend.onnx_runtime import detection_agreement, open_onnx
    from backend.predictor import Detections, Predictor
    from backend.quantize import quantize_int8
    from train.evaluate import coco_eval

    demo = ensure(REPO_ROOT / "data" / "demo")
    tmp = Path(tempfile.mkdtemp(prefix="int8-cpus-"))
    model = int8_version(ckpt, demo, tmp)  # model.onnx, and model.int8.onnx quantized with 7-bit weights
    reference = Predictor.load(str(model / "model.pth"), score_threshold=0.05)
    size = reference.input_size
    gt_file = demo / "test.json"
    gt = json.loads(gt_file.read_text())
    images = [decode((demo / im["file_name"]).read_bytes()).bgr for im in gt["images"]]
    detector = open_onnx(reference, model / "model.int8.onnx", size, 0.05, precision="int8")
    prepared = [detector._prepare(img) for img in images]
    inputs = tmp / "inputs.npz"
    np.savez(inputs, **{f"x{i}": detector._batch([p[0]]) for i, p in enumerate(prepared)})
    exported = model.parent / "export"  # int8_version's held-out images: the 8-bit network is calibrated alike
    held_out = json.loads((exported / "val.json").read_text())["images"]
    full_range = tmp / "model.int8-8bit.onnx"
    quantize_int8(model / "model.onnx", full_range,
                  (detector.network_input([decode((exported / im["file_name"]).read_bytes()).bgr]) for im in held_out),
                  reduce_range=False)
    networks = {"7-bit weights (ours)": model / "model.int8.onnx", "8-bit weights": full_range}

    def detections(outputs) -> list:
        return [Detections(*detector._decode(out, 0, shape, scale)) for out, (_, shape, scale) in zip(outputs,
                                                                                                       prepared)]

    def coco_map(found) -> float:
        dets = tmp / "dets.json"
        dets.write_text(json.dumps(coco_dets(gt, found)))
        return coco_eval(gt_file, dets)["bbox_mAP"]

    print(f"model {ckpt}, {len(images)} demo test images at {size} px")
    for label, network in networks.items():
        native = None
        for name, how in cpus(args.arm_root, args.arm_site).items():
            if isinstance(how, str):
                print(f"{label:<20} {name:<42} not run: {how}")
                continue
            outputs, line = run_outputs(*how, network, inputs, tmp / "outputs.npz")
            found = detections(outputs)
            if native is None:
                native = (outputs, found)
            worst = max(float(np.max(np.abs(a - b))) for out, ref in zip(outputs, native[0]) for a, b in zip(out, ref))
            kept, total = detection_agreement(native[1], found, SCORE_THRESHOLD)
            print(f"{label:<20} {name:<42} raw outputs differ from this CPU's by at most {worst:.3g}; keeps {kept} "
                  f"of this CPU's {total} detections >= {SCORE_THRESHOLD}; mAP {coco_map(found):.4f}  [{line}]")


if __name__ == "__main__":
    main()
