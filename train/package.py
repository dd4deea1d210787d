"""A trained run -> what the registry stores: model/ (slim checkpoint, its mmdet config, the class list) and
plots/ (training curves, precision-recall, held-out examples)."""

from __future__ import annotations

import json
from pathlib import Path

from loop.common.model_config import input_size
from train.plots import plot_examples, plot_history, plot_pr
from train.slim import make_slim


def coco_class_counts(coco: dict) -> list[int]:
    """Boxes per category of a COCO dict, in category-id order (the order of train.trainer.read_classes)."""
    ids = sorted(c["id"] for c in coco.get("categories", []))
    counts = dict.fromkeys(ids, 0)
    for a in coco.get("annotations", []):
        if a.get("category_id") in counts:
            counts[a["category_id"]] += 1
    return [counts[i] for i in ids]


def read_class_counts(ann_file: Path) -> list[int]:
    """coco_class_counts of a COCO file: what a checkpoint records of the labeled set it was trained on."""
    return coco_class_counts(json.loads(Path(ann_file).read_text()))


def servable(result: dict, classes: list[str], img_size: int | None, out: Path,
             class_counts: list[int] | None = None) -> tuple[Path, Path, int]:
    """A training run's slim `model.pth` (what the backend serves without unpickling) and its complete mmdet
    config, written into `out`; returns (checkpoint, config, input size). `class_counts`: the training set's
    boxes per class, recorded in the checkpoint (the queue's class_balanced_entropy weighs by them)."""
    from mmengine.config import (
        Config,  # defers mmengine (and torch) until a model is packaged
    )

    out.mkdir(parents=True, exist_ok=True)
    mm_cfg = Config.fromfile(next(Path(result["work_dir"]).glob("*.py")))  # the config mmengine dumped
    mm_cfg.load_from = None
    cfg_file = out / "config.py"
    mm_cfg.dump(str(cfg_file))
    img_size = img_size or input_size(mm_cfg)
    slim = make_slim(Path(result["checkpoint"]), out / "model.pth", classes=classes,
                     config_text=cfg_file.read_text(), img_size=img_size, class_counts=class_counts)
    return slim, cfg_file, img_size


def package_model(result: dict, classes: list[str], img_size: int | None, out: Path, plots: Path,
                  exported: Path, evaluation: dict) -> int:
    """Write model/ and plots/ for a run trained by train.trainer.train on the export in `exported`; returns
    the input size the model was trained at (`img_size`, or its mmdet config's own when that is None)."""
    plots.mkdir(parents=True, exist_ok=True)
    _, _, img_size = servable(result, classes, img_size, out, read_class_counts(exported / "train.json"))
    (out / "classes.json").write_text(json.dumps(classes))
    plot_history(result["history"], plots / "curves.png")
    plot_pr(evaluation["precision"], evaluation["classes"], plots / "pr_curve.png")
    plot_examples(exported / "val.json", Path(result["detections"]), exported, plots / "heldout_examples.png")
    return img_size
