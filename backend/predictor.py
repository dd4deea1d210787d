"""The loaded detector: the only module that runs mmdet inference.

A model is loaded once (never per request). Checkpoints load with `torch.load(weights_only=True)`; a file
that needs unpickling is refused unless the user trusts it (`backend.trust_checkpoint=true`), because
unpickling runs code. Images are batched through the config's test pipeline and one `test_step`, which
mmdet's `inference_detector` does not do (it runs one image at a time).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from loop.common.device import select_device
from loop.common.errors import LoopError

log = logging.getLogger(__name__)


@dataclass
class Detections:
    boxes: np.ndarray   # N x 4, x0 y0 x1 y1 in the input array's pixels
    scores: np.ndarray  # N
    labels: np.ndarray  # N, model class index
    embedding: np.ndarray | None = None  # pooled neck features, for diversity-aware active learning


def fetch_checkpoint(checkpoint: str, cache_dir: Path | None = None) -> Path:
    """A local path for `checkpoint`: the path itself, or an http(s) URL downloaded once into the cache."""
    if urlsplit(str(checkpoint)).scheme in ("http", "https"):
        import torch.hub

        cache_dir = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "labelloop" / "checkpoints"
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


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:10]


class Predictor:
    runtime = "torch"
    precision = "fp32"
    execution_provider = "torch"  # what runs the network (ONNX Runtime models name their provider)

    @property
    def model_class(self) -> str:
        return type(self.model).__name__

    def __init__(self, model, classes: list[str], version: str, device: str, batch_size: int | None = None):
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg

        self.model, self.classes, self.version, self.device = model, list(classes), version, device
        # On CPU the cores are already busy inside one image; batches only help on a GPU.
        self.batch_size = max(1, int(batch_size)) if batch_size else (1 if device == "cpu" else 8)
        steps = [s for s in get_test_pipeline_cfg(model.cfg.copy()) if "LoadAnnotations" not in s["type"]]
        steps[0] = dict(steps[0], type="mmdet.LoadImageFromNDArray")
        # Pad to the network's stride, not to a fixed square: fewer pixels for letterboxed images, same boxes.
        steps = [dict(type="Pad", size_divisor=32, pad_val=s.get("pad_val", dict(img=114)))
                 if s["type"] in ("Pad", "mmdet.Pad") and "size" in s else s for s in steps]
        self.pipeline = Compose(steps)
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    @classmethod
    def load(cls, checkpoint: str, config: str | None = None, device: str = "cpu", version: str | None = None,
             trust_checkpoint: bool = False, batch_size: int | None = None, default_config: str | None = None,
             score_threshold: float | None = None) -> "Predictor":
        """`config` wins; else the config a slim checkpoint carries; else `default_config`."""
        import torch
        from mmengine.config import Config

        started = time.perf_counter()
        device = select_device(device)
        path = fetch_checkpoint(str(checkpoint))
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
        except Exception as exc:
            hint = ("" if trust_checkpoint else "; if you trust this file, set backend.trust_checkpoint=true to "
                    "unpickle it")
            raise LoopError(f"checkpoint {path} cannot be loaded ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160]}){hint}") from None
        if not isinstance(ckpt, dict):
            raise LoopError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a state dict")
        state = ckpt.get("state_dict", ckpt)
        meta = ckpt.get("meta") or {}
        if config:
            cfg = Config.fromfile(str(config))
        elif isinstance(meta.get("config"), str):
            cfg = Config.fromstring(meta["config"], ".py")
        elif default_config:
            cfg = Config.fromfile(str(default_config))
        else:
            raise LoopError(f"checkpoint {path} carries no config; pass backend.config (model.config) with the "
                            "mmdet config file it was trained with")
        classes = (meta.get("classes") or (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
                   or (cfg.get("train_dataloader", {}).get("dataset", {}).get("metainfo") or {}).get("classes"))
        if not classes:
            from mmdet.evaluation import get_classes

            classes = get_classes("coco")
        model = _build(cfg, state, path, device)
        model.dataset_meta = {"classes": tuple(classes)}
        # Keep only boxes worth showing: the score threshold is applied before NMS, not after.
        if score_threshold is not None and "score_thr" in (model.test_cfg or {}):
            model.test_cfg.score_thr = max(float(model.test_cfg.score_thr), float(score_threshold))
        predictor = cls(model, list(classes), version or f"{path.stem}-{_file_digest(path)}", device, batch_size)
        predictor.load_s = time.perf_counter() - started
        log.info("loaded %s (%d classes) on %s in %.1f s", predictor.version, len(classes), device, predictor.load_s)
        return predictor

    def predict(self, images: list[np.ndarray], embed: bool = False) -> list[Detections]:
        """Detections for BGR uint8 images, in batches of `batch_size`; with `embed`, each also carries the
        image's neck features averaged over space (one vector per image, from the same forward pass)."""
        import torch
        from mmengine.dataset import pseudo_collate

        out: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = pseudo_collate([self.pipeline(dict(img=img, img_id=i)) for i, img in enumerate(chunk)])
            with self._lock, torch.no_grad():
                data = self.model.data_preprocessor(batch, False)
                inputs = data["inputs"].contiguous(memory_format=torch.channels_last)
                if embed:
                    feats = self.model.extract_feat(inputs)
                    results = self.model.bbox_head.predict(feats, data["data_samples"], rescale=True)
                    vectors = torch.cat([f.float().mean(dim=(2, 3)) for f in feats], dim=1).cpu().numpy()
                else:
                    results = [s.pred_instances for s in self.model.predict(inputs, data["data_samples"], rescale=True)]
                    vectors = [None] * len(results)
            for inst, vector in zip(results, vectors):
                out.append(Detections(inst.bboxes.cpu().numpy(), inst.scores.cpu().numpy(),
                                      inst.labels.cpu().numpy(), vector))
        return out


def _build(cfg, state: dict, path: Path, device: str):
    from mmdet.apis import init_detector

    try:
        model = init_detector(cfg, checkpoint=None, device="cpu")
    except Exception as exc:
        raise LoopError(f"the mmdet config cannot build a model ({type(exc).__name__}: {exc})") from None
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise LoopError(f"checkpoint {path} does not fit the config: {len(missing)} missing and "
                        f"{len(result.unexpected_keys)} unexpected weights (e.g. "
                        f"{(missing + list(result.unexpected_keys))[:3]}); use the config it was trained with")
    return optimise_for_inference(model.to(device).eval())


def optimise_for_inference(model):
    """BN folded into the convolutions of backbone and neck, and channels-last weights: about 1.5x faster
    RTMDet-tiny on 2 CPU cores, same outputs to float precision. Heads are left alone: RTMDet's head shares
    one convolution between levels that have their own BN, which folding would corrupt."""
    import torch
    from mmcv.cnn import fuse_conv_bn

    for part in ("backbone", "neck"):
        if hasattr(model, part):
            setattr(model, part, fuse_conv_bn(getattr(model, part)))
    return model.to(memory_format=torch.channels_last)
