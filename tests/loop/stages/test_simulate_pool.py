"""stage=simulate's pool and selection step (loop.stages.simulate_pool) with a stand-in model (no training, no
mmdet): the data it generates, the class weights it gives class_balanced_*, the cold-start fallback and the new
strategies' batches."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
import loop.stages.simulate_pool as simulate_pool
from backend.predictor import Detections
from loop.common.demo_data import VARIANTS
from loop.common.errors import LoopError
from loop.common.paths import CONF_DIR
from loop.common.shapes import CLASSES
from loop.stages.simulate_pool import Simulation

SPLITS = {"pool": 12, "test": 2}
MARK = 255  # no pool id: an image whose pixels all hold its id never reads as mirrored


class StandIn:
    """Reads each image's pool id from its first pixel and answers what `table` says about that id (scores,
    labels and optionally boxes). An image marked as mirrored (`mirrorable`: green MARK in its first pixel,
    the id in its last) gets what `mirrored` says instead."""

    classes = list(CLASSES)

    def __init__(self, table: dict[int, tuple], mirrored: dict[int, tuple] | None = None):
        self.table, self.mirrored = table, mirrored or {}

    def predict(self, images, embed=False):
        out = []
        for img in images:
            flipped = img[0, 0, 1] == MARK
            i = int(img[0, -1, 0] if flipped else img[0, 0, 0])
            scores, labels, *boxes = (self.mirrored if flipped else self.table).get(i, ([], []))
            boxes = np.array(boxes[0], float) if boxes else np.zeros((len(scores), 4))
            out.append(Detections(boxes, np.array(scores, float), np.array(labels, int),
                                  np.array([float(i), float(i % 3)]) if embed else None))
        return out


def mirrorable(i: int) -> np.ndarray:
    """A 4x4 image whose id the stand-in reads in either orientation."""
    img = np.full((4, 4, 3), i, np.uint8)
    img[0, -1, 1] = MARK
    return img


@pytest.fixture
def make_sim(tmp_path, monkeypatch):
    root = tmp_path / "imbalanced"
    monkeypatch.setitem(VARIANTS, "imbalanced", replace(VARIANTS["imbalanced"], splits=SPLITS, root=root))

    def make(table=None, *overrides, mirrored=None):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[
                "stage=simulate", "data=imbalanced", f"data.root={root}", f"work_dir={tmp_path}", "stage.initial=4",
                "stage.per_round=2", "stage.rounds=2", "stage.runtime=torch", *overrides])  # the stand-in scores
        sim = Simulation(cfg)
        sim.images = {i: np.full((4, 4, 3), i, np.uint8) for i in sim.ids}  # the stand-in reads the id back
        assert max(sim.ids) < MARK
        monkeypatch.setattr(simulate_pool.Predictor, "load",
                            classmethod(lambda cls, *a, **k: StandIn(table or {}, mirrored)))
        return sim

    return make


def test_data_imbalanced_is_generated_when_missing(make_sim, tmp_path):
    sim = make_sim()
    assert (tmp_path / "imbalanced" / "pool.json").is_file() and len(sim.ids) == SPLITS["pool"]
    assert [c["name"] for c in sim.pool["categories"]] == list(CLASSES)


def class_weights(sim, labeled, scores, labels, classes):
    """The weights `Simulation.choose` hands a class_balanced_* strategy for these candidates."""
    return sim.weights_of(*sim.class_figures(labeled, scores, labels, classes))


def test_class_weights_favour_what_the_labeled_images_lack_and_the_model_doubts(make_sim):
    sim = make_sim()
    labeled = sim.ids[:4]
    counts = np.zeros(len(CLASSES))
    for a in sim.pool["annotations"]:
        if a["image_id"] in labeled:
            counts[a["category_id"] - 1] += 1
    rarity = class_weights(sim, labeled, [], [], list(CLASSES))  # nothing detected: difficulty is flat
    assert rarity.mean() == pytest.approx(1.0)
    assert all((rarity[a] > rarity[b]) == (counts[a] < counts[b]) for a in range(4) for b in range(4) if a != b)
    scores, labels = [[0.9, 0.9], [0.4]], [[0, 1], [2]]  # class 2 seen only at 0.4, class 3 never
    both = class_weights(sim, labeled, scores, labels, list(CLASSES)) / rarity
    assert both[0] == pytest.approx(both[1]) and both[1] < both[2] < both[3]
    queue = make_sim(None, "stage.difficulty_weights=false")  # the production queue's variant: rarity only
    np.testing.assert_allclose(class_weights(queue, labeled, scores, labels, list(CLASSES)), rarity)
    # a model made for other classes (a COCO start checkpoint) has no confidence per class of this pool
    assert class_weights(sim, labeled, scores, labels, ["person", "car", "dog", "cat"]) is None


def test_class_balanced_entropy_picks_the_borderline_rare_class(make_sim):
    labeled = [1, 2, 3, 4]
    # every unlabeled image has one borderline box; two of them are stars (rare), the others circles
    table = {i: ([0.5, 0.95], [CLASSES.index("star") if i in (9, 11) else 0, 0]) for i in range(5, 13)}
    sim = make_sim(table)
    assert sorted(sim.choose("class_balanced_entropy", "ckpt", labeled, np.random.default_rng(0))) == [9, 11]
    assert sim.choose("entropy_sum", "ckpt", labeled, np.random.default_rng(0)) == [5, 6]  # a tie: pool order
    picked = sim.choose("class_balanced_diverse", "ckpt", labeled, np.random.default_rng(0))
    assert len(set(picked)) == 2 and not set(picked) & set(labeled)


def test_a_first_batch_is_picked_from_the_whole_pool_by_the_start_model(make_sim, tmp_path):
    """stage.first_batch=strategy: nothing is labeled yet, and every strategy still picks by the start
    model's predictions (the production queue's order for a new project)."""
    start = tmp_path / "start.pth"  # the stand-in answers for it; Simulation checks that it is a file
    start.write_bytes(b"weights")
    # two borderline circles on 3 and 8, two borderline stars on 10 and 12; every other image: one sure circle
    # (the stand-in reads image 1 as a mirror and finds nothing there: "nothing found" scores one box at 0.5)
    table = {i: ([0.95], [0]) for i in range(1, 13)}
    table.update({i: ([0.5, 0.5], [3 if i > 9 else 0] * 2) for i in (3, 8, 10, 12)})
    sim = make_sim(table, "stage.first_batch=strategy", f"model.checkpoint={start}")
    assert sim.start_weights == str(start)
    pick = {s: sim.choose(s, sim.start_weights, [], np.random.default_rng(0), k=4)
            for s in ("entropy_sum", "class_balanced_entropy", "coreset", "entropy_diverse", "random")}
    assert sorted(pick["entropy_sum"]) == [3, 8, 10, 12]
    # the start model doubts stars most: they come first for the class-balanced score
    assert sorted(sim.choose("class_balanced_entropy", sim.start_weights, [], np.random.default_rng(0), k=2)) == \
        [10, 12]
    assert all(len(set(p)) == 4 and set(p) <= set(sim.ids) for p in pick.values())
    # without a start model there is nothing to score the pool with
    with pytest.raises(LoopError, match="stage.first_batch=strategy .* set model.checkpoint"):
        make_sim(table, "stage.first_batch=strategy")
    with pytest.raises(LoopError, match="stage.first_batch='uncertain'"):
        make_sim(table, "stage.first_batch=uncertain", f"model.checkpoint={start}")


def test_a_cold_model_picks_at_random_unless_the_rule_is_off(make_sim):
    labeled = [1, 2, 3, 4]
    table = {i: ([0.1, 0.2], [0, 1]) for i in range(5, 13)}  # nothing at or above box_threshold 0.3
    table[12] = ([0.5], [0])
    sim = make_sim(table)
    for strategy in ("entropy", "class_balanced_entropy", "entropy_diverse"):
        assert sim.choose(strategy, "ckpt", labeled, np.random.default_rng(3)) == \
            sim.choose("random", "ckpt", labeled, np.random.default_rng(3)), strategy
    off = make_sim(table, "stage.cold_start=null")
    assert off.choose("entropy_sum", "ckpt", labeled, np.random.default_rng(3)) == [5, 6]  # empties tie with 12
    coreset = make_sim(table, "stage.cold_start=coreset")
    picked = coreset.choose("class_balanced_entropy", "ckpt", labeled, np.random.default_rng(3))
    assert len(set(picked)) == 2 and not set(picked) & set(labeled)
    with pytest.raises(LoopError, match="stage.cold_start='bald'"):
        make_sim(table, "stage.cold_start=bald")


def test_entropy_flip_picks_the_images_whose_boxes_move_under_a_flip(make_sim):
    labeled = [1, 2, 3, 4]
    # every unlabeled image: one borderline circle at the left; mirrored, the model finds it at the right
    # (the same place, flipped back), except on 9 and 11, where it draws it on the left of the mirror
    table = {i: ([0.5], [0], [[0, 0, 2, 2]]) for i in range(5, 13)}
    mirrored = {i: ([0.5], [0], [[0, 0, 2, 2]] if i in (9, 11) else [[2, 0, 4, 2]]) for i in range(5, 13)}
    sim = make_sim(table, mirrored=mirrored)
    sim.images = {i: mirrorable(i) for i in sim.ids}
    assert sorted(sim.choose("entropy_flip", "ckpt", labeled, np.random.default_rng(0))) == [9, 11]
    assert sim.choose("entropy_sum", "ckpt", labeled, np.random.default_rng(0)) == [5, 6]  # the scores tie


def test_the_rarest_class_is_followed_round_by_round(make_sim, tmp_path):
    sim = make_sim()
    assert sim.rare == "star"  # the imbalanced variant's rare class
    test = json.loads(sim.test_file.read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in test["annotations"]]
    (tmp_path / "dets.json").write_text(json.dumps(perfect))
    star = next(c["id"] for c in sim.pool["categories"] if c["name"] == "star")
    labeled = sim.ids[:6]
    boxes = sum(a["image_id"] in labeled and a["category_id"] == star for a in sim.pool["annotations"])
    figures = sim.rare_figures(labeled, {"detections": str(tmp_path / "dets.json")})
    assert figures["rare_class"] == "star" and figures["rare_boxes"] == boxes
    stars_in_test = any(a["category_id"] == star for a in test["annotations"])
    assert figures["rare_AP"] == 1.0 if stars_in_test else math.isnan(figures["rare_AP"])


def test_the_oracles_rank_by_the_pool_s_ground_truth(make_sim, monkeypatch):
    sim = make_sim()
    labeled = [1, 2, 3, 4]
    truth = {i: [] for i in sim.ids}
    for a in sim.pool["annotations"]:
        x, y, w, h = a["bbox"]
        truth[a["image_id"]].append(([x, y, x + w, y + h], a["category_id"] - 1))
    unlabeled = [i for i in sim.ids if i not in labeled and truth[i]]
    missed = max(unlabeled, key=lambda i: len(truth[i]))  # the model finds none of its objects
    assert len(truth[missed]) >= 2
    loose, spurious = [i for i in unlabeled if i != missed][:2]
    table = {}
    for i in sim.ids:
        boxes = [list(b) for b, _ in truth[i]]
        labels = [c for _, c in truth[i]]
        if i == loose:  # its first box 20 % too tall: IoU 0.83, three of the ten thresholds missed
            x0, y0, x1, y1 = boxes[0]
            boxes[0] = [x0, y0, x1, y0 + 1.2 * (y1 - y0)]
        if i == spurious:  # a box where nothing is
            boxes.append([0, 0, 1, 1])
            labels.append(0)
        table[i] = ([] if i == missed else [0.9] * len(boxes), [] if i == missed else labels,
                    [] if i == missed else boxes)
    sim = make_sim(table)
    # oracle_error: every missed object costs 1 (>= 2 here), the false positive its score 0.9, the loose box 0.3
    assert sim.choose("oracle_error", "ckpt", labeled, np.random.default_rng(0)) == [missed, spurious]
    # oracle_fit: only how the found objects' boxes fit
    assert sim.choose("oracle_fit", "ckpt", labeled, np.random.default_rng(0))[0] == loose
    monkeypatch.setattr(StandIn, "classes", ["person", "car", "dog", "cat"])
    with pytest.raises(LoopError, match="oracle_error compares the model's classes"):
        sim.choose("oracle_error", "ckpt", labeled, np.random.default_rng(0))


def test_a_simulation_that_keeps_no_images_still_reads_and_keys_them(make_sim):
    sim = make_sim()
    lean = Simulation(sim.cfg, keep_images=False)  # stage.jobs' parent
    assert lean.images == {} and lean.cache.setting == sim.cache.setting  # the same rounds from the cache
    (sim.data_root / (sim.cfg.data.get("img_prefix") or "") / sim.pool["images"][0]["file_name"]).write_bytes(b"no")
    with pytest.raises(LoopError, match="cannot read pool image"):
        Simulation(sim.cfg, keep_images=False)


def test_pseudo_labels_are_the_model_s_sure_boxes_on_its_surest_unlabeled_images(make_sim, tmp_path):
    labeled = [1, 2, 3, 4]
    box = [[1.0, 2.0, 5.0, 8.0], [0.0, 0.0, 3.0, 3.0]]
    table = {i: ([0.9, 0.3], [1, 2], box) for i in range(5, 13)}  # a doubtful second box everywhere...
    table.update({7: ([0.95, 0.02], [3, 0], box), 11: ([0.99], [0], box[:1])})  # ...but on 7 and 11
    assert make_sim(table).pseudo_labels("ckpt", labeled) == []  # stage.pseudo_ratio=0: off
    sim = make_sim(table, "stage.pseudo_ratio=0.5", "stage.pseudo_threshold=0.5")
    found = sim.pseudo_labels("ckpt", labeled)  # 0.5 x 4 labeled: two images, each its box >= 0.5 only
    cat = sorted(c["id"] for c in sim.pool["categories"])
    assert [(a["image_id"], a["category_id"], a["bbox"], a["area"]) for a in found] == \
        [(11, cat[0], [1.0, 2.0, 4.0, 6.0], 24.0), (7, cat[3], [1.0, 2.0, 4.0, 6.0], 24.0)]
    # the round trains on its labeled images with their ground truth and the pseudo-labeled ones with these
    sub = json.loads(simulate_pool.subset_coco(sim.pool, labeled, tmp_path / "train.json", found).read_text())
    assert sorted(im["id"] for im in sub["images"]) == [1, 2, 3, 4, 7, 11]
    truth = [a for a in sim.pool["annotations"] if a["image_id"] in labeled]
    assert sub["annotations"][:len(truth)] == truth
    assert [(a["image_id"], a["bbox"]) for a in sub["annotations"][len(truth):]] == [(11, found[0]["bbox"]),
                                                                                     (7, found[1]["bbox"])]
    ids = [a["id"] for a in sub["annotations"]]
    assert len(set(ids)) == len(ids)
    # the rounds with pseudo-labels are other rounds for the training cache
    assert sim.cache.key(labeled, None, 10, 0, extra=found) != sim.cache.key(labeled, None, 10, 0) == \
        sim.cache.key(labeled, None, 10, 0, extra=None)


def test_pseudo_labels_need_a_model_of_the_pool_s_classes_and_sane_settings(make_sim, monkeypatch):
    with pytest.raises(LoopError, match="stage.pseudo_ratio=-1 .* give a ratio >= 0"):
        make_sim(None, "stage.pseudo_ratio=-1")
    with pytest.raises(LoopError, match="a threshold in \\(0, 1\\]"):
        make_sim(None, "stage.pseudo_ratio=1", "stage.pseudo_threshold=0")
    sim = make_sim(None, "stage.pseudo_ratio=1")
    monkeypatch.setattr(StandIn, "classes", ["person", "car", "dog", "cat"])
    with pytest.raises(LoopError, match="not the pool's .* set stage.pseudo_ratio=0"):
        sim.pseudo_labels("ckpt", [1, 2])
