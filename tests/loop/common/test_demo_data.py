"""The synthetic demo dataset: deterministic, well-formed COCO, exact boxes, instance masks within a pixel."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from loop.common.demo_data import (
    SEED,
    SPLITS,
    VARIANTS,
    ensure,
    generate,
    is_complete,
    main,
)
from loop.common.shapes import CLASSES, DISTRACTORS, render_cluttered, render_image


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


def _raster(segmentation, width, height) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))) > 0


def test_every_object_has_a_polygon_that_covers_its_drawn_shape():
    """The polygon, rasterised as COCO readers (mmdet, pycocotools) do, is the drawn shape: IoU >= 0.95 with the
    pixels painted in its colour, the same box to the pixel."""
    rng = np.random.default_rng(11)
    ious = {}
    for _ in range(40):
        img, shapes = render_image(rng)
        px = np.asarray(img, dtype=np.int16)
        for s in shapes:
            x0, y0, x1, y1 = s.bbox
            colour = px[y0 + (y1 - y0) // 2, x0 + (x1 - x0) // 2]  # pasted as is: exact inside the shape
            drawn = np.zeros(px.shape[:2], bool)  # boxes keep 4 px apart: only this shape is in its box
            drawn[y0:y1, x0:x1] = (px[y0:y1, x0:x1] == colour).all(-1)
            got = _raster([[v for p in s.polygon for v in p]], img.width, img.height)
            ious.setdefault(s.label, []).append((got & drawn).sum() / (got | drawn).sum())
            ys, xs = np.nonzero(got)
            assert max(abs(xs.min() - x0), abs(ys.min() - y0), abs(xs.max() + 1 - x1), abs(ys.max() + 1 - y1)) <= 1
    assert set(ious) == set(CLASSES)
    assert min(min(v) for v in ious.values()) >= 0.95, {k: min(v) for k, v in ious.items()}


def test_coco_segmentation_agrees_with_the_boxes_and_an_old_dataset_is_regenerated(tmp_path):
    generate(tmp_path, splits={"pool": 12, "test": 2}, seed=5)
    coco = json.loads((tmp_path / "pool.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    for ann in coco["annotations"]:
        (polygon,) = ann["segmentation"]  # COCO polygon format: one flat [x0, y0, x1, y1, ...] list
        assert len(polygon) % 2 == 0 and len(polygon) >= 6
        width, height = sizes[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], height, width))
        assert max(abs(a - b) for a, b in zip(mask_utils.toBbox(rle), ann["bbox"])) <= 1
    circles = [a for a in coco["annotations"] if a["category_id"] == CLASSES.index("circle") + 1]
    assert circles and all(len(a["segmentation"][0]) == 2 * 64 for a in circles)

    images = {p.name: p.read_bytes() for p in (tmp_path / "images").iterdir()}
    for ann in coco["annotations"]:  # as written before instance masks
        del ann["segmentation"]
    (tmp_path / "pool.json").write_text(json.dumps(coco))
    assert not is_complete(tmp_path, {"pool": 12, "test": 2})
    generate(tmp_path, splits={"pool": 12, "test": 2}, seed=5)
    assert is_complete(tmp_path, {"pool": 12, "test": 2})
    assert {p.name: p.read_bytes() for p in (tmp_path / "images").iterdir()} == images


def test_default_splits_are_a_few_hundred_images():
    assert SPLITS["pool"] >= 200 and SPLITS["test"] >= 50


# The imbalanced variant: a rare class, more objects, unlabeled clutter.

def test_the_imbalanced_pool_has_a_class_at_least_ten_times_rarer():
    """The pool split's shapes as generate() draws them (its generator serves only render calls)."""
    rng = np.random.default_rng(SEED)
    counts = Counter(s.label for _ in range(VARIANTS["imbalanced"].splits["pool"]) for s in render_cluttered(rng)[1])
    assert set(counts) == set(CLASSES)
    assert counts.most_common()[0][1] >= 10 * counts["star"] > 0, counts
    assert sum(counts.values()) / VARIANTS["imbalanced"].splits["pool"] > 3  # more objects than the demo's 2.5


def test_distractors_are_drawn_but_never_annotated():
    rng = np.random.default_rng(5)
    kinds = set()
    for _ in range(30):
        clutter: list = []
        img, shapes = render_cluttered(rng, clutter)
        assert clutter and 1 <= len(shapes) <= 7
        kinds |= {kind for kind, _ in clutter}
        for _, (x0, y0, x1, y1) in clutter:  # clear of every labeled box: those hold only their own shape
            assert not any(x0 < s.bbox[2] and s.bbox[0] < x1 and y0 < s.bbox[3] and s.bbox[1] < y1 for s in shapes)
            assert np.asarray(img.crop((x0, y0, x1, y1))).size  # drawn on the image
    assert kinds == set(DISTRACTORS)


