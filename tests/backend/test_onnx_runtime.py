"""ONNX Runtime and torch/mmdet give the same detections on the demo test images."""

from __future__ import annotations

import numpy as np
import pytest

from backend.images import decode
from backend.onnx_runtime import agreement, load_onnx, top_k
from backend.predictor import Predictor
from loop.common.errors import LoopError
from tests.helpers import bf16_refusal_here


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.integration
def test_onnx_and_torch_agree_on_the_demo_test_images(demo_model, demo_data, tmp_path):
    images = [decode(p.read_bytes()).bgr for p in sorted((demo_data / "images").glob("test_*.jpg"))]
    torch_path = Predictor.load(str(demo_model["checkpoint"]), score_threshold=0.3)
    onnx_path = load_onnx(torch_path, tmp_path, score_threshold=0.3)
    assert onnx_path.runtime == "onnxruntime" and onnx_path.classes == torch_path.classes
    reference, candidate = torch_path.predict(images), onnx_path.predict(images)
    total = 0
    for t, o in zip(reference, candidate):
        assert len(t.scores) == len(o.scores)
        for box, score, label in zip(t.boxes, t.scores, t.labels):
            assert any(label == ol and iou(box, ob) >= 0.99 and abs(score - os_) <= 1e-3
                       for ob, os_, ol in zip(o.boxes, o.scores, o.labels))
        total += len(t.scores)
    assert total > 50  # the comparison covered real detections
    assert agreement(reference, candidate)[0]
    shifted = [type(o)(o.boxes + 3, o.scores, o.labels) for o in candidate]
    ok, reason = agreement(reference, shifted)
    assert not ok and "no match" in reason
    assert np.isfinite(onnx_path.load_s)


@pytest.mark.integration
def test_cuda_uses_the_cuda_provider_or_is_refused_so_auto_serves_with_torch(demo_model, tmp_path):
    import onnxruntime as ort

    from backend.onnx_runtime import OnnxDetector

    torch_path = Predictor.load(str(demo_model["checkpoint"]))
    exported = load_onnx(torch_path, tmp_path)
    args = (exported.path, torch_path.model.cfg, torch_path.classes, "v", exported.size)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert OnnxDetector(*args, device="cuda:0").providers[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(LoopError, match="onnxruntime-gpu"):
            OnnxDetector(*args, device="cuda:0")
    assert OnnxDetector(*args, device="cpu").providers == ["CPUExecutionProvider"]


@pytest.mark.integration
def test_a_bf16_network_follows_what_openvino_reports(demo_model, tmp_path):
    """load_onnx with precision=bf16 gives an OpenVINO session in bf16 exactly where OpenVINO's report offers
    BF16, and otherwise refuses with that report's line. How close bf16 keeps the detections to fp32 depends
    on the CPU's bfloat16 units, so bench/precision_bench.py measures it. A refusal comes before the export."""
    torch_path = Predictor.load(str(demo_model["checkpoint"]), score_threshold=0.3)
    try:
        bf16 = load_onnx(torch_path, tmp_path, score_threshold=0.3, precision="bf16")
        answer = (bf16.session.get_providers()[0], bf16.precision)
    except LoopError as refused:
        answer = str(refused)
    refusal = bf16_refusal_here()
    assert answer == (refusal or ("OpenVINOExecutionProvider", "bf16"))
    assert len(list(tmp_path.glob("*.onnx"))) == (0 if refusal else 1)


def test_top_k_keeps_the_k_best_above_the_threshold_best_first():
    rng = np.random.default_rng(0)
    scores = rng.random(20000).astype(np.float32)
    got = top_k(scores, 0.3, 1000)
    above = np.flatnonzero(scores > 0.3)
    assert np.array_equal(got, above[np.argsort(-scores[above], kind="stable")][:1000])
    assert np.array_equal(top_k(scores, 0.9999, 1000), np.flatnonzero(scores > 0.9999))  # fewer than k: all
    assert top_k(scores, 1.0, 5).size == 0
