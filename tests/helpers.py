"""Test helpers: the simulated annotator (loop.al.oracle) on the demo dataset, and what the CPU offers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
from backend import ort_session
from loop.al.oracle import coco_ground_truth, regions  # noqa: F401
from loop.clients.annotator import project_from_coco, submit_ground_truth  # noqa: F401
from loop.common.paths import CONF_DIR


def demo_ground_truth(demo_data: Path, split: str = "pool"):
    return coco_ground_truth(demo_data / f"{split}.json")


def make_demo_project(client, demo_data: Path, n: int, title: str, split: str = "pool", label_config=None):
    return project_from_coco(client, demo_data / f"{split}.json", demo_data, n, title, label_config)


def bf16_refusal_here() -> str | None:
    """Why bf16 is refused on this machine, by OpenVINO's own report of the CPU (not the kernel's flags:
    AMD Zen 4 has AVX512-BF16, yet OpenVINO lists no device for it); None where it serves."""
    return ort_session.bf16_refusal_here()


def forced_refusal() -> str:
    """What a bf16 request must answer with OpenVINO's devices hidden (WITHOUT_OPENVINO_DEVICES): no device
    for this CPU, or, where the plugin is not installed at all (not x86-64), how to install it."""
    return "lists no device" if importlib.util.find_spec("onnxruntime_ep_openvino") else "pip install"


# Runs `python -m loop.run ...` with OpenVINO's devices hidden from ONNX Runtime, as on an AMD CPU, where the
# plugin registers but lists no device: the refusal path, forced on every machine.
WITHOUT_OPENVINO_DEVICES = (
    "import sys, onnxruntime as ort; _all = ort.get_ep_devices; "
    "ort.get_ep_devices = lambda: [d for d in _all() if not d.ep_name.startswith('OpenVINO')]; "
    "from loop.run import main; main()")


def key_file(folder: Path, token: str) -> Path:
    """The token in a file, for labelstudio.api_key_file: configs name where the secret is, never the secret."""
    path = folder / f"ls-token-{abs(hash(token)):x}"
    path.write_text(token)
    path.chmod(0o600)
    return path


def command_lines() -> list[bytes]:
    """Every process's command line, as `ps` shows them to any user of the machine."""
    lines = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(path.read_bytes())
        except OSError:  # the process ended meanwhile
            pass
    return lines


def simulate_cfg(data_root: Path, tmp_path: Path, mlflow_store: dict, *extra: str):
    """stage=simulate's composed config on this data, writing under tmp_path, recording to this MLflow store."""
    overrides = ["stage=simulate", f"data.root={data_root}", f"work_dir={tmp_path}",
                 f"registry.tracking_uri={mlflow_store['tracking_uri']}",
                 f"registry.artifact_location={mlflow_store['artifact_location']}", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)
