"""Checkpoint files as they come: what the loop publishes (slim), what mmengine's Runner writes (`meta`,
`state_dict`, `message_hub`, optimizer and scheduler state), what OpenMMLab's model zoo publishes (`meta` and
`state_dict`), or a bare state dict; and which mmdet config goes with one.

Files load with `torch.load(weights_only=True)`. Anything that needs unpickling is refused unless the user
trusts the file (`backend.trust_checkpoint=true`), and the refusal names what in the file needs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loop.common.errors import LoopError
from loop.common.model_config import set_input_size
from loop.common.model_zoo import resolve_config

log = logging.getLogger(__name__)

# Where the pickled objects of a Runner checkpoint live, for the refusal message.
_WHERE = {"mmengine.logging": "message_hub (mmengine's training log buffers)", "numpy": "numpy arrays"}


def fetch_checkpoint(checkpoint: str, cache_dir: Path | None = None) -> Path:
    """A local path for `checkpoint`: the path itself, or an http(s) URL downloaded once into the cache."""
    if urlsplit(str(checkpoint)).scheme in ("http", "https"):
        import torch.hub

        cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        cache_dir = cache_dir or cache_root / "labelloop" / "checkpoints"
        target = cache_dir / hashlib.sha1(checkpoint.encode()).hexdigest()[:12] / Path(urlsplit(checkpoint).path).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading %s", checkpoint)
            try:
                torch.hub.download_url_to_file(checkpoint, str(target), progress=True)
            except Exception as exc:
                raise LoopError(f"cannot download checkpoint {checkpoint} ({exc}); download it yourself and "
                                "pass the local path") from None
        return target
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise LoopError(f"checkpoint {path} does not exist")
    return path


def file_sha256(path: Path) -> str:
    """The file's SHA-256 (hex): what caches are keyed by and what the registry records for a version."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unsafe_globals(path: Path) -> list[str]:
    """The Python objects the file would have to unpickle (empty for a file of tensors and plain types)."""
    import torch.serialization

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # an old (non-zip) file: torch can only say so while loading it
        return []


def read_checkpoint(path: Path, trust: bool = False) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(state_dict, meta, top-level keys) of a checkpoint file; LoopError saying how to fix it otherwise."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        if trust or "weights only" not in str(exc).lower():
            raise LoopError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160]})") from None
        found = unsafe_globals(path)
        where = sorted({w for prefix, w in _WHERE.items() for g in found if g.startswith(prefix)})
        what = (f"it holds pickled Python objects ({', '.join(found[:6])}{', ...' if len(found) > 6 else ''}"
                f"{'; in ' + ' and '.join(where) if where else ''})" if found
                else f"torch refuses to load it safely ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
        raise LoopError(f"checkpoint {path} cannot be loaded without unpickling: {what}. If you trust the file, "
                        "set backend.trust_checkpoint=true; or keep only its state_dict and meta, as mmdet's "
                        "tools/model_converters/publish_model.py does") from None
    if not isinstance(ckpt, dict):
        raise LoopError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a state dict")
    if "state_dict" in ckpt:
        state, meta = ckpt["state_dict"], ckpt.get("meta") or {}
    elif ckpt and all(hasattr(v, "shape") for v in ckpt.values()):
        state, meta = ckpt, {}  # a bare state dict
    else:
        raise LoopError(f"checkpoint {path} has no state_dict (keys: {', '.join(map(str, list(ckpt)[:8]))})")
    return state, meta if isinstance(meta, dict) else {}, list(ckpt)


def model_config(meta: dict[str, Any], config: str | None, path: Path, img_size: int | None = None):
    """The mmengine Config for a checkpoint: `config` (a file or a model-zoo name) when given; else the one
    the checkpoint carries (ours as `meta["config"]`, mmengine's Runner writes `meta["cfg"]`); else an error
    that asks for it. `img_size` overrides the test pipeline's input size."""
    from mmengine.config import Config

    if config:
        cfg = Config.fromfile(str(resolve_config(config)))
    else:
        text = meta.get("config") if isinstance(meta.get("config"), str) else meta.get("cfg")
        if not isinstance(text, str) or not text.strip():
            raise LoopError(f"checkpoint {path} carries no mmdet config (no meta['cfg']): pass the config it was "
                            "trained with, backend.config=PATH or a model-zoo name such as rtmdet_m_8xb32-300e_coco")
        try:
            cfg = Config.fromstring(text, ".py")
        except Exception as exc:
            raise LoopError(f"the config inside checkpoint {path} cannot be read ({type(exc).__name__}: "
                            f"{str(exc)[:200]}); pass backend.config=PATH") from None
    if img_size:
        set_input_size(cfg.test_dataloader.dataset.pipeline, int(img_size))
    return cfg


def class_names(meta: dict[str, Any], cfg, num_classes: int | None, path: Path) -> list[str]:
    """The model's class names: the checkpoint's (ours, or mmengine's dataset_meta), else the config's
    dataset metainfo, else COCO's 80 when the head has 80 classes."""
    classes = (meta.get("classes") or (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
               or (cfg.get("train_dataloader", {}).get("dataset", {}).get("metainfo") or {}).get("classes"))
    if not classes and num_classes == 80:
        from mmdet.evaluation import get_classes

        classes = get_classes("coco")
    if not classes:
        raise LoopError(f"checkpoint {path} names no classes (meta['dataset_meta']['classes']) and its config's "
                        f"{num_classes} classes are not COCO's 80: give the config its dataset's metainfo")
    if num_classes is not None and len(classes) != num_classes:
        raise LoopError(f"checkpoint {path} names {len(classes)} classes but its model has {num_classes}: use the "
                        "config it was trained with")
    return [str(c) for c in classes]
