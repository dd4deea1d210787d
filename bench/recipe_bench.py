"""Benchmark: the demo's training chain outside the demo, to see what a recipe gives on the demo test split.

    .venv/bin/python bench/recipe_bench.py                                  # pool[0:24] -> [0:48] -> [0:72], 60 epochs
    .venv/bin/python bench/recipe_bench.py --first 72,109,55,...           # another first batch (pool ids)
    .venv/bin/python bench/recipe_bench.py --sizes 40,80,120 --epochs 50

Each step trains RTMDet-tiny (train/configs/rtmdet_tiny_demo.py, 160 px, batch 8) on a growing subset of the
demo pool, starting from the previous step's weights as the demo's retrain starts from the champion (the
first from scratch), then scores it on data/demo/test.json. The subsets are the pool's first N images; with
--first, step 1 trains on those pool image ids instead (its size is theirs). Training is
deterministic for one machine, so two first batches can be compared side by side: that is how README
"Quick start: the demo" found that the first model decides where the chain ends.

Prints one line per step: images, iterations, seconds, test mAP and mAP@50.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop.common.demo_data import ensure  # noqa: E402
from loop.common.paths import REPO_ROOT  # noqa: E402
from train.slim import make_slim  # noqa: E402
from train.trainer import TrainSpec, read_classes, train  # noqa: E402

CONFIG = REPO_ROOT / "train" / "configs" / "rtmdet_tiny_demo.py"


def subset(pool: dict, ids: list[int], out: Path) -> Path:
    keep = set(ids)
    out.write_text(json.dumps(dict(pool, images=[i for i in pool["images"] if i["id"] in keep],
                                   annotations=[a for a in pool["annotations"] if a["image_id"] in keep])))
    return out


def step_ids(pool: dict, first: list[int], step: int, size: int) -> list[int]:
    """Step 1: the first batch's ids when given; every other step (and step 1 without them): the pool's first
    `size` images. So two runs that differ in --first train their later steps on the same images."""
    if step == 0 and first:
        return first
    return [im["id"] for im in pool["images"][:size]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="24,48,72", help="training images per step")
    ap.add_argument("--first", default="", help="comma-separated pool image ids of the first batch")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=160)
    ap.add_argument("--out", default="", help="work folder (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = ensure()
    pool = json.loads((root / "pool.json").read_text())
    first = [int(x) for x in args.first.split(",") if x]
    out = Path(args.out or tempfile.mkdtemp(prefix="recipe-bench-"))
    load_from = None
    for k, size in enumerate(int(x) for x in args.sizes.split(",")):
        work = out / f"step{k + 1}"
        work.mkdir(parents=True, exist_ok=True)
        ann = subset(pool, step_ids(pool, first, k, size), work / "train.json")
        spec = TrainSpec(config=CONFIG, data_root=root, train_ann=str(ann), val_ann="test.json", work_dir=work,
                         img_size=args.img_size, epochs=args.epochs, batch_size=args.batch_size,
                         val_interval=args.epochs, load_from=load_from)
        result = train(spec)
        full = Path(result["checkpoint"])
        load_from = str(make_slim(full, work / "model.pth", classes=read_classes(ann),
                                  config_text=next(work.glob("*.py")).read_text(), img_size=args.img_size))
        full.unlink(missing_ok=True)
        print(f"step {k + 1}: {size:4d} images  {result['iterations']:5d} iterations  {result['train_s']:6.1f} s  "
              f"test mAP {result['bbox_mAP']:.3f}  mAP@50 {result['bbox_mAP_50']:.3f}", flush=True)
    print(f"work folder: {out}")


if __name__ == "__main__":
    main()
