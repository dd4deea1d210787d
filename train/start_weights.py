"""Starting weights for a model whose classes differ from the checkpoint's: a COCO checkpoint (80 classes)
fine-tuned onto a project with 4 labels keeps every weight that fits and starts the classification layers
fresh, and says which. mmengine alone would load the same tensors but report the rest only as a long
warning; here the split is checked (a checkpoint that fits almost nothing is refused) and logged in one
line."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from loop.clients.checkpoints import fetch_checkpoint, read_checkpoint
from loop.common.errors import LoopError

log = logging.getLogger(__name__)


def fitted_start(load_from: str, model_cfg, out_dir: Path, trust: bool = False) -> tuple[str, dict]:
    """(weights file for mmengine's `load_from`, report) for the model `model_cfg` builds. When every tensor
    fits, the checkpoint itself; else a copy of the tensors that fit, and the report names the fresh ones."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    path = fetch_checkpoint(str(load_from))
    state, _, _ = read_checkpoint(path, trust)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = MODELS.build(model_cfg).state_dict()
    wanted = [k for k in own if not k.endswith("num_batches_tracked")]
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    fresh = [k for k in wanted if k not in fits]
    report = {"checkpoint": str(path), "loaded": sum(k in fits for k in wanted), "fresh": fresh,
              "unused": sorted(k for k in state if k not in own)}
    if not fresh:
        return str(path), report
    if report["loaded"] < len(wanted) / 2:
        raise LoopError(f"checkpoint {path} fits {report['loaded']} of the model's {len(wanted)} weights "
                        f"(e.g. {fresh[:3]} do not): it is for another architecture; use model.config of the "
                        "model it was trained as")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "start_weights.pth"
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # under torchrun every rank writes the same file
    torch.save({"state_dict": fits, "meta": {}}, tmp)
    os.replace(tmp, out)
    log.info("starting from %s: %d weights loaded, %d start fresh for this project's classes (%s)", path,
             report["loaded"], len(fresh), ", ".join(fresh[:6]) + (", ..." if len(fresh) > 6 else ""))
    return str(out), report
