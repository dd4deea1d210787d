"""An mmengine hook that keeps per-epoch figures for the registry and stops a diverging run at once."""

from __future__ import annotations

import math

from mmengine.hooks import Hook

from loop.common.errors import LoopError


class TrainingDiverged(LoopError):
    pass


class EpochHistoryHook(Hook):
    """Per-epoch mean training losses and validation metrics, in `self.history` (one dict per epoch)."""

    priority = "LOW"

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for key, value in (outputs or {}).items():
            value = float(value.detach()) if hasattr(value, "detach") else float(value)
            if not math.isfinite(value):
                raise TrainingDiverged(f"training diverged: {key}={value} at iteration {runner.iter + 1}; "
                                       "lower train.lr or check the annotations for degenerate boxes")
            self._sums[key] = self._sums.get(key, 0.0) + value
        self._count += 1

    def after_train_epoch(self, runner) -> None:
        row = {"epoch": runner.epoch + 1}  # runner.epoch is incremented after this hook
        row.update({f"train_{k}": v / max(self._count, 1) for k, v in self._sums.items()})
        row["lr"] = float(runner.optim_wrapper.get_lr()["lr"][0])
        self.history.append(row)
        self._sums, self._count = {}, 0

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.history and metrics:
            self.history[-1].update({k.replace("coco/", "val_"): float(v) for k, v in metrics.items()
                                     if isinstance(v, (int, float))})
