"""The one task pipeline (fetch -> decode -> predict -> regions), with real images from disk through the real
fetcher and a stand-in model: order is kept, a broken image fails its task, a failing model batch fails
only its tasks."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from backend.batch import predict_tasks
from backend.labels import build_label_map
from backend.predictor import Detections
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
