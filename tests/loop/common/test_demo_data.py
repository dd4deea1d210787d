"""The synthetic demo dataset: deterministic, well-formed COCO, exact boxes."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from loop.common.demo_data import CLASSES, SPLITS, generate, is_complete, render_image


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, splits={"pool": 6, "test": 3}, seed=3)
    generate(b, splits={"pool": 6, "test": 3}, seed=3)
    assert _files(a) == _files(b)
    generate(b, splits={"pool": 6, "test": 3}, seed=4)
    assert _files(a) != _files(b)


def test_coco_files_are_consistent(tmp_path):
    counts = generate(tmp_path, splits={"pool": 20, "test": 5}, seed=1)
    assert is_complete(tmp_path, {"pool": 20, "test": 5})
    for split, n in (("pool", 20), ("test", 5)):
        coco = json.loads((tmp_path / f"{split}.json").read_text())
        assert [c["name"] for c in coco["categories"]] == list(CLASSES)
        assert len(coco["images"]) == n == counts[split]["images"]
        sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
        per_image = {}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and w > 8 and h > 8
            per_image.setdefault(ann["image_id"], []).append(ann["bbox"])
        assert all(1 <= len(boxes) <= 4 for boxes in per_image.values())
        for im in coco["images"]:
            with Image.open(tmp_path / im["file_name"]) as img:
                assert img.size == sizes[im["id"]]


def test_boxes_are_pixel_exact():
    """Each box is tight around its shape: every border row/column of the box touches the shape's colour."""
    rng = np.random.default_rng(11)
    for _ in range(10):
        img, shapes = render_image(rng)
        px = np.asarray(img, dtype=np.int16)
        for s in shapes:
            x0, y0, x1, y1 = s.bbox
            inner = px[y0 + (y1 - y0) // 2, x0 + (x1 - x0) // 2]  # the centre pixel has the shape's colour
            match = np.abs(px - inner).sum(-1) <= 2
            patch = match[y0:y1, x0:x1]
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()


def test_default_splits_are_a_few_hundred_images():
    assert SPLITS["pool"] >= 200 and SPLITS["test"] >= 50
