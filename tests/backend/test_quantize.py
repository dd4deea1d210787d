"""int8 through ONNX Runtime: quantized at retrain time on a version's held-out images, checked against fp32
by held-out mAP, and served only when the check passed (else fp32, and /health says why)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from backend.loading import ServeSettings, model_loader, wanted_precision
from backend.onnx_check import onnx_check
from backend.onnx_runtime import detection_agreement
from backend.predictor import Detections
from backend.quantize import INT8_CHECK, INT8_FILE, int8_verdict, quantize_int8, read_check
from loop.common.demo_data import heldout_export
from loop.common.paths import REPO_ROOT
from loop.stages.int8_check import int8_check


def test_the_verdict_follows_the_tolerance_and_never_passes_an_empty_comparison():
    assert int8_verdict(0.50, 0.495, 10, 0.01)[0] == "passed"
    assert int8_verdict(0.50, 0.48, 10, 0.01)[0] == "failed"
    assert int8_verdict(0.50, 0.55, 10, 0.0)[0] == "passed"
    state, why = int8_verdict(0.0, 0.0, 0, 0.01)
    assert state == "inconclusive" and "finds nothing" in why
    state, why = int8_verdict(0.0, 0.0, 12, 0.01)  # detections, none right: int8 has nothing to keep
    assert state == "inconclusive" and "mAP is 0" in why and "stage=retrain" in why


def test_agreement_counts_the_reference_detections_the_candidate_keeps():
    ref = [Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5.0]]), np.array([0.9, 0.8, 0.1]),
                      np.array([0, 1, 0]))]
    cand = [Detections(np.array([[0, 0, 10, 11], [20, 20, 30, 30.0]]), np.array([0.85, 0.7]), np.array([0, 2]))]
    assert detection_agreement(ref, cand, 0.3) == (1, 2)  # the second has another label; the third scores 0.1


def test_convolutions_that_share_equal_tensors_are_quantized_too(tmp_path):
    """torch's exporter hands equal weights and biases (fresh layers, a head's levels) to their other users
    through Identity nodes; every convolution must still get int8 weights and an int32 bias."""
    import onnx
    import onnxruntime as ort
    import torch

    class Twins(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
            self.c = torch.nn.Conv2d(8, 8, 3, padding=1)
            for conv in (self.a, self.b, self.c):
                torch.nn.init.zeros_(conv.bias)
            self.c.weight.data.copy_(self.b.weight.data)

        def forward(self, x):
            return self.c(torch.relu(self.b(torch.relu(self.a(x)))))

    torch.manual_seed(0)
    fp32, int8 = tmp_path / "twins.onnx", tmp_path / "twins.int8.onnx"
    torch.onnx.export(Twins().eval(), torch.randn(1, 3, 16, 16), str(fp32), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["out"])
    assert any(n.op_type == "Identity" for n in onnx.load(str(fp32)).graph.node)  # the exporter shared them
    rng = np.random.default_rng(0)
    quantize_int8(fp32, int8, [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(4)])
    graph = onnx.load(str(int8)).graph
    constants = {init.name: init.data_type for init in graph.initializer}
    made_by = {out: node for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == 3
    for conv in convs:
        weight, bias = (made_by[name] for name in conv.input[1:])
        assert weight.op_type == bias.op_type == "DequantizeLinear", conv.name
        assert (constants[weight.input[0]], constants[bias.input[0]]) == (onnx.TensorProto.INT8, onnx.TensorProto.INT32)
    assert not list(tmp_path.glob("*.tmp"))
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    outputs = [ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
               for f in (fp32, int8)]
    assert np.abs(outputs[0] - outputs[1]).max() < 0.1 * np.abs(outputs[0]).max()


@pytest.fixture(scope="module")
def checked_version(demo_model, demo_data, tmp_path_factory):
    """A version's model/ folder (slim checkpoint, fp32 network) and an export whose held-out split is 24 demo
    test images."""
    root = tmp_path_factory.mktemp("int8")
    model = root / "model"
    model.mkdir()
    shutil.copy(demo_model["checkpoint"], model / "model.pth")
    exported = root / "export"
    coco = heldout_export(demo_data, exported, 24)
    images = [exported / im["file_name"] for im in coco["images"][:8]]
    assert onnx_check(model, images, 0.3)[0] == "passed"
    return model, exported


@pytest.mark.parametrize("tolerance, expected", [(1.0, "passed"), (-1.0, "failed")])
def test_a_version_serves_int8_only_when_its_check_passed(checked_version, demo_data, tolerance, expected,
                                                          tmp_path):
    model, exported = checked_version
    state, detail = int8_check(model, exported, 0.3, tolerance)
    check = json.loads((model / INT8_CHECK).read_text())
    assert state == check["state"] == expected
    assert (state, detail) == (int8_verdict(check["fp32_mAP"], check["int8_mAP"], 1, tolerance)[0], check["detail"])
    # the quantized network is a real int8 one that still detects the shapes (on any CPU: a loose bound)
    assert (model / INT8_FILE).stat().st_size < 0.5 * (model / "model.onnx").stat().st_size
    assert check["int8_mAP"] > check["fp32_mAP"] - 0.05 and check["compared"] > 0
    assert check["kept"] >= 0.8 * check["compared"]

    load = model_loader(ServeSettings(checkpoint="", precision="int8", cache_dir=str(tmp_path),
                                      score_threshold=0.3))
    served = load(str(model / "model.pth"))
    if expected == "passed":
        assert (served.precision, served.path.name, served.precision_refused) == ("int8", INT8_FILE, None)
    else:
        assert served.precision == "fp32" and "int8 check failed" in served.precision_refused
    image = [cv2.imread(str(demo_data / "images" / "test_0001.jpg"))]
    assert len(served.predict(image)[0].scores) > 0
    # the default, auto: the checked int8 network on the CPU, fp32 (noted, not refused) otherwise
    auto = model_loader(ServeSettings(checkpoint="", cache_dir=str(tmp_path), score_threshold=0.3))
    served = auto(str(model / "model.pth"))
    assert served.precision == ("int8" if expected == "passed" else "fp32") and served.precision_refused is None
    assert (served.precision_note is None) == (expected == "passed")
    torch_auto = model_loader(ServeSettings(checkpoint="", runtime="torch", score_threshold=0.3))
    assert torch_auto(str(model / "model.pth")).precision == "fp32"


def test_the_int8_network_gives_the_same_outputs_on_a_cpu_with_avx2_only(checked_version, tmp_path):
    """Weights use 7 bits so that x86-64 CPUs without VNNI, whose u8 x s8 kernels add pairs of products in 16
    bits, compute what VNNI (and ARM) CPUs compute. An AVX2-only CPU (Haswell) is emulated by qemu-x86_64, so
    this checks the same thing on every host; bench/int8_cpus.py adds ARM and the 8-bit weights it guards
    against (their outputs differ there by tens)."""
    from backend.onnx_runtime import open_onnx
    from backend.predictor import Detections, Predictor

    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 is missing: apt-get install qemu-user (make setup installs it as root)"
    model, exported = checked_version
    reference = Predictor.load(str(model / "model.pth"), score_threshold=0.3)
    fp32 = open_onnx(reference, model / "model.onnx", reference.input_size)
    val = json.loads((exported / "val.json").read_text())
    arrays = [cv2.imread(str(exported / im["file_name"])) for im in val["images"]]
    int8 = quantize_int8(model / "model.onnx", tmp_path / INT8_FILE, (fp32.network_input([a]) for a in arrays))
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **{f"x{i}": fp32.network_input([a]) for i, a in enumerate(arrays[:6])})
    worker = [str(REPO_ROOT / "bench" / "ort_outputs.py"), str(int8), str(inputs)]
    runs = {}
    for name, prefix in (("here", [sys.executable]), ("haswell", [qemu, "-cpu", "Haswell", sys.executable])):
        done = subprocess.run([*prefix, *worker, str(tmp_path / f"{name}.npz")], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = (np.load(tmp_path / f"{name}.npz"), done.stdout)
    assert "AVX2" in runs["haswell"][1] and "AVX512" not in runs["haswell"][1], runs["haswell"][1]
    here, haswell = runs["here"][0], runs["haswell"][0]
    assert sorted(here.files) == sorted(haswell.files) and len(here.files) == 6 * 6  # 6 images x 6 outputs
    assert max(float(np.abs(here[k] - haswell[k]).max()) for k in here.files) <= 1e-3
    detector = open_onnx(reference, int8, reference.input_size, 0.3, precision="int8")
    boxes = [Detections(*detector._decode([here[f"y{i}_{k}"] for k in range(6)], 0, *detector._prepare(a)[1:]))
             for i, a in enumerate(arrays[:6])]
    assert sum(len(d.scores) for d in boxes) > 0  # the compared outputs hold detections


def test_a_checkpoint_without_a_checked_int8_network_serves_fp32_and_says_why(demo_model, tmp_path):
    network, why = read_check(demo_model["checkpoint"].parent)
    assert network is None and "stage=retrain" in why


@pytest.mark.parametrize("runtime, device, expected", [("auto", "cpu", "int8"), ("onnx", "cpu", "int8"),
                                                       ("torch", "cpu", "fp32"), ("auto", "cuda:0", "fp32")])
def test_auto_tries_int8_only_where_onnx_runtime_runs_on_the_cpu(runtime, device, expected):
    assert wanted_precision("auto", runtime, device) == expected
    assert wanted_precision("bf16", runtime, device) == "bf16"  # asked for: taken as asked (and checked)
