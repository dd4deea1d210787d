"""Classes a project does not ask for are dropped inside the head, before top-k and NMS: a COCO model on a
one-label project returns that label's boxes even when 79 other classes score higher everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.class_mask import _softmax_hook, class_drop, install_class_mask
from backend.onnx_runtime import load_onnx
from backend.predictor import Predictor
from tests.zoo import class_logits, published, runner_checkpoint

KITE = 33  # COCO's kite


def test_class_drop_lists_what_is_not_kept():
    assert class_drop(5, None) is None
    assert class_drop(5, [0, 1, 2, 3, 4]) is None
    assert class_drop(5, [1, 3]).tolist() == [0, 2, 4]
    assert class_drop(3, []).tolist() == [0, 1, 2]


def test_softmax_drop_moves_probability_to_background_and_keeps_the_others_exactly():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.3], [0.1, 3.0, 1.0, -0.5]])  # 3 classes + background
    module = torch.nn.Identity()
    module.register_forward_hook(_softmax_hook(lambda: [1]))
    masked = module((logits, None))[0]
    before, after = logits.softmax(-1), masked.softmax(-1)
    assert torch.allclose(after[:, [0, 2]], before[:, [0, 2]], atol=1e-7)
    assert torch.all(after[:, 1] == 0)
    assert torch.allclose(after[:, 3], before[:, 3] + before[:, 1], atol=1e-7)


@pytest.fixture(scope="module")
def crowded_coco_model(tmp_path_factory):
    """An 80-class RTMDet-tiny (stock config, published form) whose classification convolutions answer with
    their bias alone: every class but kite scores 0.95 everywhere, kite 0.73."""
    folder = tmp_path_factory.mktemp("crowded")
    path = runner_checkpoint("rtmdet_tiny_8xb32-300e_coco", folder / "rtmdet_tiny_coco.pth",
                             biases={KITE: 1.0}, default_bias=3.0)
    ckpt = torch.load(path, weights_only=False)
    for key in list(ckpt["state_dict"]):
        if key.startswith("bbox_head.rtm_cls.") and key.endswith(".weight"):
            ckpt["state_dict"][key].zero_()
    torch.save(ckpt, path)
    return published(path, folder)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_a_one_label_project_gets_its_class_however_many_others_score_higher(crowded_coco_model, runtime, tmp_path):
    predictor = Predictor.load(str(crowded_coco_model), score_threshold=0.3)
    model = predictor if runtime == "torch" else load_onnx(predictor, tmp_path, score_threshold=0.3)
    image = np.full((96, 128, 3), 127, np.uint8)

    everything = model.predict([image])[0]
    assert len(everything.scores) == 300 and KITE not in everything.labels  # crowded out before top-k

    kite = model.predict([image], classes=[KITE])[0]
    assert len(kite.scores) > 0 and set(kite.labels.tolist()) == {KITE}
    assert np.allclose(kite.scores, 1 / (1 + np.exp(-1.0)), atol=1e-4)
    assert model.predict([image], classes=[])[0].scores.size == 0


def test_a_softmax_head_keeps_the_asked_classes_scores(tmp_path):
    path = published(runner_checkpoint("faster-rcnn_r50_fpn_1x_coco", tmp_path / "frcnn.pth",
                                       biases={0: 6.0, KITE: 4.0}), tmp_path)
    predictor = Predictor.load(str(path), score_threshold=0.05)
    assert install_class_mask(predictor.model, lambda: None) == "roi_head"
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    everything = predictor.predict([image])[0]
    person = predictor.predict([image], classes=[0])[0]
    ours = everything.labels == 0
    assert person.scores.size > 0 and set(person.labels.tolist()) == {0}
    # nothing crowds person out here, so dropping the other classes changes no person box or score
    assert np.allclose(np.sort(person.scores), np.sort(everything.scores[ours]), atol=1e-5)


def test_class_logits_helper_finds_both_kinds_of_head():
    from tests.zoo import build

    _, rtmdet = build("rtmdet_tiny_8xb32-300e_coco")
    assert [b.shape[0] for b in class_logits(rtmdet)] == [80, 80, 80]
