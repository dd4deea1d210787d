"""stage=simulate's training cache: a round whose inputs were trained before is not trained again.

Why: a benchmark run is mostly training (the first model of each seed, then one model per strategy, seed
and round), and training here is deterministic per seed: the same labeled images, start weights, schedule
and seed give the same model on the same software. So a second run that adds a strategy reuses the first
models and random's whole chain, and only trains what is new; a stopped run resumes at its first untrained
round.

A round's key hashes everything its model depends on: the labeled image ids, the key of the model it starts
from (so a chain is keyed as a whole), its iterations and seed, the training recipe and model settings, the
data files, the device and its thread count, the versions of torch, mmengine, mmcv and mmdet, and the training
code itself (every file under train/: our trainer and our mmdet configs). A change anywhere else that alters
training (a library edited in place, say) is not seen: delete the cache directory (stage.cache_dir) then.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

from loop.common.paths import REPO_ROOT

log = logging.getLogger(__name__)

# What a cached round keeps: its model, its test detections and its figures.
FILES = {"checkpoint": "model.pth", "detections": "test_preds.bbox.json"}


def _versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "mmengine", "mmdet", "mmcv"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def code_digest(code: Path) -> str:
    """sha256 over every file under `code` (relative path and bytes), compiled caches left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(code).rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(code).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class TrainingCache:
    """Rounds' models and figures under `root`, one directory per key. `setting` is what every round of this
    run shares (recipe, model, data, device); `code` the training code the key follows; `train` is called only
    on a miss."""

    def __init__(self, root: Path | None, setting: dict[str, Any], code: Path = REPO_ROOT / "train"):
        self.root = Path(root) if root else None
        self.setting = json.dumps({**setting, "versions": _versions(), "code": code_digest(code)}, sort_keys=True,
                                  default=str)

    def key(self, labeled: list[int], start: str | None, iters: int, seed: int, extra: Any = None) -> str:
        """`extra`: anything else the round trains on (pseudo-labels); None keeps the keys of rounds without."""
        inputs = {"labeled": sorted(int(i) for i in labeled), "start": start, "iters": int(iters), "seed": int(seed),
                  "setting": self.setting}
        if extra is not None:
            inputs["extra"] = extra
        text = json.dumps(inputs, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def get_or_train(self, key: str, train: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached round (its files in the cache) or, on a miss, `train()`'s result, stored. Either way the
        result carries `key` and `cached` (was it reused?)."""
        if self.root is None:
            return {**train(), "key": key, "cached": False}
        entry = self.root / key
        figures = entry / "figures.json"
        if figures.is_file() and all((entry / name).is_file() for name in FILES.values()):
            log.info("round %s: trained before, reusing %s", key, entry)
            return {**json.loads(figures.read_text()), **{k: str(entry / n) for k, n in FILES.items()},
                    "key": key, "cached": True}
        result = train()
        tmp = self.root / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for field, name in FILES.items():
            shutil.copyfile(result[field], tmp / name)
        (tmp / "figures.json").write_text(json.dumps({k: result[k] for k in ("bbox_mAP", "bbox_mAP_50")}))
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)
        return {**result, "key": key, "cached": False}
