"""stage=preannotate with preannotate.queue_strategy=object_diverse, against real Label Studio, MLflow and mmdet:
the shortlist goes first in object-coverage order, the rest by entropy_sum (class_balanced_object_diverse: by the
rarity-weighted sum; object_representative: in representation order); a failure while ordering stores every
prediction before it is reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401
import loop.stages.preannotate as preannotate_stage
import loop.stages.preannotate_order as preannotate_order
from backend.images import decode
from backend.predictor import Predictor
from loop.al.acquisition import queue_score
from loop.al.diversity import object_representation
from loop.al.tasks import latest_prediction
from loop.clients import labelstudio
from loop.clients.registry import Registry
from loop.common.errors import LoopError
from loop.common.paths import CONF_DIR
from loop.stages.preannotate import preannotate
from tests.backend.conftest import publish
from tests.helpers import key_file, make_demo_project, submit_ground_truth

pytestmark = pytest.mark.integration


def setup_project(ls_client, ls_server, ls_token, demo_data, demo_model, mlflow_store, tmp_path, n, n_labeled,
                  checkpoint=None):
    """A demo project with its first `n_labeled` tasks labeled and the demo model as champion; returns the
    ground truth's files by task id, the unlabeled ids, and a config builder for its stages."""
    name = tmp_path.name.replace("_", "-")[:40]
    project, gt, file_of = make_demo_project(ls_client, demo_data, n, name)
    ids = sorted(file_of)
    submit_ground_truth(ls_client, gt, file_of, ids[:n_labeled])
    registry = Registry(mlflow_store["tracking_uri"], name, artifact_location=mlflow_store["artifact_location"])
    registry.promote(publish(registry, demo_model, tmp_path, "v1", checkpoint=checkpoint))

    def cfg(*extra):
        overrides = ["stage=preannotate", f"labelstudio.url={ls_server.url}",
                     f"labelstudio.api_key_file={key_file(tmp_path, ls_token)}",
                     f"labelstudio.project_id={project.id}", f"work_dir={tmp_path}",
                     f"registry.tracking_uri={mlflow_store['tracking_uri']}", f"registry.model_name={name}",
                     f"registry.artifact_location={mlflow_store['artifact_location']}",
                     "preannotate.queue_strategy=object_diverse", *extra]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)

    return project, file_of, ids[:n_labeled], ids[n_labeled:], cfg


def shown(ls_client, project_id, unlabeled):
    """Per unlabeled task with a prediction: its newest prediction's score, the entropy_sum of the regions it
    shows, its model version."""
    out = {}
    for t in labelstudio.list_tasks(ls_client, project_id):
        p = latest_prediction(t)
        if t["id"] in unlabeled and p is not None:
            out[t["id"]] = (p["score"], queue_score("entropy_sum", [r["score"] for r in p["result"]]),
                            p["model_version"])
    return out


def object_reader(demo_model, demo_data, file_of, threshold):
    """A task's objects as the queue sees them: the torch network's features of its boxes at the threshold,
    computed here again, one unit row per box."""
    predictor = Predictor.load(str(demo_model["checkpoint"]))

    def objects(tid):
        (det,) = predictor.predict([decode((demo_data / "images" / file_of[tid]).read_bytes()).bgr], embed="objects")
        f = det.features[det.scores >= threshold]
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    return objects


