"""Only the classes a project asks for: the other classes' scores are removed inside the model's head, before
its score threshold, top-k and NMS, so a COCO model on a one-label project never lets 79 other classes crowd
out the one asked for (and keeps fewer candidates).

Sigmoid classifiers (RTMDet, RetinaNet, FCOS, YOLO-style heads) get a logit far below any threshold for a
dropped class. Softmax classifiers (Faster R-CNN's RoI head: classes then background) move the dropped
classes' probability into background: log-sum-exp keeps every other class's probability exactly as it was.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

_NEVER = -1.0e4  # a logit whose sigmoid is 0 in float32


def class_drop(n_classes: int, keep: list[int] | None) -> np.ndarray | None:
    """The class indices to drop when only `keep` is wanted; None when nothing is dropped (pure)."""
    if keep is None:
        return None
    drop = np.setdiff1d(np.arange(n_classes), np.asarray(list(keep), dtype=np.int64))
    return drop if len(drop) else None


def mask_sigmoid_levels(levels, drop: list[int], n_classes: int) -> list:
    """Per-level class logits (N x (anchors * classes) x H x W, anchor-major) with the `drop` classes set
    below any threshold."""
    masked = []
    for scores in levels:
        n, channels, h, w = scores.shape
        scores = scores.reshape(n, channels // n_classes, n_classes, h, w).clone()
        scores[:, :, drop] = _NEVER
        masked.append(scores.reshape(n, channels, h, w))
    return masked


def sigmoid_classes(model) -> int | None:
    """The class count of the model's dense sigmoid classifier, None when it has none (two-stage, or a head
    whose class scores are not separate per-level outputs)."""
    head = getattr(model, "bbox_head", None)
    if head is not None and getattr(head, "use_sigmoid_cls", False) and getattr(head, "num_classes", None):
        return int(head.num_classes)
    return None


def _sigmoid_hook(get_drop: Callable[[], list[int] | None], n_classes: int):
    def hook(module, args, output):
        drop = get_drop()
        if drop is None:
            return output
        return (type(output[0])(mask_sigmoid_levels(output[0], drop, n_classes)), *output[1:])
    return hook


def _softmax_hook(get_drop: Callable[[], list[int] | None]):
    import torch

    def hook(module, args, output):
        drop = get_drop()
        if drop is None:
            return output
        logits = output[0].clone()  # R x (classes + 1), background last
        moved = torch.cat([logits[:, -1:], logits[:, drop]], dim=1)
        logits[:, -1] = torch.logsumexp(moved, dim=1)
        logits[:, drop] = float("-inf")
        return (logits, *output[1:])
    return hook


def install_class_mask(model, get_drop: Callable[[], list[int] | None]) -> str:
    """Hook the model's classifier so `get_drop()` classes are dropped while it returns a list; returns where
    ("head", "roi_head", or "after" when the model is of neither kind and classes are filtered from its
    detections afterwards)."""
    if sigmoid_classes(model):
        model.bbox_head.register_forward_hook(_sigmoid_hook(get_drop, sigmoid_classes(model)))
        return "head"
    roi = getattr(getattr(model, "roi_head", None), "bbox_head", None)
    if roi is not None and not getattr(roi, "custom_cls_channels", False) \
            and not getattr(getattr(roi, "loss_cls", None), "use_sigmoid", False):
        roi.register_forward_hook(_softmax_hook(get_drop))
        return "roi_head"
    log.info("%s: classes a project does not ask for are removed after NMS", type(model).__name__)
    return "after"
