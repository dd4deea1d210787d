"""Pictures a person looks at in the MLflow UI: training curves, PR curves, held-out examples, labeling effort
per model version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_history(history: list[dict[str, Any]], out: Path) -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [h["epoch"] for h in history]
    for key in sorted({k for h in history for k in h if k.startswith("train_loss")}):
        ax1.plot(epochs, [h.get(key, np.nan) for h in history], label=key[6:])
    ax1.set(xlabel="epoch", ylabel="mean loss", title="training loss")
    ax1.legend(fontsize=8)
    for key in ("val_bbox_mAP", "val_bbox_mAP_50"):
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            ax2.plot(*zip(*pts), marker="o", label=key[4:])
    ax2.set(xlabel="epoch", ylabel="COCO metric", title="held-out mAP", ylim=(0, 1))
    ax2.legend(fontsize=8)
    return _save(fig, out)


def plot_pr(precision: np.ndarray | None, classes: list[str], out: Path) -> Path:
    """Precision-recall at IoU 0.5 per class (COCOeval's 101 recall points)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    recall = np.linspace(0, 1, 101)
    if precision is not None:
        for k, name in enumerate(classes):
            p = precision[0, :, k]
            if (p > -1).any():
                ax.plot(recall, np.where(p > -1, p, np.nan), label=name)
    ax.set(xlabel="recall", ylabel="precision", title="PR curve, IoU 0.5", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_examples(gt_file: Path, det_file: Path, image_root: Path, out: Path, n: int = 6,
                  score_thr: float = 0.3) -> Path:
    """A few held-out images: true boxes green, predictions red with class and score."""
    gt = json.loads(Path(gt_file).read_text())
    dets = json.loads(Path(det_file).read_text()) if Path(det_file).exists() else []
    names = {c["id"]: c["name"] for c in gt["categories"]}
    images = gt["images"][:n]
    cols = min(3, max(len(images), 1))
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, im in zip(axes.flat, images):
        with Image.open(Path(image_root) / im["file_name"]) as img:
            ax.imshow(img.convert("RGB"))
        for a in gt["annotations"]:
            if a["image_id"] == im["id"]:
                x, y, w, h = a["bbox"]
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="lime", lw=1.5))
        for d in dets:
            if d["image_id"] == im["id"] and d["score"] >= score_thr:
                x, y, w, h = d["bbox"]
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="red", lw=1, ls="--"))
                ax.text(x, y, f"{names.get(d['category_id'], '?')} {d['score']:.2f}", color="red", fontsize=7)
        ax.set_title(f"task {im['id']}", fontsize=8)
    fig.suptitle("held-out: truth (green) vs prediction (red)", fontsize=10)
    return _save(fig, out)


def plot_learning_curves(curves: dict[str, dict[int, tuple[float, float, int]]], out: Path) -> Path:
    """mAP against labeled images per active-learning strategy: mean over seeds, band = one std."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for strategy, curve in sorted(curves.items(), key=lambda kv: kv[0] != "random"):
        n = np.array(sorted(curve))
        mean = np.array([curve[k][0] for k in n])
        std = np.array([curve[k][1] for k in n])
        seeds = max(curve[k][2] for k in n)
        style = dict(color="black", linestyle="--") if strategy == "random" else {}
        line, = ax.plot(n, mean, marker="o", label=f"{strategy} ({seeds} seeds)", **style)
        ax.fill_between(n, mean - std, mean + std, alpha=0.15, color=line.get_color())
    ax.set(xlabel="labeled images", ylabel="test bbox mAP", title="active learning: mAP vs labeling budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_effort(rows: list[dict[str, Any]], baseline_name: str, out: Path) -> Path:
    """Per model version: the share of predicted boxes people accepted unchanged, and seconds per task, with
    the tasks labeled without any prediction as the baseline."""
    versions = [r for r in rows if r["model_version"] != baseline_name]
    baseline = next((r for r in rows if r["model_version"] == baseline_name), None)
    names = [r["model_version"].rsplit(":", 1)[-1] for r in versions]
    fig, (share, seconds) = plt.subplots(1, 2, figsize=(10, 3.6))
    share.plot(names, [100 * (r["accepted_share"] or 0) for r in versions], "o-")
    share.set(title="predicted boxes accepted unchanged", xlabel="model version", ylabel="%", ylim=(0, 100))
    seconds.plot(names, [r["seconds_per_task"] or 0 for r in versions], "o-", label="prediction shown")
    if baseline and baseline["seconds_per_task"] is not None:
        seconds.axhline(baseline["seconds_per_task"], color="grey", ls="--", label="no prediction shown")
    seconds.set(title="seconds per task (lead_time)", xlabel="model version", ylabel="s")
    seconds.set_ylim(bottom=0)
    seconds.legend(fontsize=8)
    return _save(fig, out)
