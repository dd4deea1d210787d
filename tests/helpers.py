"""Test helpers on top of the simulated annotator (loop.oracle), for the demo dataset."""

from __future__ import annotations

from pathlib import Path

from loop.oracle import coco_ground_truth, project_from_coco, regions, submit_ground_truth  # noqa: F401


def demo_ground_truth(demo_data: Path, split: str = "pool"):
    return coco_ground_truth(demo_data / f"{split}.json")


def make_demo_project(client, demo_data: Path, n: int, title: str, split: str = "pool"):
    return project_from_coco(client, demo_data / f"{split}.json", demo_data, n, title)
