"""stage=preannotate and stage=loop against real Label Studio, MLflow and mmdet."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401
from backend.predictor import recorded_class_counts
from loop.al.acquisition import queue_score
from loop.al.tasks import latest_prediction
from loop.clients import labelstudio
from loop.clients.registry import Registry
from loop.common.paths import CONF_DIR
from loop.stages.preannotate import preannotate
from loop.stages.scheduler import run_stage as run_loop
from tests.backend.conftest import publish
from tests.helpers import key_file, make_demo_project, submit_ground_truth
from train.slim import load_slim

pytestmark = pytest.mark.integration


def latest_versions(client, project_id, unlabeled):
    out = {}
    for t in labelstudio.list_tasks(client, project_id):
        if t["id"] in unlabeled:
            preds = sorted(t["predictions"], key=lambda p: (p["created_at"], p["id"]))
            out[t["id"]] = preds[-1]["model_version"] if preds else None
    return out


def test_preannotate_then_loop(ls_server, ls_token, ls_client, demo_data, demo_model, mlflow_store, tmp_path):
    project, gt, file_of = make_demo_project(ls_client, demo_data, 20, "loop-test")
    ids = sorted(file_of)
    labeled, unlabeled = ids[:14], set(ids[14:])
    submit_ground_truth(ls_client, gt, file_of, labeled)
    registry = Registry(mlflow_store["tracking_uri"], "loop-test", artifact_location=mlflow_store["artifact_location"])
    registry.promote(publish(registry, demo_model, tmp_path, "v1"))

    def cfg(stage, *extra):
        overrides = [f"stage={stage}", f"labelstudio.url={ls_server.url}",
                     f"labelstudio.api_key_file={key_file(tmp_path, ls_token)}",
                     f"labelstudio.project_id={project.id}", f"work_dir={tmp_path}",
                     f"registry.tracking_uri={mlflow_store['tracking_uri']}", "registry.model_name=loop-test",
                     f"registry.artifact_location={mlflow_store['artifact_location']}",
                     "preannotate.queue_strategy=class_balanced_entropy", *extra]  # object_diverse: its own test
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)

    first = preannotate(cfg("preannotate", "preannotate.batch_size=4"))
    assert first["stale_tasks"] == 6 and first["predicted"] == 6
    assert (first["runtime"], first["precision"]) == ("onnxruntime", "fp32")  # the backend's default runtime
    assert_queue_ordered(ls_client, project.id, first["queue_view"], unlabeled, served_meta(registry, tmp_path))
    assert set(latest_versions(ls_client, project.id, unlabeled).values()) == {"loop-test:v1"}
    assert preannotate(cfg("preannotate"))["stale_tasks"] == 0  # a second run does nothing

    figures = run_loop(cfg("loop", "stage.min_new_annotations=10", "stage.max_iterations=1", "stage.poll_s=1",
                           "registry.promotion_margin=-1", "train=smoke", "model.img_size=160",
                           "export.val_fraction=0.3"))
    assert figures == {"iterations": 1, "failures": 0, "promotions": 1}
    assert registry.champion().version == 2
    assert set(latest_versions(ls_client, project.id, unlabeled).values()) == {"loop-test:v2"}
    meta = served_meta(registry, tmp_path)  # the retrained version records its training set's boxes per class
    assert len(set(meta["class_counts"])) > 1  # so the classes weigh differently in the queue
    queue = assert_queue_ordered(ls_client, project.id, first["queue_view"], unlabeled, meta)
    submit_ground_truth(ls_client, gt, file_of, [queue[0]])
    assert labelstudio.next_task(ls_client, project.id, first["queue_view"])["id"] == queue[1]


def served_meta(registry, tmp_path) -> dict:
    """The champion checkpoint's meta: its classes, and the boxes per class it was trained on (none for the
    published demo model), which the queue's class_balanced_entropy weighs classes by."""
    version = registry.champion()
    model = registry.download(version, tmp_path / f"champion-v{version.version}")
    meta = load_slim(model / "model.pth")["meta"]  # read as the backend reads it
    return {"classes": meta["classes"], "class_counts": recorded_class_counts(meta, meta["classes"], model)}


def assert_queue_ordered(client, project_id, view_id, unlabeled, meta):
    """Every unlabeled task's newest prediction carries its acquisition score, and Label Studio's labeling
    stream opened from the queue tab hands out the highest-scored task first; returns the task ids in queue
    order."""
    tasks = {t["id"]: t for t in labelstudio.list_tasks(client, project_id) if t["id"] in unlabeled}
    scores = {tid: latest_prediction(t)["score"] for tid, t in tasks.items()}
    assert len(scores) == len(unlabeled) and len(set(scores.values())) > 1
    weighted = 0  # tasks whose score the class weights change by more than the tolerance
    for t in tasks.values():  # the class-weighted entropy sum, not the mean confidence
        regions = latest_prediction(t)["result"]
        shown = [r["score"] for r in regions]  # rounded to 4 digits, hence the tolerance
        labels = [meta["classes"].index(r["value"]["rectanglelabels"][0]) for r in regions]
        expected = queue_score("class_balanced_entropy", shown, labels, meta["class_counts"])
        assert scores[t["id"]] == pytest.approx(expected, abs=1e-2)
        weighted += abs(expected - queue_score("entropy_sum", shown)) > 2e-2
    assert (weighted > 0) == (meta["class_counts"] is not None)  # without counts every class weighs 1
    by_score = sorted(scores, key=lambda tid: -scores[tid])
    assert labelstudio.next_task(client, project_id, view_id)["id"] == by_score[0]
    assert all(t["data"]["image"].startswith("/data/upload/") for t in tasks.values())  # other fields kept
    return by_score
