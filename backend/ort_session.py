"""ONNX Runtime sessions: which execution provider runs the exported network, at which precision, on how
many threads. The only module that talks to ONNX Runtime's provider machinery.

- `fp32` (default): ONNX Runtime's own CPU kernels, or its CUDA provider with `device=cuda:N`. Same
  arithmetic as torch to ~1e-6, so the detections equal the torch path's (the agreement rule holds).
- `bf16` (opt-in, CPU only): the OpenVINO execution provider (the `onnxruntime-ep-openvino` plugin) with
  the CPU's bfloat16 units (AMX or AVX512-BF16). On a CPU that has them the network runs about 2.5x faster,
  but activations keep 8 bits of mantissa: scores move by up to ~1e-2 and a box near the score threshold
  can appear or vanish. Worth it for bulk pre-annotation that people correct anyway; not for the
  promotion check, which always compares in fp32.

OpenVINO picks bf16 by itself on such CPUs when no precision is given, so fp32 is never routed through it
without saying so explicitly.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from loop.common.errors import LoopError

PRECISIONS = ("fp32", "bf16", "int8")
_OPENVINO = "openvino"  # our registration name for the plugin library


@dataclass(frozen=True)
class CpuReport:
    """What ONNX Runtime lists for this CPU once the OpenVINO plugin is registered (plain values)."""
    vendor: str                        # the CPU's vendor as ONNX Runtime sees it ("Intel", "AMD", ...)
    openvino_capabilities: str | None  # OpenVINO's OPTIMIZATION_CAPABILITIES, None: it lists no CPU device


def bf16_refusal(report: CpuReport) -> str | None:
    """Why bf16 cannot run on this CPU, as one line with the fix, or None when it can (pure).

    bf16 means OpenVINO running the network on bfloat16 units it uses itself: OpenVINO says so with BF16 in
    its capabilities. Where its provider lists no CPU device at all or lists one without BF16, we refuse
    rather than serve fp32 under a bf16 label. On AMD EPYC Zen 4, which has AVX512-BF16, it lists none: the
    plugin's device listing skips every device whose vendor id is not Intel's. There int8 is the fast path
    (the network 1.7x faster than fp32 on the demo model at 640 px), and bf16 in torch (oneDNN) was measured
    only 10 % faster than fp32 in ONNX Runtime, so no other bf16 route is offered."""
    if report.openvino_capabilities is None:
        why = ("the plugin skips every device whose vendor is not Intel, whatever its bfloat16 units"
               if report.vendor and report.vendor.lower() != "intel" else "it found no CPU device")
        return (f"backend.precision=bf16 runs through OpenVINO's execution provider, which lists no device for "
                f"this CPU (vendor {report.vendor or 'unknown'}; {why}): use backend.precision=int8 or auto (a "
                "version's checked int8 network, measured 1.7-1.8x faster than fp32 on AMD and Intel CPUs with "
                "VNNI), or use backend.precision=fp32")
    if "BF16" not in report.openvino_capabilities.split():
        return ("backend.precision=bf16 needs a CPU whose bfloat16 units OpenVINO uses (AMX or AVX512-BF16); on "
                f"this {report.vendor or 'unknown-vendor'} CPU it offers "
                f"{report.openvino_capabilities or 'none'}: use backend.precision=fp32")
    return None


class _Probe:
    """The OpenVINO plugin, registered with ONNX Runtime once per process whatever the outcome, and what it
    found: the device sessions run on, or the refusal every later bf16 request gets, word for word."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done = False
        self.device = None
        self.report: CpuReport | None = None
        self.refusal: str | None = None

    def run(self) -> None:
        with self.lock:
            if self.done:
                return
            try:
                self.device, self.report = _register_and_list()
                self.refusal = bf16_refusal(self.report)
            except LoopError as exc:
                self.refusal = str(exc)
            except Exception as exc:  # whatever ONNX Runtime raises: the same one line now and on every later call
                self.refusal = (f"ONNX Runtime could not list OpenVINO's devices ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:300]}); use backend.precision=fp32")
            finally:
                self.done = True


