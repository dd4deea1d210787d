"""stage=simulate's record of a run: results.csv row by row (a stopped run keeps its rounds), one MLflow
child run per strategy and seed (bbox_mAP against labeled images), and at the end curves.png and
summary.json (what each strategy saves over random), also logged to the parent run. loop.stages.simulate_merge
writes the same report for runs made in parts."""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from pathlib import Path

from loop.al.curves import mean_curves, summarise
from loop.stages.adapters import open_registry, plain
from train.plots import plot_learning_curves

# variant: the setting a strategy ran with where it has one (class_balanced_*: "rarity", or "rarity+difficulty"
# with stage.difficulty_weights), so that merged runs tell two settings of one strategy apart.
FIELDS = ("strategy", "variant", "seed", "round", "labeled", "mAP", "mAP_50", "train_s", "select_s", "rare_class",
          "rare_AP", "rare_boxes")


def write_report(rows: list[dict], out: Path) -> dict[str, dict]:
    """summary.json (what each strategy saves over random) and curves.png for these rows; returns the summary."""

    summary = summarise(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_learning_curves(mean_curves(rows), out / "curves.png")
    return summary


def describe(summary: dict[str, dict]) -> list[str]:
    """One line per strategy for the log."""
    lines = []
    for strategy, f in summary.items():
        reach = f["labels_to_reach_control"]
        lines.append(f"{strategy:<16} final mAP {f['final_mAP']:.3f} at {f['final_labeled']} labels; reaches "
                     "random's final mAP " + ("within the budget: never" if reach is None else
                                              f"with {reach:.0f} labels ({f['fraction_of_control_labels']:.0%})")
                     + f"; mean gain {f['mean_gain']:+.3f}")
    return lines


class Results:
    """Where the curves go: results.csv (row by row, so a stopped run keeps its rounds), one MLflow child run
    per strategy and seed (bbox_mAP against labeled images), and at the end curves.png and summary.json
    logged to the parent run."""

    def __init__(self, cfg, out: Path, stamp: str):
        self.out, self.rows = out, []
        self.csv = out / "results.csv"
        with open(self.csv, "w", newline="") as fh:
            csv.DictWriter(fh, FIELDS).writeheader()
        self.registry = open_registry(cfg, name=f"{cfg.registry.model_prefix}-simulate")  # tracking runs only
        self.registry.experiment = str(cfg.stage.experiment)
        self.stamp, self.cfg = stamp, cfg
        self._open: dict[int, tuple] = {}  # seed -> (strategy, its child run's context, the run)

    @contextmanager
    def parent(self):
        stage = self.cfg.stage
        params = {k: plain(v) for k, v in stage.items() if k not in ("name", "summary", "entry")}
        recipe = {f"train.{k}": plain(v) for k, v in self.cfg.train.items()}
        tags = {"kind": "simulate", "mode": str(stage.mode)}
        with self.registry.run(f"simulate-{stage.mode}-{self.stamp}", tags=tags) as run:
            run.log_params({**params, **recipe, "img_size": self.cfg.model.img_size, "data": str(self.cfg.data.root),
                            "model_config": self.cfg.model.config, "start_weights": self.cfg.model.checkpoint})
            self.parent_run = run
            try:
                yield run
            except BaseException as exc:
                for seed in list(self._open):
                    self.end_seed(seed, exc)
                raise
            for seed in list(self._open):
                self.end_seed(seed)
            self._finish(run)

    def child(self, strategy: str, seed: int):
        return self.registry.run(f"{strategy}-seed{seed}", tags={"mlflow.parentRunId": self.parent_run.run_id,
                                                                 "strategy": strategy, "seed": str(seed)})

    def add(self, row: dict) -> None:
        """record(row) in the child run of its strategy and seed, started at that pair's first row; the seed's
        previous child run (its previous strategy) ends there. Rows of several seeds may interleave."""
        seed = int(row["seed"])
        if seed in self._open and self._open[seed][0] != row["strategy"]:
            self.end_seed(seed)
        if seed not in self._open:
            context = self.child(row["strategy"], seed)
            self._open[seed] = (row["strategy"], context, context.__enter__())
        self.record(row, self._open[seed][2])

    def end_seed(self, seed: int, error: BaseException | None = None) -> None:
        """End the seed's open child run: FINISHED, or FAILED with `error`."""
        opened = self._open.pop(int(seed), None)
        if opened:
            opened[1].__exit__(type(error) if error else None, error, error.__traceback__ if error else None)

    def record(self, row: dict, run) -> None:
        self.rows.append(row)
        with open(self.csv, "a", newline="") as fh:
            csv.DictWriter(fh, FIELDS).writerow(row)
        run.log_metrics({"bbox_mAP": row["mAP"], "bbox_mAP_50": row["mAP_50"]}, step=row["labeled"])

    def _finish(self, run) -> None:
        self.summary = write_report(self.rows, self.out)
        for name in ("results.csv", "summary.json", "curves.png"):
            run.log_artifact(self.out / name)
        run.log_metrics({f"{k}_mean_gain": v["mean_gain"] for k, v in self.summary.items()})
