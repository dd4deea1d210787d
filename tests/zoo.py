"""Checkpoints written the way OpenMMLab writes them, from stock model-zoo configs with random weights (no
downloads): a full checkpoint as mmengine's Runner saves it (meta with the config text, state_dict, message
hub, optimizer and scheduler state) and the published form mmdet's publish step makes of it (meta and
state_dict only, legacy serialization, the hash in the file name)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from loop.common.model_zoo import resolve_config


def build(config_name: str, seed: int = 0):
    """The stock config's model with random weights (torch's default init: no pretrained download)."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    register_all_modules()
    cfg = Config.fromfile(str(resolve_config(config_name)))
    init_default_scope(cfg.get("default_scope", "mmdet"))  # MMYOLO's configs build from its registry
    torch.manual_seed(seed)
    return cfg, MODELS.build(cfg.model)


def class_logits(model):
    """The bias of each classification output, to steer which classes a random model reports."""
    head = getattr(model, "bbox_head", None)
    if head is not None and hasattr(head, "rtm_cls"):
        return [conv.bias for conv in head.rtm_cls]
    module = getattr(head, "head_module", None)  # MMYOLO's heads: RTMDet, then YOLOv8
    if module is not None and hasattr(module, "rtm_cls"):
        return [conv.bias for conv in module.rtm_cls]
    if module is not None and hasattr(module, "cls_preds"):
        return [branch[-1].bias for branch in module.cls_preds]
    roi = getattr(model, "roi_head", None)
    return [roi.bbox_head.fc_cls.bias] if roi is not None else []  # YOLOv5: classes share one output


def runner_checkpoint(config_name: str, out: Path, biases: dict[int, float] | None = None,
                      default_bias: float | None = None) -> Path:
    """A checkpoint as `Runner.save_checkpoint` writes it. `biases` set class logits' bias (class index ->
    value; `default_bias` for the rest), so the random model reports those classes."""
    import mmengine
    import torch
    from mmdet.datasets import CocoDataset
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper
    from mmengine.optim.scheduler import LinearLR
    from mmengine.runner.checkpoint import weights_to_cpu

    cfg, model = build(config_name)
    with torch.no_grad():
        for bias in class_logits(model):
            n = bias.shape[0] - (1 if bias.shape[0] == 81 else 0)  # softmax heads: background last
            if default_bias is not None:
                bias[:n] = default_bias
            for index, value in (biases or {}).items():
                bias[index] = value
    hub = MessageHub.get_instance(f"zoo-{config_name}-{time.monotonic_ns()}")
    hub.update_scalar("train/loss", 0.5)
    hub.update_info("iter", 12)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.004)
    wrapper = OptimWrapper(optimizer)
    scheduler = LinearLR(optimizer, start_factor=0.1, by_epoch=False, begin=0, end=10)
    meta = dict(epoch=1, iter=12, cfg=cfg.pretty_text, seed=0, experiment_name="zoo",
                mmengine_version=mmengine.__version__, time=time.strftime("%Y%m%d_%H%M%S"),
                dataset_meta=dict(CocoDataset.METAINFO))
    ckpt = {"meta": meta, "state_dict": weights_to_cpu(model.state_dict()), "message_hub": hub.state_dict(),
            "optimizer": wrapper.state_dict(), "param_schedulers": [scheduler.state_dict()]}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def published(runner_ckpt: Path, out_dir: Path) -> Path:
    """What mmdet's publish step makes of a Runner checkpoint: meta and state_dict, legacy serialization,
    `<name>-<sha256[:8]>.pth`."""
    import torch

    ckpt = torch.load(runner_ckpt, map_location="cpu", weights_only=False)  # made by the test itself
    tmp = out_dir / f"{runner_ckpt.stem}.pth"
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({k: ckpt[k] for k in ("meta", "state_dict")}, tmp, _use_new_zipfile_serialization=False)
    final = out_dir / f"{runner_ckpt.stem}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(final)
    return final


def bare(runner_ckpt: Path, out: Path) -> Path:
    """Only the weights, as some tools save them."""
    import torch

    torch.save(torch.load(runner_ckpt, map_location="cpu", weights_only=False)["state_dict"], out)
    return out
