"""Which precisions a machine may run, refused with the fix before any model is loaded."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from backend import ort_session
from backend.loading import ServeSettings, model_loader
from backend.ort_session import CpuReport, bf16_refusal
from loop.common.errors import LoopError
from loop.common.paths import REPO_ROOT
from tests.helpers import bf16_refusal_here, forced_refusal


def test_fp32_is_always_allowed():
    ort_session.check_precision("fp32")
    ort_session.check_precision("fp32", "cuda:0")


@pytest.mark.parametrize("precision", ["fp16", "INT8", "BF16", ""])
def test_unknown_precision_names_the_choices(precision):
    with pytest.raises(LoopError, match="use auto, fp32, bf16, int8"):
        ort_session.check_precision(precision)


def test_int8_runs_on_any_cpu_and_only_there():
    ort_session.check_precision("int8", "cpu")  # ONNX Runtime's own kernels: no probe, no refusal
    with pytest.raises(LoopError, match="int8 runs on the CPU"):
        ort_session.check_precision("int8", "cuda:0")


def test_bf16_is_for_the_cpu():
    with pytest.raises(LoopError, match="device=cuda:0 use backend.precision=fp32"):
        ort_session.check_precision("bf16", "cuda:0")


@pytest.mark.parametrize("report, expected", [
    # AMD EPYC Zen 4: AVX512-BF16 in the kernel's flags, but OpenVINO's provider lists no device at all
    (CpuReport("AMD", None), "lists no device for this CPU \\(vendor AMD; .* use backend.precision=fp32"),
    # an Intel CPU without bfloat16 units: OpenVINO lists it, without BF16
    (CpuReport("Intel", "WINOGRAD FP32 INT8 BIN EXPORT_IMPORT"),
     "bfloat16 units .* this Intel CPU it offers WINOGRAD FP32 INT8 BIN EXPORT_IMPORT: use backend.precision=fp32"),
    (CpuReport("Intel", ""), "it offers none: use"),
])
def test_bf16_refusal_names_the_reason_and_the_fix(report, expected):
    reason = bf16_refusal(report)
    assert reason is not None and "\n" not in reason
    assert re.search(expected, reason), reason


def test_bf16_is_accepted_where_openvino_offers_bf16():
    assert bf16_refusal(CpuReport("Intel", "WINOGRAD FP32 FP16 INT8 BIN BF16 EXPORT_IMPORT")) is None


def test_bf16_follows_what_openvino_reports_here():
    """The real provider on this machine: check_precision answers exactly what OpenVINO's report gives,
    accepted (no reason) or refused with that one line; the kernel's CPU flags decide nothing. The answer
    itself is the provider's; what the test checks, that the two agree, is the same on every machine (the
    refusal is forced everywhere below, the acceptance by a report that offers BF16 above)."""
    try:
        ort_session.check_precision("bf16")
        answer = None
    except LoopError as refused:
        answer = str(refused)
    assert answer == bf16_refusal_here()


TWO_ATTEMPTS = """
import sys
import onnxruntime as ort
if sys.argv[1] == "hidden":  # as on AMD: the plugin registers, but lists no device
    _all = ort.get_ep_devices
    ort.get_ep_devices = lambda: [d for d in _all() if not d.ep_name.startswith("OpenVINO")]
from backend.ort_session import check_precision
from loop.common.errors import LoopError
for attempt in (1, 2):
    try:
        check_precision("bf16")
        print("accepted")
    except LoopError as exc:
        print("refused:", exc)
"""


@pytest.mark.parametrize("devices", ["hidden", "as-is"])
def test_two_bf16_attempts_in_one_process_give_the_same_answer(devices):
    """Registration happens once per process whatever its outcome: a second attempt after a refusal gets the
    same one line, not ONNX Runtime's 'EP library is already registered'."""
    r = subprocess.run([sys.executable, "-c", TWO_ATTEMPTS, devices], capture_output=True, text=True,
                       cwd=REPO_ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1], r.stdout + r.stderr
    if devices == "hidden":
        assert lines[0].startswith("refused:") and forced_refusal() in lines[0], lines[0]


def test_bf16_without_the_openvino_plugin_says_what_to_install(monkeypatch):
    monkeypatch.setattr(ort_session, "_probe", ort_session._Probe())
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_openvino", None)  # import fails as if not installed
    for _ in range(2):
        with pytest.raises(LoopError, match="pip install onnxruntime-ep-openvino"):
            ort_session.check_precision("bf16")


def test_bf16_with_the_torch_runtime_is_refused_at_start():
    settings = ServeSettings(checkpoint="unused.pth", runtime="torch", precision="bf16")
    with pytest.raises(LoopError, match="backend.runtime=onnx"):
        model_loader(settings)


def test_any_failure_while_listing_devices_is_the_same_one_line_refusal_every_time(monkeypatch):
    def broken():
        raise RuntimeError("EP listing\nfailed")

    monkeypatch.setattr(ort_session, "_probe", ort_session._Probe())
    monkeypatch.setattr(ort_session, "_register_and_list", broken)
    answers = []
    for _ in range(2):
        with pytest.raises(LoopError) as refused:
            ort_session.check_precision("bf16")
        answers.append(str(refused.value))
    assert answers[0] == answers[1] and "\n" not in answers[0]
    assert "RuntimeError: EP listing failed" in answers[0] and answers[0].endswith("use backend.precision=fp32")
