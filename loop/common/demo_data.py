"""Deterministic synthetic detection dataset (COCO format) for demos, tests and benchmarks.

Why synthetic: the loop must be demonstrable and testable offline, with exact ground truth, and learnable
by a small RTMDet trained from scratch on a CPU in minutes. Each image has a varied background (gradient,
blobs, stripes or texture, plus noise) and 1-4 non-overlapping shapes of four classes in random colours,
sizes and rotations. Boxes are read back from each shape's own rendered mask, so they are pixel-exact.

    python -m loop.common.demo_data --out data/demo          # regenerate the committed copy
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from loop.common.paths import REPO_ROOT

log = logging.getLogger(__name__)

CLASSES = ("circle", "square", "triangle", "star")
SPLITS = {"pool": 300, "test": 60}
SEED = 20260101


@dataclass(frozen=True)
class Shape:
    label: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), pixel-exact


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    kind = rng.integers(4)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = (xx * math.cos(a) + yy * math.sin(a))
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
        img = c0 + t[..., None] * (c1 - c0)
    elif kind == 1:  # smooth colour blobs
        grid = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float64)
    elif kind == 2:  # stripes
        period = rng.uniform(8, 40)
        a = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = 0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
        img = c0 + t[..., None] * (c1 - c0) * 0.5
    else:  # coarse texture
        small = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST), dtype=np.float64)
        img = 0.5 * img + 0.5 * c0
    img = img + rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(label: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if label == "square":
        pts = [(math.cos(rot + k * math.pi / 2 + math.pi / 4), math.sin(rot + k * math.pi / 2 + math.pi / 4))
               for k in range(4)]
    elif label == "triangle":
        pts = [(math.cos(rot + k * 2 * math.pi / 3), math.sin(rot + k * 2 * math.pi / 3)) for k in range(3)]
    elif label == "star":
        pts = [((1.0 if k % 2 == 0 else 0.45) * math.cos(rot + k * math.pi / 5),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(rot + k * math.pi / 5)) for k in range(10)]
    else:
        raise ValueError(label)
    return [(cx + r * x, cy + r * y) for x, y in pts]


def _overlaps(box, boxes, margin=4) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin
               for b in boxes)


def render_image(rng: np.random.Generator) -> tuple[Image.Image, list[Shape]]:
    """One image and its exact boxes."""
    w, h = int(rng.integers(224, 321)), int(rng.integers(192, 289))
    img = Image.fromarray(_background(rng, w, h))
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            label = CLASSES[int(rng.integers(len(CLASSES)))]
            r = float(rng.uniform(16, 44))
            cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            mask = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(mask)
            if label == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            else:
                rot = float(rng.uniform(-0.35, 0.35)) if label == "square" else float(rng.uniform(0, 2 * math.pi))
                draw.polygon(_polygon(label, cx, cy, r, rot), fill=255)
            box = mask.getbbox()
            if box is None or _overlaps(box, [s.bbox for s in shapes]):
                continue
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            img.paste(Image.new("RGB", (w, h), colour), (0, 0), mask)
            shapes.append(Shape(label, box))
            break
    return img, shapes


def generate(out: Path, splits: dict[str, int] | None = None, seed: int = SEED, quality: int = 80) -> dict:
    """Write `<out>/images/*.jpg` and one COCO file per split (`<out>/<split>.json`); returns counts."""
    splits = splits or SPLITS
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    counts = {}
    for split, n in splits.items():
        images, annotations = [], []
        for i in range(n):
            img, shapes = render_image(rng)
            name = f"{split}_{i:04d}.jpg"
            img.save(out / "images" / name, quality=quality)
            images.append({"id": i + 1, "file_name": f"images/{name}", "width": img.width, "height": img.height})
            for s in shapes:
                x0, y0, x1, y1 = s.bbox
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                    "category_id": CLASSES.index(s.label) + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                    "iscrowd": 0})
        coco = {"info": {"description": f"labelloop synthetic shapes, split {split}, seed {seed}"},
                "images": images, "annotations": annotations, "categories": categories}
        (out / f"{split}.json").write_text(json.dumps(coco, indent=1))
        counts[split] = {"images": len(images), "boxes": len(annotations)}
        log.info("%s: %d images, %d boxes", split, len(images), len(annotations))
    return counts


def is_complete(out: Path, splits: dict[str, int] | None = None) -> bool:
    """True when every split's COCO file and all of its images are there."""
    for split in splits or SPLITS:
        ann = out / f"{split}.json"
        if not ann.is_file():
            return False
        if not all((out / im["file_name"]).is_file() for im in json.loads(ann.read_text())["images"]):
            return False
    return True


DEFAULT_ROOT = REPO_ROOT / "data" / "demo"


def ensure(out: Path = DEFAULT_ROOT) -> Path:
    """The demo dataset at `out`, generated first if it is missing or incomplete."""
    if not is_complete(out):
        generate(out)
    return out


def heldout_export(demo: Path, out: Path, images: int, split: str = "test") -> dict:
    """An export folder as retrain's export writes one (`val.json` + `images/`), holding the first `images`
    of a demo split as the held-out set: for checks that run on a version's held-out images. Returns its
    COCO dict."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():
        (out / "images").symlink_to(Path(demo) / "images")
    coco = json.loads((Path(demo) / f"{split}.json").read_text())
    coco["images"] = coco["images"][:images]
    keep = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    (out / "val.json").write_text(json.dumps(coco))
    return coco


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the dataset is complete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.if_missing and is_complete(args.out):
        log.info("demo data is complete in %s", args.out)
        return
    print(json.dumps(generate(args.out, seed=args.seed)))


if __name__ == "__main__":
    main()
