"""What the loop reads from an mmdet config it did not write (pure: plain attribute and key access)."""

from __future__ import annotations

from loop.common.errors import LoopError


def input_size(cfg) -> int:
    """The square input size of the model's test pipeline: what it is served and exported at."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] in ("Resize", "mmdet.Resize") and step.get("scale"):
            return int(max(step["scale"]))
    raise LoopError("cannot tell the model's input size from its test pipeline; set model.img_size")
