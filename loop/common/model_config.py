"""What the loop reads from, and sets in, an mmdet config it did not write (pure: plain attribute and key
access)."""

from __future__ import annotations

from typing import Any

from loop.common.errors import LoopError

_SCALE_KEYS = {"Resize": "scale", "RandomResize": "scale", "RandomCrop": "crop_size", "Pad": "size",
               "CachedMosaic": "img_scale", "CachedMixUp": "img_scale", "Mosaic": "img_scale"}


def input_size(cfg) -> int:
    """The square input size of the model's test pipeline: what it is served and exported at."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] in ("Resize", "mmdet.Resize") and step.get("scale"):
            return int(max(step["scale"]))
    raise LoopError("cannot tell the model's input size from its test pipeline; set model.img_size")


def set_input_size(pipeline: list, size: int) -> None:
    """Every resize, crop, pad and mosaic step of a data pipeline set to a square of `size`."""
    for step in pipeline:
        key = _SCALE_KEYS.get(str(step.get("type")).split(".")[-1])
        if key and key in step:
            step[key] = (size, size)


def num_classes(model_cfg: Any) -> int | None:
    """The model's class count: the first `num_classes` in its config (heads agree), None if it has none."""
    if isinstance(model_cfg, dict):
        if "num_classes" in model_cfg:
            return int(model_cfg["num_classes"])
        for value in model_cfg.values():
            found = num_classes(value)
            if found is not None:
                return found
    elif isinstance(model_cfg, list):
        for value in model_cfg:
            found = num_classes(value)
            if found is not None:
                return found
    return None


def without_sync_bn(node: Any) -> Any:
    """The config with every SyncBN norm layer as plain BN (mmdet's RTMDet configs ask for SyncBN, which
    runs on GPUs only; processes on CPU cores keep per-process BN statistics)."""
    if isinstance(node, dict):
        return {k: ("BN" if k == "type" and v == "SyncBN" else without_sync_bn(v)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(without_sync_bn(v) for v in node)
    return node
