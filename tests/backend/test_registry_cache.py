"""Served-model caches are keyed by content (the version's run id and its weights' digest), never by a
version number: a reset store or another tracking_uri that starts again at v1 never gets old weights."""

from __future__ import annotations

import numpy as np
import pytest

from backend.images import decode
from backend.loading import ServeSettings, model_loader
from backend.reload import DownloadError, load_registered
from loop.clients.registry import Registry
from tests.backend.conftest import publish

pytestmark = pytest.mark.integration


def _store(tmp_path, name):
    folder = tmp_path / name
    (folder / "artifacts").mkdir(parents=True)
    return Registry(f"sqlite:///{folder / 'mlflow.db'}", "shared-name", artifact_location=str(folder / "artifacts"))


def test_a_second_store_starting_again_at_v1_never_gets_the_first_ones_weights(
        demo_model, shifted_checkpoint, demo_data, tmp_path):
    cache = tmp_path / "serve-cache"
    load = model_loader(ServeSettings(checkpoint="", runtime="onnx", cache_dir=str(cache), score_threshold=0.3))
    first, second = _store(tmp_path, "first"), _store(tmp_path, "second")
    v_first = first.get(publish(first, demo_model, tmp_path, "a"))
    v_second = second.get(publish(second, demo_model, tmp_path, "b", checkpoint=shifted_checkpoint))
    assert v_first.version == v_second.version == 1

    image = [decode((demo_data / "images" / "test_0001.jpg").read_bytes()).bgr]
    old = load_registered(first, v_first, cache / "registry", load)
    new = load_registered(second, v_second, cache / "registry", load)
    assert old.version == new.version == "shared-name:v1" and old.run_id != new.run_id
    expected = load(str(shifted_checkpoint)).predict(image)[0]
    got, stale = new.predict(image)[0], old.predict(image)[0]
    assert np.array_equal(got.labels, expected.labels) and np.allclose(got.scores, expected.scores, atol=1e-5)
    assert not (len(got.labels) == len(stale.labels) and np.allclose(got.scores, stale.scores, atol=1e-3))


def test_a_download_that_does_not_match_the_recorded_digest_is_refused(demo_model, tmp_path):
    registry = _store(tmp_path, "store")
    version = registry.get(publish(registry, demo_model, tmp_path, "a"))
    artifact = next((tmp_path / "store" / "artifacts").rglob("model.pth"))
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")  # altered in the store
    load = model_loader(ServeSettings(checkpoint="", runtime="torch", cache_dir=str(tmp_path / "c")))
    with pytest.raises(DownloadError, match="does not match the digest recorded at registration"):
        load_registered(registry, version, tmp_path / "c", load)
    assert list((tmp_path / "c").iterdir()) == []  # nothing stale left behind


def test_the_cache_keeps_the_versions_used_last(demo_model, shifted_checkpoint, tmp_path):
    registry = _store(tmp_path, "store")
    load = model_loader(ServeSettings(checkpoint="", runtime="torch", cache_dir=str(tmp_path / "c")))
    versions = [registry.get(publish(registry, demo_model, tmp_path, f"v{i}", checkpoint=shifted_checkpoint
                                     if i % 2 else None)) for i in range(4)]
    for version in versions:
        load_registered(registry, version, tmp_path / "c", load, keep=2)
    kept = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert kept == sorted(f"{v.run_id}-{v.tags['model_sha256'][:12]}" for v in versions[-2:])
