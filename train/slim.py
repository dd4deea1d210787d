"""Slim checkpoints: weights plus plain metadata, loadable with `torch.load(weights_only=True)`.

mmengine's Runner checkpoints carry optimizer state and pickled mmengine objects (message hub buffers),
which torch >= 2.6 refuses to load by default. What we publish holds tensors and plain types only, so a
server can load any version without unpickling code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loop.common.errors import LoopError

FORMAT = "labelloop-slim-v1"


def make_slim(runner_checkpoint: Path, out: Path, *, classes: list[str], config_text: str,
              img_size: int | None, class_counts: list[int] | None = None) -> Path:
    """Write a slim copy of a checkpoint that our own training run produced. `class_counts`: the training
    set's boxes per class (aligned with `classes`), kept in the meta because the labeling queue's
    class_balanced_entropy weighs rare classes by them (loop.al.acquisition.queue_score)."""
    import torch

    if class_counts is not None and len(class_counts) != len(classes):
        raise LoopError(f"{len(class_counts)} class counts for {len(classes)} classes: give one count per class, "
                        "in the order of `classes`")
    full = torch.load(runner_checkpoint, map_location="cpu", weights_only=False)  # ours, just written
    state = full.get("state_dict", full)
    meta = {"format": FORMAT, "classes": list(classes), "img_size": img_size, "config": config_text}
    if class_counts is not None:
        meta["class_counts"] = [int(c) for c in class_counts]
    slim = {"state_dict": {k: v.detach().clone().contiguous() for k, v in state.items()}, "meta": meta}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(slim, tmp)
    tmp.replace(out)
    return out


def load_slim(path: Path) -> dict[str, Any]:
    """Load and check a slim checkpoint; anything else is refused with the reason."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LoopError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise LoopError(f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or ckpt.get("meta", {}).get("format") != FORMAT:
        raise LoopError(f"checkpoint {path} is not a {FORMAT} checkpoint (state_dict + meta)")
    if not ckpt["meta"].get("classes"):
        raise LoopError(f"checkpoint {path} has no class list in its meta")
    return ckpt
