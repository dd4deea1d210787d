"""Checkpoints as OpenMMLab writes them, read safely, with the config they carry or a model-zoo name."""

from __future__ import annotations

import pytest

from backend.predictor import Predictor
from loop.clients.checkpoints import read_checkpoint
from loop.common.errors import LoopError
from loop.common.model_zoo import resolve_config
from tests.zoo import bare, published, runner_checkpoint

TINY = "rtmdet_tiny_8xb32-300e_coco"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The stock 80-class RTMDet-tiny (640 px) as the Runner writes it, published, and as bare weights."""
    folder = tmp_path_factory.mktemp("tiny")
    runner = runner_checkpoint(TINY, folder / "epoch_1.pth")
    return {"runner": runner, "published": published(runner, folder / "pub"), "bare": bare(runner, folder / "w.pth")}


def test_model_zoo_names_resolve_inside_the_installed_mmdet():
    path = resolve_config("rtmdet_m_8xb32-300e_coco")
    assert path.name == "rtmdet_m_8xb32-300e_coco.py" and "mmdet" in path.parts and path.is_file()
    assert resolve_config("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py").is_file()
    with pytest.raises(LoopError, match="model-zoo names like it: rtmdet_m_8xb32-300e_coco"):
        resolve_config("rtmdet_m_8xb32_coco")


def test_a_runner_checkpoint_is_refused_naming_what_needs_unpickling(tiny):
    with pytest.raises(LoopError) as refused:
        Predictor.load(str(tiny["runner"]))
    message = str(refused.value)
    assert "mmengine.logging.history_buffer.HistoryBuffer" in message and "message_hub" in message
    assert "backend.trust_checkpoint=true" in message and "\n" not in message


def test_a_trusted_runner_checkpoint_serves_with_the_config_it_carries(tiny):
    predictor = Predictor.load(str(tiny["runner"]), trust_checkpoint=True, score_threshold=0.0)
    assert predictor.input_size == 640 and len(predictor.classes) == 80 and predictor.classes[0] == "person"
    assert predictor.model.test_cfg.max_per_img == 300


def test_a_published_checkpoint_loads_without_unpickling_and_uses_its_meta_cfg(tiny):
    state, meta, keys = read_checkpoint(tiny["published"])
    assert keys == ["meta", "state_dict"] and "cfg" in meta and "config" not in meta
    predictor = Predictor.load(str(tiny["published"]))
    assert (predictor.input_size, len(predictor.classes), predictor.model_class) == (640, 80, "RTMDet")


def test_a_bare_state_dict_asks_for_its_config_then_takes_a_model_zoo_name(tiny):
    with pytest.raises(LoopError, match="carries no mmdet config .*backend.config=PATH or a model-zoo name"):
        Predictor.load(str(tiny["bare"]))
    predictor = Predictor.load(str(tiny["bare"]), config=TINY)
    assert predictor.input_size == 640 and len(predictor.classes) == 80


def test_the_input_size_is_the_configs_own_unless_overridden(tiny):
    assert Predictor.load(str(tiny["published"]), img_size=320).input_size == 320


def test_a_checkpoint_that_does_not_fit_the_config_says_so(tiny):
    with pytest.raises(LoopError, match="does not fit the config"):
        Predictor.load(str(tiny["published"]), config="rtmdet_s_8xb32-300e_coco")
