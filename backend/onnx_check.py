"""The promotion-time ONNX check: export a new version's network and compare ONNX Runtime with torch on
held-out images, so a version whose exported network disagrees is never promoted (serving it with
`backend.runtime=auto` would silently change the detections people see)."""

from __future__ import annotations

from pathlib import Path

from backend.images import decode
from backend.onnx_runtime import OnnxDetector, agreement, export_onnx
from backend.predictor import Predictor
from loop.common.errors import LoopError
from loop.common.model_config import input_size


def onnx_check(model_dir: Path, images: list[Path], score_threshold: float) -> tuple[str, str]:
    """Export model_dir/model.onnx and check it against torch on `images`: (passed|failed|unsupported, why)."""
    reference = Predictor.load(str(model_dir / "model.pth"), score_threshold=score_threshold)
    try:
        size = input_size(reference.model.cfg)
        path = export_onnx(reference.model, size, model_dir / "model.onnx")
    except LoopError as exc:
        return "unsupported", str(exc)
    candidate = OnnxDetector(path, reference.model.cfg, reference.classes, reference.version, size,
                             score_threshold=score_threshold)
    arrays = [decode(Path(p).read_bytes()).bgr for p in images]
    ok, reason = agreement(reference.predict(arrays), candidate.predict(arrays))
    return ("passed" if ok else "failed"), reason
