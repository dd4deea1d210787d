"""What the loop reads from, and sets in, an mmdet config it did not write (pure: plain attribute and key
access)."""

from __future__ import annotations

from typing import Any

from loop.common.errors import LoopError

# Steps whose square size follows the input size (mmdet's, and MMYOLO's letterboxing and mosaic).
_SCALE_KEYS = {"Resize": "scale", "RandomResize": "scale", "RandomCrop": "crop_size", "Pad": "size",
               "CachedMosaic": "img_scale", "CachedMixUp": "img_scale", "Mosaic": "img_scale",
               "YOLOv5KeepRatioResize": "scale", "LetterResize": "scale", "YOLOv5MixUp": "img_scale"}
_TEST_RESIZES = ("Resize", "YOLOv5KeepRatioResize", "LetterResize")


def _kind(step) -> str:
    """A pipeline step's type without its registry scope (`mmdet.Resize` -> `Resize`)."""
    return str(step.get("type")).split(".")[-1]


def input_size(cfg) -> int:
    """The square input size of the model's test pipeline: what it is served and exported at."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if _kind(step) in _TEST_RESIZES and step.get("scale"):
            return int(max(step["scale"]))
    raise LoopError("cannot tell the model's input size from its test pipeline; set model.img_size")


def set_input_size(pipeline: list, size: int) -> None:
    """Every resize, crop, pad and mosaic step of a data pipeline set to a square of `size`."""
    for step in pipeline:
        key = _SCALE_KEYS.get(_kind(step))
        if key and key in step:
            step[key] = (size, size)
        if _kind(step) == "YOLOv5RandomAffine" and "border" in step:  # MMYOLO crops a mosaic back to size
            step["border"] = (-size // 2, -size // 2)


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


def segments(cfg) -> bool:
    """Is it an instance segmentation model: does its evaluation score masks (CocoMetric's `segm`)?"""
    metric = (cfg.get("test_evaluator") or {}).get("metric", "bbox")
    return "segm" in ([metric] if isinstance(metric, str) else list(metric))
