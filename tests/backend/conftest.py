"""Backend fixtures: checkpoints the tests build, and registry versions published the way retrain does."""

from __future__ import annotations

import json
import shutil

import pytest

from loop.clients.checkpoints import file_sha256
from loop.clients.registry import DIGEST_TAG

# The demo model's classes renamed to COCO classes as MMDetection writes them (spaces), so the Label Studio
# tutorial's COCO label config (underscores) applies.
COCO_NAMED = ["sports ball", "tv", "traffic light", "kite"]


@pytest.fixture(scope="session")
def coco_named_checkpoint(demo_model, tmp_path_factory):
    import torch

    ckpt = torch.load(demo_model["checkpoint"], weights_only=True)
    ckpt["meta"]["classes"] = COCO_NAMED
    path = tmp_path_factory.mktemp("ckpt") / "coco_named.pth"
    torch.save(ckpt, path)
    return path


def publish(registry, demo_model: dict, tmp_path, name: str, corrupt: bool = False, checkpoint=None,
            classes: list[str] | None = None) -> int:
    """Register the demo model (or `checkpoint`, a variant of it) as a version the way retrain does (model/
    artifacts first, then the version, tagged with the weights' digest)."""
    model = tmp_path / name / "model"
    model.mkdir(parents=True)
    if corrupt:
        (model / "model.pth").write_bytes(b"\x00garbage" * 100)
    else:
        shutil.copy(checkpoint or demo_model["checkpoint"], model / "model.pth")
    shutil.copy(demo_model["config"], model / "config.py")
    (model / "classes.json").write_text(json.dumps(classes or ["circle", "square", "triangle", "star"]))
    with registry.run(name) as run:
        run.log_artifacts(model, "model")
    return registry.register(run.run_id, {"note": name, DIGEST_TAG: file_sha256(model / "model.pth")}).version


@pytest.fixture(scope="session")
def shifted_checkpoint(demo_model, tmp_path_factory):
    """The demo model with other weights (class logits moved): same classes, different detections."""
    import torch

    ckpt = torch.load(demo_model["checkpoint"], weights_only=True)
    for key, value in ckpt["state_dict"].items():
        if key.startswith("bbox_head.rtm_cls.") and key.endswith(".bias"):
            value += torch.tensor([2.0, -2.0, 0.0, 0.0])
    path = tmp_path_factory.mktemp("ckpt") / "shifted.pth"
    torch.save(ckpt, path)
    return path
