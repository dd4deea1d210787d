"""Backend fixtures: checkpoints the tests build, and registry versions published the way retrain does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


# RTMDet-Ins-tiny on the demo data's masks, started from the box model (backbone, neck and head fit).
DEMO_SEG_MODEL = dict(img_size=160, epochs=4, batch_size=16, lr=0.004, warmup_iters=20, seed=0)


@pytest.fixture(scope="session")
def demo_seg_model(demo_data, demo_model) -> dict:
    """An instance segmentation model that really outlines shapes, as a slim checkpoint; cached under
    runs/test-cache by its settings, the demo data and the box model it starts from (~1.5 min once)."""
    import hashlib

    from loop.common.paths import REPO_ROOT
    from train.slim import make_slim
    from train.trainer import TrainSpec, read_classes, train

    key = hashlib.sha256(json.dumps(DEMO_SEG_MODEL, sort_keys=True).encode() + (demo_data / "pool.json").read_bytes()
                         + file_sha256(demo_model["checkpoint"]).encode()).hexdigest()[:12]
    cache = REPO_ROOT / "runs" / "test-cache" / f"demo-seg-model-{key}"
    if not (cache / "result.json").exists():
        s = DEMO_SEG_MODEL
        result = train(TrainSpec(config=REPO_ROOT / "train" / "configs" / "rtmdet_ins_tiny_demo.py",
                                 data_root=demo_data, train_ann="pool.json", val_ann="test.json",
                                 work_dir=cache / "work",
                                 img_size=s["img_size"], epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                                 warmup_iters=s["warmup_iters"], val_interval=s["epochs"], seed=s["seed"],
                                 load_from=str(demo_model["checkpoint"])))
        config = next((cache / "work").glob("*.py"))
        make_slim(Path(result["checkpoint"]), cache / "model.pth", classes=read_classes(demo_data / "pool.json"),
                  config_text=config.read_text(), img_size=s["img_size"])
        (cache / "result.json").write_text(json.dumps({k: result[k] for k in ("bbox_mAP", "segm_mAP", "segm_mAP_50")}))
    return {"checkpoint": cache / "model.pth", **json.loads((cache / "result.json").read_text())}
