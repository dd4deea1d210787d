"""The loaded detector: the only module that runs mmdet inference.

A model is loaded once (never per request), from a checkpoint as it comes (loop.clients.checkpoints: safe
loading, the config it carries or a model-zoo name). Images are batched through the config's test pipeline
and one `test_step`, which mmdet's `inference_detector` does not do (it runs one image at a time).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.class_mask import class_drop, install_class_mask
from loop.clients.checkpoints import (
    class_names,
    fetch_checkpoint,
    file_sha256,
    model_config,
    read_checkpoint,
)
from loop.common.device import select_device
from loop.common.errors import LoopError
from loop.common.model_config import input_size, num_classes, segments

log = logging.getLogger(__name__)


@dataclass
class Detections:
    boxes: np.ndarray   # N x 4, x0 y0 x1 y1 in the input array's pixels
    scores: np.ndarray  # N
    labels: np.ndarray  # N, model class index
    embedding: np.ndarray | None = None  # pooled neck features, for diversity-aware active learning
    masks: np.ndarray | None = None      # N x H x W bool in the input array's pixels (instance segmentation)
    features: np.ndarray | None = None   # N x D: each box's neck features at its centre (embed="objects")


class Predictor:
    runtime = "torch"
    precision = "fp32"
    execution_provider = "torch"  # what runs the network (ONNX Runtime models name their provider)
    # The training set's boxes per class, aligned with `classes`, as the checkpoint records them (train.slim);
    # None for checkpoints without. The queue's class_balanced_entropy weighs rare classes by them.
    class_counts: list[int] | None = None

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
        self._drop: list[int] | None = None
        install_class_mask(model, lambda: self._drop)

    @classmethod
    def load(cls, checkpoint: str, config: str | None = None, device: str = "cpu", version: str | None = None,
             trust_checkpoint: bool = False, batch_size: int | None = None, score_threshold: float | None = None,
             img_size: int | None = None) -> "Predictor":
        """A checkpoint as it comes (see loop.clients.checkpoints) with `config` (a file or a model-zoo name), else
        the config it carries; served at the config's own input size unless `img_size` is given."""
        started = time.perf_counter()
        device = select_device(device)
        path = fetch_checkpoint(str(checkpoint))
        state, meta, _ = read_checkpoint(path, trust_checkpoint)
        cfg = model_config(meta, config, path, img_size)
        classes = class_names(meta, cfg, num_classes(cfg.model), path)
        model = _build(cfg, state, path, device)
        model.dataset_meta = {"classes": tuple(classes)}
        # Keep only boxes worth showing: the score threshold is applied before NMS, not after.
        # The detector and its heads may hold separate copies of test_cfg; two-stage models: the RoI head's.
        for part in (model, getattr(model, "bbox_head", None), getattr(model, "roi_head", None)):
            stage = getattr(part, "test_cfg", None) or {}
            if score_threshold is not None and "score_thr" in stage:
                stage["score_thr"] = max(float(stage["score_thr"]), float(score_threshold))
        digest = file_sha256(path)
        predictor = cls(model, list(classes), version or f"{path.stem}-{digest[:10]}", device, batch_size)
        predictor.digest = digest  # what the exported network is cached by: the weights, not a version number
        predictor.class_counts = recorded_class_counts(meta, classes, path)
        predictor.load_s = time.perf_counter() - started
        log.info("loaded %s (%s, %d classes, input %d px) on %s in %.1f s", predictor.version, predictor.model_class,
                 len(classes), predictor.input_size, device, predictor.load_s)
        return predictor

    @property
    def input_size(self) -> int:
        return input_size(self.model.cfg)

    @property
    def masks(self) -> bool:
        """Does the model give instance masks (what PolygonLabels and BrushLabels controls are drawn from)?"""
        return segments(self.model.cfg)

    def predict(self, images: list[np.ndarray], embed: bool | str = False, classes: list[int] | None = None
                ) -> list[Detections]:
        """Detections for BGR uint8 images, in batches of `batch_size`; with `embed`, each also carries the
        image's neck features averaged over space (one vector per image, from the same forward pass), and
        with embed="objects" also each box's neck features at its centre (`features`, object_features).
        `classes`: only these class indices are detected; the others are dropped from the head's scores,
        before top-k and NMS, so they cannot crowd out the classes asked for."""
        import torch
        from mmengine.dataset import pseudo_collate

        out: list[Detections] = []
        drop = class_drop(len(self.classes), classes)
        if drop is not None and len(drop) == len(self.classes):
            return [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
                    for _ in images]
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = pseudo_collate([self.pipeline(dict(img=img, img_id=i)) for i, img in enumerate(chunk)])
            with self._lock, torch.no_grad(), self._masking(drop):
                data = self.model.data_preprocessor(batch, False)
                results, vectors = self._infer(data["inputs"], data["data_samples"], embed)
            for inst, vector in zip(results, vectors):
                labels = inst.labels.cpu().numpy()
                keep = np.ones(len(labels), bool) if drop is None else ~np.isin(labels, drop)
                masks = inst.masks.cpu().numpy()[keep].astype(bool) if "masks" in inst else None
                features = inst.features.cpu().numpy()[keep] if "features" in inst else None
                out.append(Detections(inst.bboxes.cpu().numpy()[keep], inst.scores.cpu().numpy()[keep], labels[keep],
                                      vector, masks, features))
        return out

    def _infer(self, inputs, data_samples, embed: bool) -> tuple[list, list]:
        """(pred_instances, pooled neck features or None) per image of one normalised batch."""
        import torch

        inputs = inputs.contiguous(memory_format=torch.channels_last)
        if embed:
            feats = self.model.extract_feat(inputs)
            results = self.model.bbox_head.predict(feats, data_samples, rescale=True)
            if embed == "objects":
                for i, (inst, sample) in enumerate(zip(results, data_samples)):
                    inst.features = object_features([f[i:i + 1] for f in feats], inst.bboxes, sample.metainfo,
                                                    inputs.shape[-2:])
            return results, torch.cat([f.float().mean(dim=(2, 3)) for f in feats], dim=1).cpu().numpy()
        results = [s.pred_instances for s in self.model.predict(inputs, data_samples, rescale=True)]
        return results, [None] * len(results)

    @contextmanager
    def _masking(self, drop: np.ndarray | None):
        """While inside, the class-score hooks (backend.class_mask) drop these classes."""
        self._drop = None if drop is None else drop.tolist()
        try:
            yield
        finally:
            self._drop = None


