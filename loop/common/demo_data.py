"""Deterministic synthetic detection dataset (COCO format) for demos, tests and benchmarks.

Why synthetic: the loop must be demonstrable and testable offline, with exact ground truth, and learnable
by a small RTMDet trained from scratch on a CPU in minutes. Each image has a varied background (gradient,
blobs, stripes or texture, plus noise) and 1-4 non-overlapping shapes of four classes in random colours,
sizes and rotations (`loop.common.shapes` draws them), with pixel-exact boxes and COCO polygons.

The `imbalanced` variant is the harder benchmark for active learning: one class (star) about 15x rarer than
the most frequent (circle), more objects per image (2-7, smaller), and unlabeled clutter: ellipses, crosses,
thick lines and hollow outlines of the four shapes, which a detector must learn to leave alone. Random
sampling rarely finds the rare class; a strategy that does should show it.

    python -m loop.common.demo_data --out data/demo          # regenerate the committed copy
    python -m loop.common.demo_data --variant imbalanced     # data/demo-imbalanced
    python -m loop.common.demo_data --variant demo_large     # data/demo-large

The `demo_large` variant is the demo with a pool four times larger (1200 images): its first 300 pool images
and its test split are the demo's, so that a benchmark on it differs from one on the demo only by how much
a strategy has to choose from.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from loop.common.paths import REPO_ROOT
from loop.common.shapes import CLASSES, Shape, render_cluttered, render_image

log = logging.getLogger(__name__)

SPLITS = {"pool": 300, "test": 60}
SEED = 20260101


@dataclass(frozen=True)
class Variant:
    """One synthetic dataset: how an image is drawn, its splits, its default folder, and what its COCO files'
    description adds to the demo's (the demo's own stays as it was, so its files do not change)."""

    render: Callable[[np.random.Generator], tuple[Image.Image, list[Shape]]]
    splits: dict[str, int]
    root: Path
    description: str
    # Pool images drawn after every split and added to the pool: a larger pool whose first images and test
    # split are those of the variant with the same splits and none more (the demo's, for demo_large).
    more_pool: int = 0


def _write_if_changed(path: Path, img: Image.Image, quality: int) -> None:
    """Regenerating a dataset (e.g. one from before instance masks) leaves its identical images untouched, so
    a reader of them at that moment never sees a half-written file."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    if not path.is_file() or path.read_bytes() != buf.getvalue():
        path.write_bytes(buf.getvalue())


def generate(out: Path, splits: dict[str, int] | None = None, seed: int = SEED, quality: int = 80,
             variant: str = "demo") -> dict:
    """Write `<out>/images/*.jpg` and one COCO file per split (`<out>/<split>.json`) of a variant (`VARIANTS`;
    splits default to the variant's, and its `more_pool` images are drawn last, into the pool); returns counts."""
    kind = _variant(variant)
    splits = splits or kind.splits
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    drawn: dict[str, tuple[list, list]] = {split: ([], []) for split in splits}

    def draw(split: str) -> None:
        images, annotations = drawn.setdefault(split, ([], []))
        img, shapes = kind.render(rng)
        i = len(images)
        name = f"{split}_{i:04d}.jpg"
        _write_if_changed(out / "images" / name, img, quality)
        images.append({"id": i + 1, "file_name": f"images/{name}", "width": img.width, "height": img.height})
        for s in shapes:
            x0, y0, x1, y1 = s.bbox
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": CLASSES.index(s.label) + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                "segmentation": [[v for point in s.polygon for v in point]], "iscrowd": 0})

    for split, n in splits.items():
        for _ in range(n):
            draw(split)
    for _ in range(kind.more_pool):  # after the other splits, so that theirs are drawn as without them
        draw("pool")
    counts = {}
    for split, (images, objects) in drawn.items():
        coco = {"info": {"description": f"labelloop synthetic shapes{kind.description}, split {split}, seed {seed}"},
                "images": images, "annotations": objects, "categories": categories}
        tmp = out / f"{split}.json.tmp"
        tmp.write_text(json.dumps(coco, indent=1))
        tmp.replace(out / f"{split}.json")  # atomically: a reader sees the old file or the new one
        counts[split] = {"images": len(images), "boxes": len(objects)}
        log.info("%s: %d images, %d boxes", split, len(images), len(objects))
    return counts


def is_complete(out: Path, splits: dict[str, int] | None = None) -> bool:
    """True when every split's COCO file and all of its images are there, with instance masks (a dataset from
    before they were added is regenerated: same images, segmentation added)."""
    for split in splits or SPLITS:
        ann = out / f"{split}.json"
        if not ann.is_file():
            return False
        coco = json.loads(ann.read_text())
        if not all((out / im["file_name"]).is_file() for im in coco["images"]):
            return False
        if not all(a.get("segmentation") for a in coco["annotations"]):
            return False
    return True


DEFAULT_ROOT = REPO_ROOT / "data" / "demo"

# The datasets this module makes, by name (conf/data/<name>.yaml names them the same way).
VARIANTS = {
    "demo": Variant(render_image, SPLITS, DEFAULT_ROOT, ""),
    "imbalanced": Variant(render_cluttered, {"pool": 400, "test": 100}, REPO_ROOT / "data" / "demo-imbalanced",
                          ", imbalanced classes with unlabeled clutter"),
    # the demo's pool and test split and 900 more pool images: does a strategy gain from more to choose from?
    "demo_large": Variant(render_image, SPLITS, REPO_ROOT / "data" / "demo-large", ", a larger pool",
                          more_pool=900),
}


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"no synthetic dataset variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def ensure(out: Path = DEFAULT_ROOT, variant: str = "demo") -> Path:
    """The variant's dataset at `out`, generated first if it is missing or incomplete."""
    splits = _variant(variant).splits
    if not is_complete(out, splits):
        generate(out, splits, variant=variant)
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
    parser.add_argument("--variant", choices=list(VARIANTS), default="demo",
                        help="demo (balanced), imbalanced (a rare class, more objects, unlabeled clutter), or "
                             "demo_large (the demo with a pool of 1200 images)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write it (default: data/demo, data/demo-<variant> for the others)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the dataset is complete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kind = VARIANTS[args.variant]
    out = args.out or kind.root
    if args.if_missing and is_complete(out, kind.splits):
        log.info("%s data is complete in %s", args.variant, out)
        return
    print(json.dumps(generate(out, seed=args.seed, variant=args.variant)))


if __name__ == "__main__":
    main()
