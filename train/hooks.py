"""mmengine hooks: per-epoch figures for the registry (stopping a diverging run at once), and a console that
shows a progress bar while mmengine's own log goes to its file."""

from __future__ import annotations

import logging
import math

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from tqdm import tqdm

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


class ConsoleProgressHook(Hook):
    """A person watching a stage sees one progress bar per training, not mmengine's log: the trainer builds
    the Runner with `log_level=ERROR`, so its environment report, config, per-iteration lines and warnings
    (duplicate parameters skipped, deprecations) stay off the console; this hook lowers the log file's
    handler back to INFO before training, so the file (the Runner's `<work_dir>/<timestamp>/<timestamp>.log`)
    keeps them. The bar shows only on a terminal (tqdm's own check) and on rank 0."""

    priority = "VERY_LOW"

    def __init__(self, desc: str = "train") -> None:
        self.desc = desc
        self._bar: tqdm | None = None

    def before_run(self, runner) -> None:
        for handler in runner.logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.INFO)

    def before_train(self, runner) -> None:
        self._bar = tqdm(total=runner.max_iters, initial=runner.iter, desc=self.desc, unit="iter", leave=False,
                         disable=None if get_rank() == 0 else True)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        loss = (outputs or {}).get("loss")
        if loss is not None:
            loss = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
            self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
