"""The predictor against mmdet itself: our batched, optimised path gives mmdet's detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.images import decode
from backend.predictor import Predictor, object_features
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


def test_object_features_sample_every_level_at_the_box_centre_in_network_input_pixels():
    def level(stride, h, w):  # channel 0 holds each cell centre's x in input pixels, channel 1 its y
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return torch.stack([(xs + 0.5) * stride, (ys + 0.5) * stride]).float()[None]

    levels = [level(8, 16, 24), level(16, 8, 12)]  # a 128 x 192 input
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [100.0, 0.0, 120.0, 10.0]])  # original image pixels
    meta = {"scale_factor": (0.5, 0.25), "pad_param": (16, 0, 8, 0)}  # top, bottom, left, right
    feats = object_features(levels, boxes, meta, (128, 192))
    centres = [[20 * 0.5 + 8, 30 * 0.25 + 16], [110 * 0.5 + 8, 5 * 0.25 + 16]]
    assert feats.shape == (2, 4)
    assert torch.allclose(feats, torch.tensor([c + c for c in centres]), atol=1e-3)
    assert object_features(levels, torch.zeros((0, 4)), meta, (128, 192)).shape == (0, 4)