def test_imbalanced_boxes_are_pixel_exact_and_polygons_cover_the_shapes():
    rng = np.random.default_rng(11)
    for _ in range(15):
        img, shapes = render_cluttered(rng)
        px = np.asarray(img, dtype=np.int16)
        for s in shapes:
            x0, y0, x1, y1 = s.bbox
            colour = px[y0 + (y1 - y0) // 2, x0 + (x1 - x0) // 2]
            drawn = np.zeros(px.shape[:2], bool)
            drawn[y0:y1, x0:x1] = (px[y0:y1, x0:x1] == colour).all(-1)
            patch = drawn[y0:y1, x0:x1]
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
            got = _raster([[v for p in s.polygon for v in p]], img.width, img.height)
            # smaller shapes than the demo's (radius from 12 px): the polygon's pixel rim weighs more
            assert (got & drawn).sum() / (got | drawn).sum() >= 0.9, s.label


def test_the_imbalanced_variant_is_deterministic_and_its_own(tmp_path):
    splits = {"pool": 4, "test": 2}
    a, b, demo = tmp_path / "a", tmp_path / "b", tmp_path / "demo"
    generate(a, splits=splits, seed=3, variant="imbalanced")
    generate(b, splits=splits, seed=3, variant="imbalanced")
    generate(demo, splits=splits, seed=3)
    assert _files(a) == _files(b)
    assert _files(a) != _files(demo)
    coco = json.loads((a / "pool.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASSES)
    assert "imbalanced" in coco["info"]["description"]
    assert generate(demo, splits=splits, seed=3, variant="demo") == generate(demo, splits=splits, seed=3)
    with pytest.raises(ValueError, match="choose one of demo, imbalanced"):
        generate(tmp_path / "c", splits=splits, variant="bald")


def test_the_large_demo_is_the_demo_with_more_pool_images(tmp_path, monkeypatch):
    """demo_large's first pool images and its test split are the demo's, to the byte: a benchmark on it
    differs from one on the demo only by the pool's size."""
    splits = {"pool": 4, "test": 2}
    monkeypatch.setitem(VARIANTS, "demo_large", replace(VARIANTS["demo_large"], splits=splits, more_pool=3))
    large, demo = tmp_path / "large", tmp_path / "demo"
    counts = generate(large, variant="demo_large")
    generate(demo, splits=splits)
    assert counts["pool"]["images"] == 7 and counts["test"]["images"] == 2
    pool, demo_pool = (json.loads((root / "pool.json").read_text()) for root in (large, demo))
    assert pool["images"][:4] == demo_pool["images"]
    assert [a for a in pool["annotations"] if a["image_id"] <= 4] == demo_pool["annotations"]
    assert [im["id"] for im in pool["images"]] == list(range(1, 8))
    assert len({a["id"] for a in pool["annotations"]}) == len(pool["annotations"])
    assert all((large / im["file_name"]).is_file() for im in pool["images"])
    assert json.loads((large / "test.json").read_text())["images"] == \
        json.loads((demo / "test.json").read_text())["images"]
    assert json.loads((large / "test.json").read_text())["annotations"] == \
        json.loads((demo / "test.json").read_text())["annotations"]
    demo_images = {p.name: p.read_bytes() for p in (demo / "images").iterdir()}
    assert {n: (large / "images" / n).read_bytes() for n in demo_images} == demo_images
    assert is_complete(large, splits)


def test_the_command_line_writes_a_variant_once_with_if_missing(tmp_path, monkeypatch):
    root = tmp_path / "demo-imbalanced"
    monkeypatch.setitem(VARIANTS, "imbalanced", replace(VARIANTS["imbalanced"], splits={"pool": 3, "test": 2},
                                                        root=root))
    main(["--variant", "imbalanced"])
    assert is_complete(root, {"pool": 3, "test": 2})
    stamp = (root / "pool.json").stat().st_mtime_ns
    main(["--variant", "imbalanced", "--if-missing"])
    assert (root / "pool.json").stat().st_mtime_ns == stamp
    assert ensure(root, "imbalanced") == root and (root / "pool.json").stat().st_mtime_ns == stamp
    (root / "test.json").unlink()
    ensure(root, "imbalanced")
    assert is_complete(root, {"pool": 3, "test": 2})
