"""Turn the user's `device=` into something torch and mmengine honour, or a clear error."""

from __future__ import annotations

import os

from loop.common.errors import LoopError


def select_device(device: str) -> str:
    """Validate `device` (cpu, cuda, cuda:N) and pin the process to it.

    mmengine's Runner places the model on `cuda` whenever CUDA is visible, so `device=cpu` on a GPU machine
    hides the GPUs (before CUDA is initialised), and `cuda:N` makes N the current device.
    """
    device = str(device).strip().lower()
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    if device == "gpu" or device.startswith("gpu:"):  # the tutorials' spelling
        device = "cuda" + device[3:]
    if not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise LoopError(f"device={device!r} is not understood; use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise LoopError(f"device={device} was asked for but CUDA is not available (torch {torch.__version__} is "
                        f"{build}); use device=cpu, or install a CUDA build of torch into .venv")
    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise LoopError(f"device={device} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(index)
    return f"cuda:{index}"