def object_features(levels: list, boxes, meta: dict, input_hw):
    """N x (sum of channels): each box's features at its centre, sampled (bilinear) from every neck level of
    one image and concatenated. `boxes` are in the original image's pixels (rescaled predictions); `meta`
    says how the image was scaled (scale_factor) and, for centred letterboxes, padded (pad_param: top,
    bottom, left, right) into the network input of size `input_hw`.

    Why per box: an image's pooled features say what the scene looks like; a detector learns objects, and
    two images of the same background can hold objects it has never seen. Active learning's object-level
    diversity (loop.al.diversity.object_coverage) compares these."""
    import torch
    import torch.nn.functional as F

    sw, sh = (float(v) for v in meta.get("scale_factor", (1.0, 1.0)))
    top, _, left, _ = (float(v) for v in meta.get("pad_param", (0, 0, 0, 0)))
    if len(boxes) == 0:
        return torch.zeros((0, sum(level.shape[1] for level in levels)))
    b = boxes.float()
    cx = (b[:, 0] + b[:, 2]) / 2 * sw + left
    cy = (b[:, 1] + b[:, 3]) / 2 * sh + top
    h, w = (float(v) for v in input_hw)
    grid = torch.stack([cx / w * 2 - 1, cy / h * 2 - 1], dim=1).view(1, 1, -1, 2)
    return torch.cat([F.grid_sample(level.float(), grid.to(level.device), align_corners=False)[0, :, 0].T
                      for level in levels], dim=1)


def recorded_class_counts(meta: dict, classes: list[str], path: Path) -> list[int] | None:
    """The checkpoint's training-set boxes per class (meta["class_counts"], written by train.slim), or None when
    it records none or they do not fit its classes (then every class weighs the same in the queue)."""
    counts = meta.get("class_counts")
    if counts is None:
        return None
    if not isinstance(counts, (list, tuple)) or len(counts) != len(classes) or \
            not all(isinstance(c, int) and c >= 0 for c in counts):
        log.warning("checkpoint %s: meta['class_counts'] is not one count per class (%d classes); the queue "
                    "weighs every class the same", path, len(classes))
        return None
    return [int(c) for c in counts]


def _build(cfg, state: dict, path: Path, device: str):
    from mmdet.apis import init_detector

    try:
        model = init_detector(cfg, checkpoint=None, device="cpu")
    except Exception as exc:
        raise LoopError(f"the mmdet config cannot build a model ({type(exc).__name__}: {exc})") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # torch refuses tensors of another shape even when not strict
        mismatched = str(exc).count("size mismatch")
        raise LoopError(f"checkpoint {path} does not fit the config: {mismatched} weights have another shape "
                        f"({str(exc).split('size mismatch for ')[-1].splitlines()[0][:160]}); use the config it was "
                        "trained with") from None
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
