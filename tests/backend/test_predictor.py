"""The predictor against mmdet itself: our batched, optimised path gives mmdet's detections."""

from __future__ import annotations

import numpy as np
import pytest

from backend.images import decode
from backend.predictor import Predictor
from loop.common.errors import LoopError

pytestmark = pytest.mark.integration


def test_optimised_batched_predictions_equal_mmdet_inference_detector(demo_model, demo_data):
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    from train.slim import load_slim

    images = [decode(p.read_bytes()).bgr for p in sorted((demo_data / "images").glob("test_00*.jpg"))[:6]]
    ours = Predictor.load(str(demo_model["checkpoint"]), batch_size=3).predict(images)

    slim = load_slim(demo_model["checkpoint"])
    cfg = Config.fromstring(slim["meta"]["config"], ".py")
    cfg.test_dataloader.dataset.pipeline = [s for s in cfg.test_dataloader.dataset.pipeline
                                            if s["type"] != "LoadAnnotations"]
    model = init_detector(cfg, checkpoint=None, device="cpu")
    model.load_state_dict(slim["state_dict"])
    for det, img in zip(ours, images):
        ref = inference_detector(model, img).pred_instances
        keep = ref.scores.numpy() >= 0.2  # below, near-equal scores may swap places
        n = int(keep.sum())
        assert n > 0
        assert np.array_equal(det.labels[:n], ref.labels.numpy()[keep])
        assert np.allclose(det.scores[:n], ref.scores.numpy()[keep], atol=2e-3)
        assert np.allclose(det.boxes[:n], ref.bboxes.numpy()[keep], atol=1.0)


def test_broken_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(LoopError, match="cannot be loaded"):
        Predictor.load(str(bad))
    with pytest.raises(LoopError, match="does not exist"):
        Predictor.load(str(tmp_path / "missing.pth"))


def test_cuda_asked_for_without_cuda_says_so(demo_model):
    import torch

    if torch.cuda.is_available():
        pytest.fail("this test expects a machine without CUDA")
    with pytest.raises(LoopError, match="CUDA is not available"):
        Predictor.load(str(demo_model["checkpoint"]), device="cuda:0")
