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
              img_size: int | None) -> Path:
    """Write a slim copy of a checkpoint that our own training run produced."""
    import torch

    full = torch.load(runner_checkpoint, map_location="cpu", weights_only=False)  # ours, just written
    state = full.get("state_dict", full)
    slim = {"state_dict": {k: v.detach().clone().contiguous() for k, v in state.items()},
            "meta": {"format": FORMAT, "classes": list(classes), "img_size": img_size, "config": config_text}}
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
