"""RTMDet through ONNX Runtime, with our own vectorised pre- and post-processing.

The graph holds only the network (backbone, neck, head: raw per-level class logits and box distances);
letterboxing, normalisation, prior decoding, score filtering, top-k and class-aware NMS (mmcv's op) run
outside it, following mmdet's RTMDet test path step for step so both runtimes give the same boxes. Other
single-stage models (MMYOLO, instance segmentation) run around their own code: backend.onnx_heads.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from backend.class_mask import class_drop
from backend.onnx_heads import HeadOnnxDetector, export_head_onnx
from backend.ort_session import check_precision, create_session
from backend.predictor import Detections
from loop.common.errors import LoopError
from loop.common.model_config import input_size

log = logging.getLogger(__name__)


def vectorised(detector) -> bool:
    """Does our vectorised RTMDet path fit the model (mmdet's RTMDet box heads; MMYOLO's RTMDet shares the name
    but predicts boxes in stride units), or does it run around its own head (backend.onnx_heads)?"""
    head = type(getattr(detector, "bbox_head", None))
    return head.__name__ in ("RTMDetHead", "RTMDetSepBNHead") and head.__module__.startswith("mmdet.")


def export_onnx(detector, img_size: int, out: Path) -> Path:
    """Export the network (dynamic batch, height and width; traced at img_size); returns the file. RTMDet's
    outputs are named for our post-processing: cls_0, cls_1, cls_2, box_0, box_1, box_2."""
    if not vectorised(detector):
        return export_head_onnx(detector, img_size, out)
    levels = len(detector.bbox_head.prior_generator.strides)
    return export_head_onnx(detector, img_size, out, [f"cls_{i}" for i in range(levels)] +
                            [f"box_{i}" for i in range(levels)])


class OnnxDetector:
    """Same interface as backend.predictor.Predictor: classes, version, device, batch_size, predict()."""

    runtime = "onnxruntime"
    class_counts: list[int] | None = None  # the checkpoint's training-set boxes per class (see Predictor)

    def __init__(self, onnx_path: Path, cfg, classes: list[str], version: str, img_size: int, device: str = "cpu",
                 batch_size: int | None = None, score_threshold: float | None = None, threads: int | None = None,
                 precision: str = "fp32"):
        self.session = create_session(Path(onnx_path), device, threads, precision)
        self.precision = precision
        self.classes, self.version, self.device, self.path = list(classes), version, device, Path(onnx_path)
        self.batch_size = max(1, int(batch_size)) if batch_size else 1
        head = cfg.model.bbox_head
        pre = cfg.model.data_preprocessor
        self.mean = np.asarray(pre.mean, np.float32)
        self.inv_std = 1.0 / np.asarray(pre.std, np.float32)
        self.pad = (114.0 - self.mean) * self.inv_std
        self.bgr_to_rgb = bool(pre.get("bgr_to_rgb", False))
        self.size = self.input_size = int(img_size)
        self.strides = [int(s if isinstance(s, (int, float)) else s[0])
                        for s in head.get("anchor_generator", {}).get("strides", [8, 16, 32])]
        test = cfg.model.test_cfg
        self.nms_pre, self.iou = int(test.get("nms_pre", 1000)), float(test.nms.iou_threshold)
        self.score_thr = max(float(test.get("score_thr", 0.0)), float(score_threshold or 0.0))
        self.max_per_img = int(test.get("max_per_img", 100))
        self.model_class = cfg.model.type
        self._priors = {}
        self.providers = self.session.get_providers()
        self.execution_provider = self.providers[0]  # e.g. OpenVINOExecutionProvider for bf16

    # -- pre-processing: as mmdet's Resize(keep_ratio) then padding to the stride (the torch path does too) ---
    def _prepare(self, img: np.ndarray) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
        """Letterbox resize only (uint8); normalisation happens while copying into the batch."""
        h, w = img.shape[:2]
        scale = min(self.size / h, self.size / w)
        nw, nh = int(w * scale + 0.5), int(h * scale + 0.5)
        resized = img if (nw, nh) == (w, h) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        # mmdet clips boxes to the padded shape (its Pad updates img_shape); so do we, to give the same boxes
        padded = (-(-nh // 32) * 32, -(-nw // 32) * 32)
        return resized, padded, (nw / w, nh / h)

    def _batch(self, images: list[np.ndarray]) -> np.ndarray:
        """N x 3 x H x W float32, H and W the largest sides rounded up to 32: each image normalised channel by
        channel straight into its slot (one pass per channel, no HWC float copy), the rest grey 114
        normalised, as mmdet pads."""
        h = -(-max(a.shape[0] for a in images) // 32) * 32
        w = -(-max(a.shape[1] for a in images) // 32) * 32
        batch = np.empty((len(images), 3, h, w), np.float32)
        order = (2, 1, 0) if self.bgr_to_rgb else (0, 1, 2)
        for i, img in enumerate(images):
            ih, iw = img.shape[:2]
            for c, src in enumerate(order):
                dst = batch[i, c]
                dst[ih:, :] = self.pad[c]
                dst[:ih, iw:] = self.pad[c]
                np.subtract(img[:, :, src], self.mean[c], out=dst[:ih, :iw])
                dst[:ih, :iw] *= self.inv_std[c]
        return batch

    def network_input(self, images: list[np.ndarray]) -> np.ndarray:
        """The N x 3 x H x W tensor `predict` feeds the network for these BGR images (for timing the network
        alone)."""
        return self._batch([self._prepare(img)[0] for img in images])

    def _level_priors(self, level: int, h: int, w: int) -> np.ndarray:
        key = (level, h, w)
        if key not in self._priors:
            s = self.strides[level]
            ys, xs = np.meshgrid(np.arange(h, dtype=np.float32) * s, np.arange(w, dtype=np.float32) * s,
                                 indexing="ij")
            self._priors[key] = np.stack([xs.ravel(), ys.ravel()], axis=1)
        return self._priors[key]

    # -- post-processing: per level threshold + top-k, decode, rescale, class-aware NMS ----------------------
    def _decode(self, outputs: list[np.ndarray], b: int, img_shape, scale, keep: np.ndarray | None = None
                ) -> tuple[np.ndarray, ...]:
        """`keep`: the class indices asked for; the others are dropped before the threshold and top-k."""
        import torch
        from mmcv.ops import batched_nms

        levels = len(outputs) // 2
        all_boxes, all_scores, all_labels = [], [], []
        for lvl in range(levels):
            cls = outputs[lvl][b] if keep is None else outputs[lvl][b][keep]  # C x H x W
            box = outputs[levels + lvl][b]  # 4 x H x W
            c, h, w = cls.shape
            scores = 1.0 / (1.0 + np.exp(-cls.reshape(c, -1).T))  # (HW, C)
            flat = scores.ravel()
            idx = top_k(flat, self.score_thr, self.nms_pre)
            points, labels = np.divmod(idx, c)
            dist = box.reshape(4, -1).T[points]
            p = self._level_priors(lvl, h, w)[points]
            boxes = np.concatenate([p - dist[:, :2], p + dist[:, 2:]], axis=1)
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, img_shape[1])
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, img_shape[0])
            all_boxes.append(boxes)
            all_scores.append(flat[idx])
            all_labels.append(labels if keep is None else keep[labels])
        boxes = np.concatenate(all_boxes) / np.array([scale[0], scale[1], scale[0], scale[1]], np.float32)
        scores, labels = np.concatenate(all_scores), np.concatenate(all_labels)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if not len(boxes):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        dets, kept = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores.astype(np.float32)),
                                 torch.from_numpy(labels), dict(type="nms", iou_threshold=self.iou))
        kept = kept[:self.max_per_img].numpy()
        return boxes[kept], scores[kept], labels[kept]

    masks = False  # boxes only: RTMDet's box heads

    def predict(self, images: list[np.ndarray], classes: list[int] | None = None):
        out = []
        drop = class_drop(len(self.classes), classes)
        keep = None if drop is None else np.setdiff1d(np.arange(len(self.classes)), drop)
        if keep is not None and not len(keep):
            return [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
                    for _ in images]
        for start in range(0, len(images), self.batch_size):
            chunk = [self._prepare(img) for img in images[start:start + self.batch_size]]
            outputs = self.session.run(None, {"input": self._batch([c[0] for c in chunk])})
            for b, (_, img_shape, scale) in enumerate(chunk):
                out.append(Detections(*self._decode(outputs, b, img_shape, scale, keep)))
        return out


def top_k(scores: np.ndarray, threshold: float, k: int) -> np.ndarray:
    """Indices of the scores above `threshold`; when more than k, the k highest, best first (pure). Weak models
    pass thousands of candidates, so only the k kept are sorted, after a partition."""
    idx = np.flatnonzero(scores > threshold)
    if idx.size <= k:
        return idx
    top = idx[np.argpartition(-scores[idx], k - 1)[:k]]
    return top[np.argsort(-scores[top], kind="stable")]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes (pure)."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def same_box(a: np.ndarray, b: np.ndarray, min_iou: float) -> bool:
    """IoU >= min_iou, or the same corners to 0.1 px (two runtimes agree on an empty box too) (pure)."""
    return box_iou(a, b) >= min_iou or bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) <= 0.1))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1 for two empty masks (pure)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def agreement(reference: list, candidate: list, min_iou: float = 0.99, max_score_diff: float = 1e-3
              ) -> tuple[bool, str]:
    """Do two runtimes give the same detections? Every reference box needs a candidate with the same label,
    IoU >= min_iou and a score within max_score_diff (and, for instance masks, mask IoU >= min_iou), and the
    counts must match (pure)."""
    for i, (r, c) in enumerate(zip(reference, candidate)):
        if len(r.scores) != len(c.scores):
            return False, f"image {i}: {len(r.scores)} vs {len(c.scores)} detections"
        masks = r.masks is not None and c.masks is not None
        for k, (box, score, label) in enumerate(zip(r.boxes, r.scores, r.labels)):
            if not any(label == c.labels[j] and same_box(box, c.boxes[j], min_iou)
                       and abs(score - c.scores[j]) <= max_score_diff
                       and (not masks or mask_iou(r.masks[k], c.masks[j]) >= min_iou) for j in range(len(c.scores))):
                where = np.round(box, 1).tolist()
                return False, f"image {i}: no match for a class-{label} {'mask' if masks else 'box'} at {where} " \
                              f"({score:.3f})"
    what = "detections (boxes and masks)" if reference and reference[0].masks is not None else "detections"
    return True, f"{sum(len(r.scores) for r in reference)} {what} on {len(reference)} images agree"


def prune(cache_dir: Path, keep: int) -> None:
    """Keep the `keep` networks used last."""
    files = sorted(cache_dir.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)
        log.info("ONNX cache: removed %s", old.name)


def detection_agreement(reference: list, candidate: list, score_threshold: float, min_iou: float = 0.5
                        ) -> tuple[int, int]:
    """(kept, compared): how many reference detections scoring >= score_threshold the candidate also finds
    (same label, IoU >= min_iou), over how many there were (pure)."""
    kept = total = 0
    for r, c in zip(reference, candidate):
        for box, score, label in zip(r.boxes, r.scores, r.labels):
            if score < score_threshold:
                continue
            total += 1
            kept += any(label == cl and box_iou(box, cb) >= min_iou for cb, cl in zip(c.boxes, c.labels))
    return kept, total


def load_onnx(predictor, cache_dir: Path, img_size: int | None = None, score_threshold: float | None = None,
              onnx_file: Path | None = None, threads: int | None = None, precision: str = "fp32"):
    """An OnnxDetector (or HeadOnnxDetector) for a loaded torch Predictor: `onnx_file` if given and present (a
    registry version's artifact), else its network exported once into cache_dir."""
    started = time.perf_counter()
    check_precision(precision, predictor.device)  # a refused precision costs no export
    size = img_size or input_size(predictor.model.cfg)
    path = Path(cache_dir) / f"{predictor.digest[:16]}-{size}.onnx"  # by content: never another model's network
    if precision == "int8" and not (onnx_file is not None and Path(onnx_file).exists()):
        raise LoopError("backend.precision=int8 needs the version's checked int8 network (made by stage=retrain)")
    if onnx_file is not None and Path(onnx_file).exists():
        path = Path(onnx_file)
    elif not path.exists():
        export_onnx(predictor.model, size, path)
        prune(Path(cache_dir), keep=8)
    else:
        os.utime(path)
    det = open_onnx(predictor, path, size, score_threshold, threads, precision)
    det.load_s = getattr(predictor, "load_s", 0.0) + time.perf_counter() - started
    return det


def open_onnx(predictor, path: Path, size: int, score_threshold: float | None = None, threads: int | None = None,
              precision: str = "fp32"):
    """The exported network of a loaded torch Predictor in ONNX Runtime, by the path that fits the model."""
    if vectorised(predictor.model):
        det = OnnxDetector(path, predictor.model.cfg, predictor.classes, predictor.version, size, predictor.device,
                           score_threshold=score_threshold, threads=threads, precision=precision)
    else:
        det = HeadOnnxDetector(predictor, path, threads, precision)
    det.class_counts = getattr(predictor, "class_counts", None)  # the checkpoint's, for the queue score
    return det