def test_object_diverse_puts_the_shortlist_first_in_coverage_order(ls_server, ls_token, ls_client, demo_data,
                                                                    demo_model, mlflow_store, tmp_path):
    project, file_of, labeled, unlabeled, cfg = setup_project(ls_client, ls_server, ls_token, demo_data, demo_model,
                                                              mlflow_store, tmp_path, 20, 8)
    report = preannotate(cfg("preannotate.queue_batch=2", "preannotate.queue_prefilter=2",
                             "preannotate.batch_size=4", "preannotate.store_batch=3"))
    assert report["predicted"] == 12 and report["shortlist"] == 4 and report["covered_tasks"] == 8
    tasks = shown(ls_client, project.id, set(unlabeled))
    assert len(tasks) == 12
    by_score = sorted(tasks, key=lambda tid: -tasks[tid][0])
    first, rest = by_score[:4], by_score[4:]
    for tid in rest:  # outside the shortlist: the first stage's score (rounded regions, hence the tolerance)
        assert tasks[tid][0] == pytest.approx(tasks[tid][1], abs=1e-2)
    # the shortlist: the 4 highest entropy sums, all above every other task
    assert min(tasks[t][1] for t in first) >= max(tasks[t][1] for t in rest) - 1e-2
    assert min(tasks[t][0] for t in first) > max(tasks[t][0] for t in rest)
    assert labelstudio.next_task(ls_client, project.id, report["queue_view"])["id"] == first[0]
    # include_labeled: the labeled tasks get predictions too, but never a place in the shortlist
    again = preannotate(cfg("preannotate.queue_batch=2", "preannotate.queue_prefilter=2",
                            "preannotate.include_labeled=true"))
    assert again["predicted"] == 8 and "shortlist" not in again
    assert labelstudio.next_task(ls_client, project.id, report["queue_view"])["id"] == first[0]

    # The order is greedy coverage: each next task's objects (the torch network's features, computed here
    # again) are the farthest from the labeled tasks' objects and those of the tasks ahead of it.
    objects = object_reader(demo_model, demo_data, file_of, float(cfg().backend.score_threshold))

    def novelty(f, covered):
        return float(np.min(np.linalg.norm(f[:, None] - covered[None], axis=2), axis=1).sum()) if len(f) else 0.0

    covered = np.concatenate([objects(t) for t in labeled])
    feats = {t: objects(t) for t in first}
    assert sum(len(f) for f in feats.values()) > 0
    for j, tid in enumerate(first):
        gains = {t: novelty(feats[t], covered) for t in first[j:]}
        assert gains[tid] >= max(gains.values()) - 1e-5, (j, gains)
        covered = np.concatenate([covered, feats[tid]]) if len(feats[tid]) else covered


def test_object_representative_orders_the_shortlist_by_the_objects_it_stands_for(
        ls_server, ls_token, ls_client, demo_data, demo_model, mlflow_store, tmp_path):
    project, file_of, labeled, unlabeled, cfg = setup_project(ls_client, ls_server, ls_token, demo_data, demo_model,
                                                              mlflow_store, tmp_path, 14, 4)
    report = preannotate(cfg("preannotate.queue_strategy=object_representative", "preannotate.queue_batch=2",
                             "preannotate.queue_prefilter=2"))
    assert report["predicted"] == 10 and report["shortlist"] == 4 and report["covered_tasks"] == 4
    tasks = shown(ls_client, project.id, set(unlabeled))
    by_score = sorted(tasks, key=lambda tid: -tasks[tid][0])
    first, rest = by_score[:4], by_score[4:]
    for tid in rest:  # outside the shortlist: entropy_sum, as object_diverse's
        assert tasks[tid][0] == pytest.approx(tasks[tid][1], abs=1e-2)
    assert min(tasks[t][1] for t in first) >= max(tasks[t][1] for t in rest) - 1e-2
    # the shortlist's order is the representation order of its tasks' objects, the labeled tasks' covered
    objects = object_reader(demo_model, demo_data, file_of, float(cfg().backend.score_threshold))
    shortlisted = sorted(first, key=lambda t: (-tasks[t][1], t))  # the order the shortlist ranked them in
    covered = np.concatenate([objects(t) for t in labeled])
    order = object_representation([objects(t) for t in shortlisted], 4, covered)
    assert [shortlisted[i] for i in order] == first


