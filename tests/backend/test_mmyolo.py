"""MMYOLO's detectors (YOLOv5, YOLOv8, its RTMDet) as model-zoo configs with random weights (no downloads):
served by name or from the config the checkpoint carries, in torch and in ONNX Runtime around the model's
own head, with the same detections."""

from __future__ import annotations

import pytest

from backend.images import decode
from backend.onnx_heads import HeadOnnxDetector
from backend.onnx_runtime import agreement, load_onnx
from backend.predictor import Predictor
from tests.zoo import published, runner_checkpoint

pytestmark = pytest.mark.integration

MMYOLO = {"yolov5_n-v61_syncbn_fast_8xb16-300e_coco": "YOLOv5Head",
          "yolov8_n_syncbn_fast_8xb16-500e_coco": "YOLOv8Head",
          "rtmdet_tiny_syncbn_fast_8xb32-300e_coco": "RTMDetHead"}


@pytest.fixture(scope="module")
def images(demo_data):
    return [decode(p.read_bytes()).bgr for p in sorted((demo_data / "images").glob("test_*.jpg"))[:4]]


@pytest.mark.parametrize("name", sorted(MMYOLO))
def test_an_mmyolo_model_serves_in_torch_and_onnx_runtime_with_the_same_detections(name, images, tmp_path):
    checkpoint = published(runner_checkpoint(name, tmp_path / f"{name}.pth"), tmp_path / "published")
    by_name = Predictor.load(str(checkpoint), config=name, score_threshold=0.1)
    carried = Predictor.load(str(checkpoint), score_threshold=0.1)
    assert type(by_name.model).__name__ == type(carried.model).__name__ == "YOLODetector"
    assert type(by_name.model.bbox_head).__name__ == MMYOLO[name]
    assert type(by_name.model.bbox_head).__module__.startswith("mmyolo.")
    assert by_name.input_size == 640 and len(by_name.classes) == 80

    reference = by_name.predict(images)
    assert all(len(d.scores) for d in reference)  # random weights score classes near 0.5 (YOLOv5: times objectness)
    onnx = load_onnx(by_name, tmp_path / "cache")
    assert isinstance(onnx, HeadOnnxDetector) and onnx.runtime == "onnxruntime"
    ok, reason = agreement(reference, onnx.predict(images))
    assert ok, reason

    # a project that asks for two classes gets only those, in both runtimes alike
    asked = sorted({int(label) for label in reference[0].labels[:2]})
    restricted = by_name.predict(images, classes=asked)
    assert {int(label) for d in restricted for label in d.labels} <= set(asked)
    assert sum(len(d.scores) for d in restricted)
    ok, reason = agreement(restricted, onnx.predict(images, classes=asked))
    assert ok, reason
