"""Run one ONNX network over saved inputs and save its raw outputs: the part of `bench/int8_cpus.py` that runs
on another CPU (an AVX2-only x86-64 or an ARM one, under qemu-user), so it needs numpy and onnxruntime only.

    python bench/ort_outputs.py NETWORK INPUTS.npz OUTPUTS.npz

INPUTS.npz holds arrays x0, x1, ... (N x 3 x H x W float32); OUTPUTS.npz gets y{i}_{k}, the k-th output for
input i. It prints what this CPU offers ONNX Runtime, as numpy's runtime report sees it.
"""

from __future__ import annotations

import platform
import sys

import numpy as np
import onnxruntime as ort


def main(network: str, inputs: str, outputs: str) -> None:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # emulated cores gain nothing from threads; results do not depend on them
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")  # as backend.ort_session does
    session = ort.InferenceSession(network, opts, providers=["CPUExecutionProvider"])
    feed = np.load(inputs)
    out = {}
    for i in range(len(feed.files)):
        for k, y in enumerate(session.run(None, {"input": feed[f"x{i}"]})):
            out[f"y{i}_{k}"] = y
    np.savez(outputs, **out)
    found = []
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features  # numpy 2
        found = [name for name in ("AVX2", "AVX512F", "AVX512_ICL", "ASIMD", "ASIMDDP") if features.get(name)]
    except ImportError:
        pass
    print(f"{platform.machine()}, onnxruntime {ort.__version__}, CPU features {' '.join(found) or 'unknown'}: "
          f"{len(feed.files)} inputs")


if __name__ == "__main__":
    main(*sys.argv[1:4])
