"""stage=simulate's pool and recipe: the pool images read once, each round trained (or reused from the training
cache), and the images a strategy picks next, scored by the round's model as the production queue scores
them. loop.stages.simulate runs the rounds with it, seed by seed."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from backend.onnx_runtime import load_onnx
from backend.predictor import Predictor
from loop.al.acquisition import (
    CLASS_WEIGHTED,
    COLD_START,
    EMBEDDING_STRATEGIES,
    HINDSIGHT,
    OBJECT_STRATEGIES,
    STRATEGIES,
    TWO_VIEW,
    cold,
    select,
)
from loop.al.class_weights import class_balance_weights, class_confidence
from loop.al.hindsight import detection_error
from loop.al.pseudo import confident_images, pseudo_boxes
from loop.al.stability import flip_instability
from loop.clients.checkpoints import fetch_checkpoint, file_sha256
from loop.common.errors import LoopError
from loop.common.paths import resolve
from loop.stages.adapters import local, plain, train_spec
from loop.stages.simulate_cache import TrainingCache
from loop.stages.simulate_settings import pseudo_settings, rarity_alpha, synthetic_if_missing
from train.evaluate import coco_eval
from train.package import coco_class_counts, read_class_counts
from train.slim import make_slim
from train.trainer import batches_per_epoch, read_classes, train

log = logging.getLogger(__name__)

# Who picks the `initial` images: one random draw shared by every strategy, or each strategy itself
# (scored by model.checkpoint, the start model; random's stay the shared draw).
FIRST_BATCH = ("random", "strategy")


def subset_coco(coco: dict, image_ids: list[int], out: Path, pseudo: list[dict] | None = None) -> Path:
    """A COCO file with only these images and their annotations (all categories kept, ids unchanged), plus the
    images of `pseudo` (annotations of other pool images, numbered after the pool's own)."""
    keep = set(image_ids)
    extra = {a["image_id"] for a in pseudo or []}
    first_id = max((a["id"] for a in coco["annotations"]), default=0) + 1
    sub = {**coco, "images": [im for im in coco["images"] if im["id"] in keep | extra],
           "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]
           + [{**a, "id": first_id + n} for n, a in enumerate(pseudo or [])]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(sub))
    return out


class Simulation:
    """One benchmark run's data (pool images decoded once) and training recipe."""

    def __init__(self, cfg, keep_images: bool = True):
        """`keep_images=False`: every pool image is still read (a broken one is refused here) and hashed for the
        training cache, but none is kept; for stage.jobs' parent, whose workers score the pool themselves, so
        that it does not hold one more copy of it for the whole run."""
        self.cfg, self.stage = cfg, cfg.stage
        self.threads: int | None = None  # ONNX Runtime's threads when scoring (None: one per core)
        root = self.data_root = synthetic_if_missing(cfg)
        pool_file = root / cfg.data.train_ann
        if not pool_file.is_file() or not (root / cfg.data.test_ann).is_file():
            raise LoopError(f"{pool_file} or its test split {cfg.data.test_ann} is missing; for the demo data run "
                            "`python -m loop.run stage=demo_data`, for your own COCO data set data.root, "
                            "data.train_ann and data.test_ann")
        self.pool = json.loads(pool_file.read_text())
        self.ids = sorted(im["id"] for im in self.pool["images"])
        need = int(self.stage.initial) + int(self.stage.per_round) * int(self.stage.rounds)
        if need > len(self.ids):
            raise LoopError(f"initial + per_round x rounds = {need} images, but the pool has {len(self.ids)}; lower "
                            "stage.rounds or stage.per_round")
        unknown = [x for x in self.stage.strategies if x not in STRATEGIES]
        if unknown:
            raise LoopError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
        self.first_batch = str(self.stage.get("first_batch") or "random")
        if self.first_batch not in FIRST_BATCH:
            raise LoopError(f"stage.first_batch={self.first_batch!r}: use {' or '.join(FIRST_BATCH)}")
        if self.first_batch == "strategy" and not cfg.model.get("checkpoint"):
            raise LoopError("stage.first_batch=strategy scores the pool with the start model, and there is none: "
                            "set model.checkpoint (a model-zoo checkpoint or a model trained on related data), "
                            "or use stage.first_batch=random")
        self.cold_start = self.stage.get("cold_start") or None
        if self.cold_start not in (None, *COLD_START):
            raise LoopError(f"stage.cold_start={self.cold_start!r}: use {' or '.join(COLD_START)}, or null to "
                            "let uncertainty strategies rank even a cold model's scores")
        # what counts as a detection for the sum scores, the class confidences and the cold-start rule
        self.box_threshold = float(self.stage.get("box_threshold", 0.0))
        # class_balanced_*: rarity times difficulty, or rarity only (the queue's); and rarity's exponent
        self.difficulty = bool(self.stage.get("difficulty_weights", True))
        self.rarity_alpha = rarity_alpha(self.stage)
        self.pseudo_ratio, self.pseudo_threshold = pseudo_settings(self.stage)
        # the pool's rarest class: does a strategy find it? (its test AP, its boxes among the labeled images)
        counts = coco_class_counts(self.pool)
        self.classes = [c["name"] for c in sorted(self.pool["categories"], key=lambda c: c["id"])]
        self.cat_ids = sorted(c["id"] for c in self.pool["categories"])  # model class index -> category id
        self.rare = self.classes[int(np.argmin([c if c > 0 else np.inf for c in counts]))] if any(counts) else None
        self.test_file = root / cfg.data.test_ann
        prefix = cfg.data.get("img_prefix", "") or ""
        files = {im["id"]: root / prefix / im["file_name"] for im in self.pool["images"]}
        self.images = {}
        pixels = hashlib.sha256()  # image by image: the pool's pixels are never copied into one buffer
        for i, f in sorted(files.items()):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise LoopError(f"cannot read pool image {f}")
            pixels.update(img.tobytes())
            if keep_images:
                self.images[i] = img
        data = {"pool": file_sha256(pool_file), "test": file_sha256(self.test_file), "images": pixels.hexdigest()}
        self.start_weights = start_weights(cfg)
        cache_dir = self.stage.get("cache_dir")
        self.cache = TrainingCache(resolve(cache_dir) if cache_dir else None,
                                   {"train": plain(cfg.train), "model": plain(cfg.model), "data": data,
                                    # one thread and two give slightly different weights (the order of sums)
                                    "device": str(cfg.device), "threads": torch.get_num_threads(),
                                    "start_weights": self.start_weights and file_sha256(Path(self.start_weights))})

    def train(self, labeled: list[int], work: Path, start: dict | None, iters: int, seed: int,
              pseudo: list[dict] | None = None) -> dict:
        """Train on these images (and `pseudo`'s, annotations of unlabeled images) from `start` (a previous
        round's result; None: from model.checkpoint, or from scratch without one), or reuse the same round
        trained before (loop.stages.simulate_cache)."""
        key = self.cache.key(labeled, start and start["key"], iters, seed, extra=pseudo or None)
        load_from = start["checkpoint"] if start else self.start_weights
        return self.cache.get_or_train(key, lambda: self._train(labeled, work, load_from, iters, seed, pseudo))

    def _train(self, labeled: list[int], work: Path, load_from: str | None, iters: int, seed: int,
               pseudo: list[dict] | None = None) -> dict:
        recipe = self.cfg.train
        images = len(labeled) + len({a["image_id"] for a in pseudo or []})
        per_epoch = batches_per_epoch(images, int(recipe.batch_size),
                                      drop_small_last=bool(recipe.get("drop_small_last", True)))
        epochs = max(1, round(iters / per_epoch))
        ann = subset_coco(self.pool, labeled, work / "train.json", pseudo)
        # the test run evaluates once, at the end
        options = {**(plain(recipe.cfg_options) or {}), "train_cfg.val_begin": epochs + 1}
        spec = train_spec(self.cfg, work / "train", train_ann=str(ann), epochs=epochs, val_interval=epochs,
                          warmup_iters=int(recipe.warmup_iters) if load_from is None else 10, load_from=load_from,
                          seed=seed, cfg_options=options, launcher="none")  # in this process
        result = train(spec)
        # Keep a slim copy (loads without unpickling; the next round starts from it) and drop the full one.
        full = Path(result["checkpoint"])
        config_text = next(Path(result["work_dir"]).glob("*.py")).read_text()
        result["checkpoint"] = str(make_slim(full, work / "model.pth", classes=read_classes(ann),
                                             config_text=config_text, img_size=spec.img_size,
                                             class_counts=read_class_counts(ann)))
        full.unlink(missing_ok=True)
        return result

    def choose(self, strategy: str, checkpoint: str, labeled: list[int], rng: np.random.Generator,
               k: int | None = None, onnx_dir: Path | None = None) -> list[int]:
        """The next `k` images (stage.per_round by default) `strategy` picks from the unlabeled pool, scored by
        `checkpoint`; `labeled` may be empty (a first batch). ONNX exports go to onnx_dir (the checkpoint's
        folder by default)."""
        taken = set(labeled)
        unlabeled = [i for i in self.ids if i not in taken]
        k = int(self.stage.per_round) if k is None else int(k)
        if strategy == "random":
            return [unlabeled[i] for i in select("random", k, rng, scores=[[]] * len(unlabeled))]

        predictor = Predictor.load(checkpoint, device=str(self.cfg.device),
                                   score_threshold=float(self.stage.score_threshold))
        # the pool's embeddings come from the same forward pass; the labeled images' cost one more
        embed = strategy in EMBEDDING_STRATEGIES or self.cold_start == "coreset"
        per_object = strategy in OBJECT_STRATEGIES
        pool = [self.images[i] for i in unlabeled]
        if per_object:  # each box's features come from torch's neck, in the same forward pass
            dets = predictor.predict(pool, embed="objects")
            mirror = predictor.predict
        elif not embed and self.stage.get("runtime", "onnx") == "onnx":
            # the pool scored as the backend scores it, by the exported network in ONNX Runtime (a few times
            # faster on CPU than torch); embeddings come from torch's neck features
            onnx = load_onnx(predictor, onnx_dir or Path(checkpoint).parent,
                             score_threshold=float(self.stage.score_threshold), threads=self.threads)
            dets = onnx.predict(pool)
            mirror = onnx.predict
        else:
            dets = predictor.predict(pool, embed=embed)
            mirror = predictor.predict
        scores, labels = [d.scores for d in dets], [d.labels for d in dets]
        instability = None
        if strategy in TWO_VIEW:  # the pool once more, mirrored
            flipped = mirror([np.ascontiguousarray(img[:, ::-1]) for img in pool])
            instability = [flip_instability(d.boxes, d.scores, d.labels, f.boxes, f.scores, f.labels,
                                            img.shape[1], self.box_threshold)
                           for d, f, img in zip(dets, flipped, pool)]
        is_cold = self.cold_start is not None and strategy != "coreset" and cold(scores, self.box_threshold)
        if is_cold:
            log.info("%s: the model is cold (no box >= %.2f on most of the pool), so %s picks this batch",
                     strategy, self.box_threshold, self.cold_start)
        labeled_emb = None
        if labeled and (strategy in EMBEDDING_STRATEGIES or (is_cold and self.cold_start == "coreset")):
            labeled_emb = np.stack([d.embedding for d in predictor.predict([self.images[i] for i in labeled],
                                                                           embed=True)])
        labeled_objects = None
        if per_object and labeled:  # what is labeled already covers: the objects the model finds on those images
            found = predictor.predict([self.images[i] for i in labeled], embed="objects")
            labeled_objects = np.concatenate([d.features[d.scores >= self.box_threshold] for d in found])
        counts, quality = self.class_figures(labeled, scores, labels, list(predictor.classes)) \
            if strategy in CLASS_WEIGHTED else (None, None)
        weights = self.weights_of(counts, quality)
        errors = self.truth_errors(strategy, unlabeled, dets, list(predictor.classes)) \
            if strategy in HINDSIGHT else None
        picked = select(strategy, k, rng, scores=scores,
                        embeddings=np.stack([d.embedding for d in dets]) if embed else None,
                        labeled_embeddings=labeled_emb, prefilter=int(self.stage.prefilter), labels=labels,
                        class_weights=weights, threshold=self.box_threshold, cold_start=self.cold_start,
                        instability=instability, objects=[d.features for d in dets] if per_object else None,
                        labeled_objects=labeled_objects, class_counts=counts, class_quality=quality,
                        rarity_alpha=self.rarity_alpha, errors=errors)
        return [unlabeled[i] for i in picked]

    def pseudo_labels(self, checkpoint: str, labeled: list[int]) -> list[dict]:
        """stage.pseudo_ratio: COCO annotations, the model's own boxes of at least stage.pseudo_threshold, on the
        unlabeled images it is surest of (loop.al.pseudo), pseudo_ratio per labeled image; [] when off."""
        count = int(round(self.pseudo_ratio * len(labeled)))
        if count == 0:
            return []
        taken = set(labeled)
        unlabeled = [i for i in self.ids if i not in taken]
        predictor = Predictor.load(checkpoint, device=str(self.cfg.device),
                                   score_threshold=float(self.stage.score_threshold))
        if list(predictor.classes) != self.classes:
            raise LoopError(f"stage.pseudo_ratio labels pool images with the model's classes {predictor.classes}, "
                            f"which are not the pool's {self.classes}; set stage.pseudo_ratio=0")
        detect = predictor.predict if self.stage.get("runtime", "onnx") != "onnx" else \
            load_onnx(predictor, Path(checkpoint).parent, score_threshold=float(self.stage.score_threshold),
                      threads=self.threads).predict
        dets = detect([self.images[i] for i in unlabeled])
        found = []
        for n in confident_images([d.scores for d in dets], count, self.pseudo_threshold,
                                  float(self.stage.score_threshold)):
            boxes, labels = pseudo_boxes(dets[n].boxes, dets[n].scores, dets[n].labels, self.pseudo_threshold)
            found += [{"image_id": unlabeled[n], "category_id": self.cat_ids[int(c)], "iscrowd": 0,
                       "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                                round(float(y1 - y0), 2)], "area": round(float((x1 - x0) * (y1 - y0)), 2)}
                      for (x0, y0, x1, y1), c in zip(boxes, labels)]
        return found

    def truth_errors(self, strategy: str, image_ids: list[int], dets: list, classes: list[str]) -> list[float]:
        """oracle_*'s ranking: each image's detection error by the pool's ground truth (boxes at
        stage.box_threshold and up; oracle_fit: how loosely they fit, loop.al.hindsight)."""
        if classes != self.classes:
            raise LoopError(f"{strategy} compares the model's classes {classes} with the pool's {self.classes}, "
                            "and they differ: start from a model trained on this pool's classes (model.checkpoint)")
        truth = {i: ([], []) for i in image_ids}
        for a in self.pool["annotations"]:
            if a["image_id"] in truth:
                x, y, w, h = a["bbox"]
                truth[a["image_id"]][0].append([x, y, x + w, y + h])
                truth[a["image_id"]][1].append(self.cat_ids.index(a["category_id"]))
        return [detection_error(d.boxes, d.scores, d.labels, np.asarray(truth[i][0]).reshape(-1, 4), truth[i][1],
                                self.box_threshold, fit_only=strategy == "oracle_fit")
                for i, d in zip(image_ids, dets)]

    def own_first_batch(self, strategy: str, out: Path, seed: int, rng: np.random.Generator,
                        onnx_dir: Path | None = None) -> tuple[list, dict]:
        """stage.first_batch=strategy: the `initial` images `strategy` picks from the whole pool, scored by the
        start model, and the first model trained on them (as the shared first model is: from the start
        weights, first_iters). Returns (images, result with train_s and select_s)."""
        started = time.perf_counter()
        picked = self.choose(strategy, self.start_weights, [], rng, k=int(self.stage.initial),
                             onnx_dir=onnx_dir or out / "start-onnx")  # not next to the user's checkpoint
        select_s = time.perf_counter() - started
        started = time.perf_counter()
        result = self.train(picked, out / f"seed{seed}" / strategy / "round0", None, int(self.stage.first_iters),
                            seed)
        return picked, {**result, "train_s": time.perf_counter() - started, "select_s": select_s}

    def labeled_counts(self, labeled: list[int]) -> list[int]:
        """Boxes per class among the labeled images, in category-id order (`self.classes`)."""
        keep = set(labeled)
        return coco_class_counts({"categories": self.pool["categories"],
                                  "annotations": [a for a in self.pool["annotations"] if a["image_id"] in keep]})

    def rare_figures(self, labeled: list[int], result: dict) -> dict[str, Any]:
        """The rarest class's test AP for this round's model, and its boxes among the labeled images."""
        if self.rare is None:
            return {}
        boxes = self.labeled_counts(labeled)[self.classes.index(self.rare)]
        ap = coco_eval(self.test_file, Path(result["detections"]))["per_class_AP"].get(self.rare, float("nan"))
        return {"rare_class": self.rare, "rare_AP": round(ap, 4), "rare_boxes": boxes}

    def class_figures(self, labeled: list[int], scores: list, labels: list, classes: list[str]) -> tuple:
        """What class_balanced_* weigh by: (the labeled images' boxes per class, for rarity; with
        stage.difficulty_weights the model's mean confidence per class over the unlabeled pool, for difficulty,
        else None). The production queue has the rarity part only (loop.al.acquisition.queue_score).
        (None, None), every class weighing 1, when the model's classes are not the pool's: a start checkpoint
        made for other classes (a COCO model) has no confidence per class of this project to weigh."""
        if classes != self.classes:
            log.info("the model's classes %s are not the pool's %s: every class weighs 1", classes, self.classes)
            return None, None
        quality = class_confidence(scores, labels, len(classes), self.box_threshold) if self.difficulty else None
        return self.labeled_counts(labeled), quality

    def weights_of(self, counts, quality) -> np.ndarray | None:
        """class_balanced_*'s weights from class_figures: rarity (stage.rarity_alpha) times difficulty."""
        return None if counts is None else \
            class_balance_weights(counts=counts, quality=quality, rarity_alpha=self.rarity_alpha)


def start_weights(cfg) -> str | None:
    """model.checkpoint, the weights every seed's first model fine-tunes from (a model-zoo checkpoint, or a
    model trained on related data): real projects start there, and a model that already finds objects makes
    uncertainty meaningful from the first round. None: first models train from scratch."""
    weights = local(cfg.model.get("checkpoint"))
    if weights and "://" in weights:  # downloaded once (cached), so that the training cache keys its bytes
        weights = str(fetch_checkpoint(weights))
    if weights and not Path(weights).is_file():
        raise LoopError(f"model.checkpoint={weights} is not a file; give a checkpoint on disk (a .pth from "
                        "stage=train or the model zoo), or null to train the first models from scratch")
    return weights
