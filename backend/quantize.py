"""int8 networks for ONNX Runtime on any CPU: static quantization in QDQ form (uint8 activations, int8
per-channel weights: the pairing x86 VNNI and ARM dot-product instructions multiply natively, and that AVX2
runs too), calibrated with min/max ranges on images of the model's own task. Weights use 7 of their 8 bits
(reduce_range): without VNNI (AVX2-only x86, e.g. AMD Zen 2/3) the u8 x s8 kernels add pairs of products in
16 bits, which full-range weights can saturate. bench/int8_cpus.py measured it: with 7 bits an emulated
AVX2-only x86-64 and ARM (with and without dot product) give outputs identical to an AVX512-VNNI CPU's; with
8 bits the AVX2 outputs differ by tens. What the lost bit costs in mAP was within noise on the demo models.

torch's exporter stores equal tensors once and hands them to their other users through Identity nodes: the zero
biases of freshly initialised layers, or the weights of convolutions shared across a head's levels whose
norms are still equal. The quantizer takes such an input for an activation, so those convolutions stayed
fp32 between DequantizeLinear and QuantizeLinear (a random-initialised RTMDet-tiny ran slower in "int8"
than in fp32). Each user gets its own copy before quantizing (`own_constants`).

A version's int8 network is made and checked at retrain time, on its held-out images (see
loop.stages.int8_check); the server only loads it, and only when the check passed. What the check
decided lives next to the network in `int8_check.json`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

INT8_FILE, INT8_CHECK = "model.int8.onnx", "int8_check.json"


def quantize_int8(fp32: Path, out: Path, inputs: Iterable[np.ndarray], reduce_range: bool = True) -> Path:
    """Write the int8 network of `fp32` to `out`, calibrated on `inputs` (the N x 3 x H x W tensors the
    detector feeds its network). `reduce_range=False` (all 8 bits of the weights) only for comparisons: see
    the module docstring."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(inputs)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    model = onnx.load(str(fp32))
    own_constants(model.graph)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the tool suggests optional pre-processing on every call
    try:
        quantize_static(model, str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.getLogger().setLevel(quiet)
    os.replace(tmp, out)
    return out


def own_constants(graph) -> int:
    """Replace every Identity node that forwards an initializer by a copy of that initializer under the node's
    output name (see the module docstring); returns how many. Works on the onnx GraphProto in place."""
    from onnx import numpy_helper

    constants = {init.name: init for init in graph.initializer}
    outputs = {out.name for out in graph.output}  # a graph output must stay a node's output
    forwarded = [node for node in graph.node
                 if node.op_type == "Identity" and node.input[0] in constants and node.output[0] not in outputs]
    for node in forwarded:
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(constants[node.input[0]]),
                                                         node.output[0]))
        graph.node.remove(node)
    return len(forwarded)


def int8_verdict(fp32_map: float, int8_map: float, fp32_detections: int, tolerance: float) -> tuple[str, str]:
    """(passed | failed | inconclusive, why): int8 may serve when its held-out mAP is within `tolerance` of
    fp32's. With no fp32 detection on the held-out images, or none of them right (mAP 0, which int8 cannot
    fall below), there is nothing to compare, and int8 does not serve (pure)."""
    if fp32_detections == 0:
        return "inconclusive", "the fp32 model finds nothing on the held-out images: no mAP to compare"
    if fp32_map <= 0.0:
        return "inconclusive", ("the fp32 model's held-out mAP is 0: no accuracy for int8 to keep; train further "
                                "(stage=retrain) and register again")
    drop = fp32_map - int8_map
    figures = f"held-out mAP int8 {int8_map:.4f} vs fp32 {fp32_map:.4f} ({-drop:+.4f})"
    if drop <= tolerance:
        return "passed", f"{figures}, within {tolerance:.4f}"
    return "failed", f"{figures}, more than {tolerance:.4f} lower"


def read_check(model_dir: Path) -> tuple[Path | None, str]:
    """(the int8 network, "") when its check passed; (None, why not) otherwise."""
    check, network = Path(model_dir) / INT8_CHECK, Path(model_dir) / INT8_FILE
    if not check.exists() or not network.exists():
        return None, ("no int8 network: it is made and checked when a version is registered (stage=retrain); "
                      "serve backend.serve_alias=champion")
    state = json.loads(check.read_text())
    if state.get("state") != "passed":
        return None, f"its int8 check {state.get('state')}: {state.get('detail')}"
    return network, ""
