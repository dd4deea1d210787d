"""The promotion-time ONNX check: export a new version's network and compare ONNX Runtime with torch on
held-out images, so a version whose exported network disagrees is never promoted (serving it with
`backend.runtime=auto` would silently change the detections people see)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.images import decode
from backend.onnx_heads import HeadOnnxDetector, head_network
from backend.onnx_runtime import OnnxDetector, agreement, export_onnx, open_onnx
from backend.predictor import Predictor
from loop.common.errors import LoopError
from loop.common.model_config import input_size


def onnx_check(model_dir: Path, images: list[Path], score_threshold: float) -> tuple[str, str]:
    """Export model_dir/model.onnx and check it against torch on `images`: (passed|failed|unsupported, why).
    Where the model detects nothing on them, the raw network outputs are compared instead."""
    reference = Predictor.load(str(model_dir / "model.pth"), score_threshold=score_threshold)
    try:
        size = input_size(reference.model.cfg)
        path = export_onnx(reference.model, size, model_dir / "model.onnx")
    except LoopError as exc:
        return "unsupported", str(exc)
    candidate = open_onnx(reference, path, size, score_threshold)
    arrays = [decode(Path(p).read_bytes()).bgr for p in images]
    expected = reference.predict(arrays)
    if sum(len(d.scores) for d in expected):
        ok, reason = agreement(expected, candidate.predict(arrays))
        return ("passed" if ok else "failed"), reason
    # Nothing detected: comparing no boxes with no boxes proves nothing, so compare the raw class logits.
    return raw_outputs_agree(reference.model, candidate, arrays)


def raw_outputs_agree(model, candidate: OnnxDetector | HeadOnnxDetector, arrays, atol: float = 1e-3
                      ) -> tuple[str, str]:
    """(passed | failed, why) for the networks' raw outputs on the same input tensors."""
    import torch

    network = head_network(model).cpu().eval()
    worst = 0.0
    for array in arrays:
        batch = candidate.network_input([array])
        with torch.no_grad():
            want = [t.numpy() for t in network(torch.from_numpy(batch))]
        got = candidate.session.run(None, {"input": batch})
        worst = max([worst] + [float(np.max(np.abs(w - g))) for w, g in zip(want, got)])
    verdict = "passed" if worst <= atol else "failed"
    return verdict, (f"no detections on {len(arrays)} held-out images to compare; the raw outputs differ by at "
                     f"most {worst:.2e} ({'within' if verdict == 'passed' else 'over'} {atol:g})")
