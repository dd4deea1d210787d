"""Which precisions a machine may run, refused with the fix before any model is loaded."""

from __future__ import annotations

import sys

import pytest

from backend import ort_session
from backend.models import ServeSettings, model_loader
from loop.errors import LoopError
from tests.helpers import cpu_has_bf16


def test_fp32_is_always_allowed():
    ort_session.check_precision("fp32")
    ort_session.check_precision("fp32", "cuda:0")


@pytest.mark.parametrize("precision", ["fp16", "int8", "BF16", ""])
def test_unknown_precision_names_the_choices(precision):
    with pytest.raises(LoopError, match="use fp32 or bf16"):
        ort_session.check_precision(precision)


def test_bf16_is_for_the_cpu():
    with pytest.raises(LoopError, match="device=cuda:0 use backend.precision=fp32"):
        ort_session.check_precision("bf16", "cuda:0")


def test_bf16_follows_the_cpus_bfloat16_units():
    """OpenVINO's own report of the CPU agrees with the kernel's flags: accepted where the units exist,
    refused with the fix where they do not."""
    if cpu_has_bf16():
        ort_session.check_precision("bf16")
    else:
        with pytest.raises(LoopError, match="bfloat16 units .* use backend.precision=fp32"):
            ort_session.check_precision("bf16")


def test_bf16_without_the_openvino_plugin_says_what_to_install(monkeypatch):
    monkeypatch.setattr(ort_session, "_registered", [])
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_openvino", None)  # import fails as if not installed
    with pytest.raises(LoopError, match="pip install onnxruntime-ep-openvino"):
        ort_session.check_precision("bf16")


def test_bf16_with_the_torch_runtime_is_refused_at_start():
    settings = ServeSettings(checkpoint="unused.pth", runtime="torch", precision="bf16")
    with pytest.raises(LoopError, match="backend.runtime=onnx"):
        model_loader(settings)
