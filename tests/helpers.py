"""Test helpers: the simulated annotator (loop.oracle) on the demo dataset, and what the CPU offers."""

from __future__ import annotations

from pathlib import Path

from loop.oracle import coco_ground_truth, project_from_coco, regions, submit_ground_truth  # noqa: F401


def demo_ground_truth(demo_data: Path, split: str = "pool"):
    return coco_ground_truth(demo_data / f"{split}.json")


def make_demo_project(client, demo_data: Path, n: int, title: str, split: str = "pool"):
    return project_from_coco(client, demo_data / f"{split}.json", demo_data, n, title)


def cpu_has_bf16() -> bool:
    """bfloat16 arithmetic units by the kernel's CPU flags: AVX512-BF16, AMX, or AVX-NE-CONVERT (AVX2 CPUs)."""
    flags = set(Path("/proc/cpuinfo").read_text().split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "avx_ne_convert"})
