"""Any single-stage mmdet or MMYOLO detector through ONNX Runtime, around the model's own code.

The graph holds backbone, neck and head (their raw outputs, flattened); everything around it is the model's
own: its test pipeline and data preprocessor before, its head's `predict_by_feat` with its test_cfg after.
So both runtimes give the same detections for the heads our vectorised RTMDet path (backend.onnx_runtime)
does not know: MMYOLO's YOLOv5, YOLOv8 and RTMDet (whose boxes are in stride units and whose images are
letterboxed to the centre), and instance segmentation heads such as RTMDet-Ins (kernels and mask features
out of the graph, masks assembled by the head).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from backend.class_mask import mask_sigmoid_levels, sigmoid_classes
from backend.ort_session import create_session
from backend.predictor import Predictor
from loop.common.errors import LoopError


def head_layout(outputs) -> list[int]:
    """Per head output: how many levels it has, 0 for a single tensor (RTMDet-Ins's mask features)."""
    return [len(o) if isinstance(o, (list, tuple)) else 0 for o in outputs]


def output_names(layout: list[int]) -> list[str]:
    """`o1_2` is level 2 of head output 1; `o3` is head output 3 when it is a single tensor."""
    return [name for i, n in enumerate(layout) for name in ([f"o{i}_{j}" for j in range(n)] if n else [f"o{i}"])]


def regroup(names: list[str], values: list) -> list:
    """The head's outputs from the graph's flat outputs (inverse of `output_names`, by name)."""
    grouped: dict[int, dict[int, object] | object] = {}
    for name, value in zip(names, values):
        i, j = re.fullmatch(r"o(\d+)(?:_(\d+))?", name).groups()
        if j is None:
            grouped[int(i)] = value
        else:
            grouped.setdefault(int(i), {})[int(j)] = value
    return [[v[j] for j in sorted(v)] if isinstance(v, dict) else v for _, v in sorted(grouped.items())]


def flatten(outputs) -> tuple:
    """The head's outputs as one flat tuple of tensors, level by level (the graph's outputs)."""
    return tuple(t for o in outputs for t in (o if isinstance(o, (list, tuple)) else [o]))


def head_network(detector):
    """backbone -> neck -> head as one module returning the head's outputs flattened, level by level."""
    import torch

    class Network(torch.nn.Module):
        def __init__(self, det):
            super().__init__()
            self.det = det

        def forward(self, x):
            return flatten(self.det.bbox_head(self.det.extract_feat(x)))

    return Network(detector).eval()


def export_head_onnx(detector, img_size: int, out: Path, names: list[str] | None = None) -> Path:
    """Export the network (dynamic batch, height and width; traced at img_size); returns the file. `names`:
    the graph's output names, by default `output_names` of the head's layout."""
    import torch

    head = getattr(detector, "bbox_head", None)
    if head is None or not hasattr(head, "predict_by_feat"):
        raise LoopError(f"ONNX export covers single-stage detectors, not {type(detector).__name__} (a two-stage "
                        "model); serve it with backend.runtime=torch")
    net, sample = head_network(detector).cpu(), torch.zeros(1, 3, img_size, img_size)
    with torch.no_grad():  # one pass: the head's layout names the outputs, their ranks say which axes vary
        outputs = detector.bbox_head(detector.extract_feat(sample))
    flat, names = flatten(outputs), names or output_names(head_layout(outputs))
    axes = {n: ({0: "batch", 2: f"h_{n}", 3: f"w_{n}"} if t.dim() == 4 else {0: "batch"}) for n, t in zip(names, flat)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # several workers may export the same model at once
    with torch.no_grad():
        torch.onnx.export(net, sample, str(tmp), opset_version=17, dynamo=False, input_names=["input"],
                          output_names=names, dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, **axes})
    os.replace(tmp, out)
    return out


class HeadOnnxDetector(Predictor):
    """A loaded torch Predictor whose network runs in ONNX Runtime: same pipeline, same post-processing."""

    runtime = "onnxruntime"

    def __init__(self, predictor: Predictor, onnx_path: Path, threads: int | None = None, precision: str = "fp32"):
        # the loaded model, its pipeline, classes, version, device and lock, shared rather than built again
        self.__dict__.update(predictor.__dict__)
        self.session = create_session(Path(onnx_path), predictor.device, threads, precision)
        self.path, self.precision = Path(onnx_path), precision
        self.providers = self.session.get_providers()
        self.execution_provider = self.providers[0]
        self.names = [o.name for o in self.session.get_outputs()]

    def network_input(self, images: list[np.ndarray]) -> np.ndarray:
        """The N x 3 x H x W float32 array the network is fed for these BGR images."""
        import torch
        from mmengine.dataset import pseudo_collate

        batch = pseudo_collate([self.pipeline(dict(img=img, img_id=i)) for i, img in enumerate(images)])
        with torch.no_grad():
            return self.model.data_preprocessor(batch, False)["inputs"].float().cpu().numpy()

    def _infer(self, inputs, data_samples, embed: bool) -> tuple[list, list]:
        import torch

        if embed:  # the pooled neck features are not graph outputs: the torch network gives them
            return super()._infer(inputs, data_samples, embed)
        outputs = self.session.run(None, {"input": inputs.float().cpu().numpy()})
        heads = regroup(self.names, [torch.from_numpy(o) for o in outputs])
        n_classes = sigmoid_classes(self.model)
        if self._drop is not None and n_classes:
            heads[0] = mask_sigmoid_levels(heads[0], self._drop, n_classes)
        metas = [s.metainfo for s in data_samples]
        results = self.model.bbox_head.predict_by_feat(*heads, batch_img_metas=metas, rescale=True)
        return list(results), [None] * len(results)
