"""int8 through ONNX Runtime: quantized at retrain time on a version's held-out images, checked against fp32
by held-out mAP, and served only when the check passed (else fp32, and /health says why)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from backend.loading import ServeSettings, model_loader, wanted_precision
from backend.onnx_check import onnx_check
from backend.onnx_runtime import detection_agreement
from backend.predictor import Detections
from backend.quantize import INT8_CHECK, INT8_FILE, int8_verdict, read_check
from loop.common.demo_data import heldout_export
from loop.stages.int8_check import int8_check


def test_the_verdict_follows_the_tolerance_and_never_passes_an_empty_comparison():
    assert int8_verdict(0.50, 0.495, 10, 0.01)[0] == "passed"
    assert int8_verdict(0.50, 0.48, 10, 0.01)[0] == "failed"
    assert int8_verdict(0.50, 0.55, 10, 0.0)[0] == "passed"
    state, why = int8_verdict(0.0, 0.0, 0, 0.01)
    assert state == "inconclusive" and "finds nothing" in why


def test_agreement_counts_the_reference_detections_the_candidate_keeps():
    ref = [Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5.0]]), np.array([0.9, 0.8, 0.1]),
                      np.array([0, 1, 0]))]
    cand = [Detections(np.array([[0, 0, 10, 11], [20, 20, 30, 30.0]]), np.array([0.85, 0.7]), np.array([0, 2]))]
    assert detection_agreement(ref, cand, 0.3) == (1, 2)  # the second has another label; the third scores 0.1


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


def test_a_checkpoint_without_a_checked_int8_network_serves_fp32_and_says_why(demo_model, tmp_path):
    network, why = read_check(demo_model["checkpoint"].parent)
    assert network is None and "stage=retrain" in why


@pytest.mark.parametrize("runtime, device, expected", [("auto", "cpu", "int8"), ("onnx", "cpu", "int8"),
                                                       ("torch", "cpu", "fp32"), ("auto", "cuda:0", "fp32")])
def test_auto_tries_int8_only_where_onnx_runtime_runs_on_the_cpu(runtime, device, expected):
    assert wanted_precision("auto", runtime, device) == expected
    assert wanted_precision("bf16", runtime, device) == "bf16"  # asked for: taken as asked (and checked)