def _register_and_list():
    """(OpenVINO's CPU device or None, CpuReport): registers the plugin library (once: callers hold the probe)."""
    import onnxruntime as ort

    try:
        import onnxruntime_ep_openvino as plugin
    except ImportError:
        raise LoopError("backend.precision=bf16 needs the OpenVINO execution provider: "
                        "pip install onnxruntime-ep-openvino (Linux and Windows on x86-64)") from None
    try:
        ort.register_execution_provider_library(_OPENVINO, plugin.get_library_path())
    except Exception as exc:  # onnxruntime's Fail: another part of this process registered it under our name
        if "already registered" not in str(exc):
            raise LoopError(f"ONNX Runtime refused the OpenVINO plugin ({' '.join(str(exc).split())[:300]}); use "
                            "backend.precision=fp32") from None
    devices = ort.get_ep_devices()
    vendor = next((d.device.vendor for d in devices if d.ep_name == "CPUExecutionProvider"), "")
    cpu = next((d for d in devices if d.ep_name == plugin.get_ep_name() and d.ep_metadata.get("ov_device") == "CPU"),
               None)
    capabilities = None if cpu is None else str(cpu.ep_metadata.get("OPTIMIZATION_CAPABILITIES", ""))
    return cpu, CpuReport(vendor=str(vendor), openvino_capabilities=capabilities)


_probe = _Probe()


def bf16_refusal_here() -> str | None:
    """Why this process cannot run bf16 on this CPU (the line check_precision raises), or None where it can."""
    _probe.run()
    return _probe.refusal


def check_precision(precision: str, device: str = "cpu") -> None:
    """Refuse a precision this machine cannot run, before any model is loaded, saying how to fix it."""
    if precision not in PRECISIONS:
        raise LoopError(f"backend.precision={precision!r}: use auto, {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return
    if precision == "int8":  # ONNX Runtime's own CPU kernels: any x86-64 with AVX2, faster with VNNI; ARM
        if device != "cpu":
            raise LoopError(f"backend.precision=int8 runs on the CPU; with device={device} use backend.precision=fp32")
        return
    if device != "cpu":
        raise LoopError(f"backend.precision=bf16 runs on the CPU (OpenVINO); with device={device} use "
                        "backend.precision=fp32")
    _probe.run()
    if _probe.refusal:
        raise LoopError(_probe.refusal)


def create_session(path: Path, device: str = "cpu", threads: int | None = None, precision: str = "fp32"):
    """An InferenceSession for the network at `path` (see the module docstring for what each choice means)."""
    import onnxruntime as ort

    check_precision(precision, device)
    threads = int(threads or os.cpu_count() or 1)
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    # Small weights (random-initialised or lightly trained models) can drive activations into subnormal
    # floats, which x86 cores process many times slower; flushing them to zero changes no detection.
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    if precision == "bf16":
        # OpenVINO runs the whole graph on its own threads; ORT's pool stays at one so it does not spin.
        opts.intra_op_num_threads = 1
        # check_precision above ran the probe and refused when there is no device
        opts.add_provider_for_devices([_probe.device], {"load_config": json.dumps({"CPU": {
            "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1",
            "PERFORMANCE_HINT": "LATENCY", "CPU_DENORMALS_OPTIMIZATION": "YES"}})})
        return ort.InferenceSession(str(path), opts)
    opts.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        # On a GPU, ONNX Runtime on the CPU would be slower than torch on the GPU: refuse, so that
        # backend.runtime=auto serves with torch on CUDA instead.
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise LoopError(f"device={device}, but this onnxruntime has no CUDA execution provider (it has "
                            f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu into .venv "
                            "to run ONNX on the GPU")
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device.split(":")[1]) if ":" in device else 0}))
    session = ort.InferenceSession(str(path), opts, providers=providers)
    if device.startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        raise LoopError(f"ONNX Runtime could not start its CUDA provider on {device} (missing CUDA/cuDNN "
                        "libraries?); see its warnings above")
    return session