def test_class_balanced_object_diverse_shortlists_by_the_checkpoints_rarity_weights(
        ls_server, ls_token, ls_client, demo_data, demo_model, mlflow_store, tmp_path):
    """The served version records few stars in its training set: the shortlist and every other task rank by
    class_balanced_entropy with those counts, not by entropy_sum."""
    ckpt = torch.load(demo_model["checkpoint"], weights_only=True)
    counts = [300, 300, 300, 10]
    ckpt["meta"]["class_counts"] = counts
    torch.save(ckpt, tmp_path / "counted.pth")
    project, _, _, unlabeled, cfg = setup_project(ls_client, ls_server, ls_token, demo_data, demo_model,
                                                  mlflow_store, tmp_path, 14, 4, checkpoint=tmp_path / "counted.pth")
    report = preannotate(cfg("preannotate.queue_strategy=class_balanced_object_diverse", "preannotate.queue_batch=2",
                             "preannotate.queue_prefilter=2"))
    assert report["predicted"] == 10 and report["shortlist"] == 4
    classes = ["circle", "square", "triangle", "star"]
    weighted, plain = {}, {}
    for t in labelstudio.list_tasks(ls_client, project.id):
        p = latest_prediction(t)
        if t["id"] in set(unlabeled):
            regions = [r for r in p["result"] if r.get("value", {}).get("rectanglelabels")]
            boxes = [r["score"] for r in regions]
            labels = [classes.index(r["value"]["rectanglelabels"][0]) for r in regions]
            weighted[t["id"]] = (p["score"], queue_score("class_balanced_entropy", boxes, labels, counts))
            plain[t["id"]] = queue_score("entropy_sum", boxes)
    by_score = sorted(weighted, key=lambda tid: -weighted[tid][0])
    first, rest = by_score[:4], by_score[4:]
    for tid in rest:
        assert weighted[tid][0] == pytest.approx(weighted[tid][1], abs=1e-2)
    assert min(weighted[t][1] for t in first) >= max(weighted[t][1] for t in rest) - 1e-2
    # the weights count: a task's weighted sum is not its entropy_sum
    assert any(abs(weighted[t][1] - plain[t]) > 0.05 for t in weighted)


def test_a_failure_while_ordering_stores_every_prediction_first(ls_server, ls_token, ls_client, demo_data, demo_model,
                                                                mlflow_store, tmp_path, monkeypatch):
    project, _, _, unlabeled, cfg = setup_project(ls_client, ls_server, ls_token, demo_data, demo_model,
                                                  mlflow_store, tmp_path, 10, 4)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(preannotate_order, "object_features", broken)
    with pytest.raises(LoopError, match="RuntimeError: out of memory.*the shortlist's with their entropy_sum scores"):
        preannotate(cfg("preannotate.queue_batch=2", "preannotate.queue_prefilter=1"))
    tasks = shown(ls_client, project.id, set(unlabeled))
    assert len(tasks) == 6 and {v for _, _, v in tasks.values()} == {f"{tmp_path.name.replace('_', '-')[:40]}:v1"}
    for score, first_stage, _ in tasks.values():
        assert score == pytest.approx(first_stage, abs=1e-2)


def test_a_model_failure_mid_stream_stores_the_shortlist_too(ls_server, ls_token, ls_client, demo_data, demo_model,
                                                             mlflow_store, tmp_path, monkeypatch):
    """The model fails on the second batch: the first batch's tasks, two of them waiting in the shortlist, keep
    their predictions (with their entropy_sum) and the stage fails with the reason."""
    project, _, _, unlabeled, cfg = setup_project(ls_client, ls_server, ls_token, demo_data, demo_model,
                                                  mlflow_store, tmp_path, 10, 4)
    real, calls = preannotate_stage.predict_tasks, []

    def second_batch_fails(tasks, *args, **kwargs):
        calls.append([t["id"] for t in tasks])
        outcomes = real(tasks, *args, **kwargs)
        if len(calls) == 2:
            for o in outcomes:
                o.error, o.model_failed = "the model failed on this batch", True
        return outcomes

    monkeypatch.setattr(preannotate_stage, "predict_tasks", second_batch_fails)
    with pytest.raises(LoopError, match="failed on a batch of images.*3 tasks were pre-annotated before it"):
        preannotate(cfg("preannotate.batch_size=3", "preannotate.queue_batch=2", "preannotate.queue_prefilter=1"))
    tasks = shown(ls_client, project.id, set(unlabeled))
    assert sorted(tasks) == sorted(calls[0])  # the first batch, all three of them
    for score, first_stage, _ in tasks.values():
        assert score == pytest.approx(first_stage, abs=1e-2)


def test_an_empty_object_diverse_batch_is_refused_before_anything_connects(tmp_path):
    overrides = ["stage=preannotate", "labelstudio.url=http://127.0.0.1:9", "labelstudio.project_id=1",
                 "registry.tracking_uri=http://127.0.0.1:9", f"work_dir={tmp_path}",
                 "preannotate.queue_strategy=object_diverse", "preannotate.queue_batch=0"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with pytest.raises(LoopError, match="queue_batch=0 and preannotate.queue_prefilter=3: both must be at least 1"):
        preannotate(cfg)
