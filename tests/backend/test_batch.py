"""The one task pipeline (fetch -> decode -> predict -> regions), with real images from disk through the real
fetcher and a stand-in model: order is kept, a broken image fails its task, a failing model batch fails
only its tasks."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
from PIL import Image

from backend.batch import object_features, predict_tasks
from backend.labels import build_label_map
from backend.predictor import Detections
from loop.al.acquisition import queue_score
from loop.clients.media import MediaConfig, MediaFetcher
from loop.common.label_configs import rectangle_labels_config


class BoxModel:
    """One 'circle' box over the middle half of every image; a batch holding a 7-pixel-high image fails."""

    version, batch_size, classes = "stand-in:v1", 2, ["circle"]

    def predict(self, images, classes=None):
        if any(img.shape[0] == 7 for img in images):
            raise RuntimeError("model failed")
        return [Detections(np.array([[img.shape[1] / 4, img.shape[0] / 4, img.shape[1] * 3 / 4, img.shape[0] * 3 / 4]]),
                           np.array([0.9]), np.array([0])) for img in images]


def test_outcomes_follow_the_tasks(tmp_path):
    up = tmp_path / "1"
    up.mkdir()
    for name, size in (("a.png", (40, 20)), ("b.png", (30, 30)), ("tiny.png", (9, 7)), ("c.png", (20, 40))):
        buf = io.BytesIO()
        Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
        (up / name).write_bytes(buf.getvalue())
    (up / "broken.png").write_bytes(b"not an image")
    names = ["a.png", "broken.png", "b.png", "tiny.png", "c.png"]  # batches: [a, broken], [b, tiny], [c]
    tasks = [{"id": i, "data": {"image": f"/data/upload/1/{n}"}} for i, n in enumerate(names)]
    label_map = build_label_map(rectangle_labels_config(["circle"]), ["circle"])
    fetcher = MediaFetcher(MediaConfig(image_dir=tmp_path))
    with ThreadPoolExecutor(2) as pool:
        outcomes = predict_tasks(tasks, label_map, BoxModel(), fetcher, pool, score_threshold=0.5)
    assert [o.ok for o in outcomes] == [True, False, False, False, True]
    assert outcomes[1].error.startswith("the image cannot be decoded")
    assert outcomes[2].error == outcomes[3].error == "the model failed on this batch"
    assert [o.model_failed for o in outcomes] == [False, False, True, True, False]
    for i in (0, 4):
        (region,) = outcomes[i].prediction["result"]
        assert region["value"]["x"] == 25 and region["value"]["width"] == 50
        assert outcomes[i].prediction["model_version"] == "stand-in:v1" and outcomes[i].scores.tolist() == [0.9]
    assert all(o.prediction["result"] == [] for o in outcomes[1:4])


class TwoClassModel:
    """A borderline 'star' (class 1) and a sure 'circle' (class 0) in every image, and a box under the threshold;
    its checkpoint recorded many circles and few stars."""

    version, batch_size, classes, class_counts = "stand-in:v2", 4, ["circle", "star"], [300, 10]

    def predict(self, images, classes=None):
        return [Detections(np.array([[1, 1, 8, 8], [10, 10, 18, 18], [2, 2, 5, 5]], float), np.array([0.95, 0.5, 0.1]),
                           np.array([0, 1, 1])) for _ in images]


def test_the_task_score_sees_labels_and_the_checkpoints_class_counts(tmp_path):
    (tmp_path / "1").mkdir()
    Image.new("RGB", (20, 20), (10, 200, 10)).save(tmp_path / "1" / "a.png")
    tasks = [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}]
    label_map = build_label_map(rectangle_labels_config(["circle", "star"]), ["circle", "star"])
    seen = []
    fetcher = MediaFetcher(MediaConfig(image_dir=tmp_path))
    with ThreadPoolExecutor(2) as pool:
        predict_tasks(tasks, label_map, TwoClassModel(), fetcher, pool, 0.3,
                      lambda *args: seen.append(args) or 0.0)
        (outcome,) = predict_tasks(tasks, label_map, TwoClassModel(), fetcher, pool, 0.3,
                                   partial(queue_score, "class_balanced_entropy"))
    (scores, labels, counts), = seen
    assert scores.tolist() == [0.95, 0.5] and labels.tolist() == [0, 1] and counts == [300, 10]
    expected = queue_score("class_balanced_entropy", [0.95, 0.5], [0, 1], [300, 10])
    assert outcome.prediction["score"] == round(expected, 6)
    assert outcome.prediction["score"] > round(queue_score("entropy_sum", [0.95, 0.5]), 6)  # the rare star weighs more


class FeatureModel:
    """Three boxes per image, one under the threshold, each with a 4-d feature row; embed must be "objects"."""

    version, batch_size, classes = "stand-in:v3", 2, ["circle"]

    def __init__(self):
        self.fetched, self.pool = [], None

    def predict(self, images, embed=False, classes=None):
        assert embed == "objects"
        self.fetched.append(self.pool.submitted)
        return [Detections(np.zeros((3, 4)), np.array([0.9, 0.1, 0.5]), np.zeros(3, int),
                           features=np.arange(12, dtype=float).reshape(3, 4) + img.shape[1]) for img in images]


class CountingPool(ThreadPoolExecutor):
    """Counts the images asked for so far."""

    submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


@pytest.mark.parametrize("ahead", [0, 1, 16])
def test_object_features_are_the_boxes_at_the_threshold_and_none_for_a_broken_image(tmp_path, ahead):
    (tmp_path / "1").mkdir()
    for name, width in (("a.png", 20), ("b.png", 30), ("c.png", 40)):
        Image.new("RGB", (width, 10), (10, 10, 200)).save(tmp_path / "1" / name)
    (tmp_path / "1" / "broken.png").write_bytes(b"not an image")
    names = ["a.png", "broken.png", "b.png", "c.png"]
    tasks = [{"id": i, "data": {"image": f"/data/upload/1/{n}"}} for i, n in enumerate(names)]
    label_map = build_label_map(rectangle_labels_config(["circle"]), ["circle"])
    model = FeatureModel()
    with CountingPool(2) as pool:
        model.pool = pool
        found = object_features(tasks, label_map, model, MediaFetcher(MediaConfig(image_dir=tmp_path)), pool,
                                score_threshold=0.5, ahead=ahead)
    # images are fetched a window ahead of the model, not all at once: at each batch, at most the tasks up to
    # the end of that batch (2 per batch) plus `ahead`
    assert model.fetched == [min(4, 2 * (b + 1) + ahead) for b in range(len(model.fetched))]
    assert found[1] is None
    for i, width in ((0, 20), (2, 30), (3, 40)):  # rows 0 and 2: the boxes at 0.9 and 0.5, in task order
        assert found[i].tolist() == (np.arange(12, dtype=float).reshape(3, 4)[[0, 2]] + width).tolist()
