"""stage=retrain end to end: real Label Studio, real MLflow store, real mmdet training (a few iterations)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
from backend.loading import model_loader
from loop.clients.ls_server import free_port
from loop.clients.registry import CHALLENGER
from loop.common.errors import LoopError
from loop.common.label_configs import segmentation_labels_config
from loop.common.paths import CONF_DIR, REPO_ROOT
from loop.stages.adapters import open_registry, serve_settings
from loop.stages.retrain import promote_stage, retrain, rollback_stage
from tests.helpers import key_file, make_demo_project, submit_ground_truth
from train.slim import load_slim

pytestmark = pytest.mark.integration

TAGS = {"heldout_bbox_mAP", "heldout_bbox_mAP_50", "train_images", "heldout_images", "snapshot_tasks",
        "snapshot_submitted", "snapshot_max_updated_at", "snapshot_task_ids", "resolved_config", "code_revision",
        "parent_version", "classes", "onnx_check", "int8_check", "model_sha256"}


def make_cfg(ls_server, token, project_id, mlflow_store, tmp_path, *extra):
    overrides = [f"labelstudio.url={ls_server.url}", f"labelstudio.api_key_file={key_file(tmp_path, token)}",
                 f"labelstudio.project_id={project_id}", f"work_dir={tmp_path}",
                 f"registry.tracking_uri={mlflow_store['tracking_uri']}",
                 f"registry.artifact_location={mlflow_store['artifact_location'] or 'null'}",
                 "stage=retrain", "train=smoke", "model.img_size=160", "export.val_fraction=0.3", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture(scope="module")
def labeled_project(ls_client, demo_data):
    project, gt, file_of = make_demo_project(ls_client, demo_data, 30, "retrain-test")
    submit_ground_truth(ls_client, gt, file_of)
    return project


def test_retrain_registers_gates_and_rolls_back(ls_server, ls_token, labeled_project, demo_model, any_store,
                                                tmp_path):
    base = make_cfg(ls_server, ls_token, labeled_project.id, any_store, tmp_path,
                    f"model.checkpoint={demo_model['checkpoint']}")
    first = retrain(base)
    registry = open_registry(base)
    v1 = registry.get(first["version"])
    assert first["promoted"] and first["reason"] == "first version"
    assert registry.champion().version == v1.version == registry.by_alias(CHALLENGER).version
    assert TAGS <= set(v1.tags)
    assert int(v1.tags["train_images"]) + int(v1.tags["heldout_images"]) == 30
    assert v1.tags["snapshot_tasks"] == v1.tags["snapshot_submitted"] == "30"  # all submitted by annotators
    assert v1.tags["parent_version"] == "none" and "***" in v1.tags["resolved_config"]
    assert ls_token not in v1.tags["resolved_config"]
    assert first["heldout_bbox_mAP_50"] > 0.1  # fine-tuned from a model that detects shapes

    files = registry.download(v1, tmp_path / "dl")
    names = {p.name for p in files.iterdir()}
    assert {"model.pth", "model.onnx", "config.py", "classes.json", "snapshot.json"} <= names
    assert v1.tags["onnx_check"] == "passed", v1.tags["onnx_check_detail"]
    assert load_slim(files / "model.pth")["meta"]["classes"] == ["circle", "square", "triangle", "star"]
    if any_store["artifact_location"] is None:  # a tracking server: the artifacts went through it, into its store
        assert next(any_store["artifacts"].glob(f"*/{v1.run_id}/artifacts/model/model.pth")).is_file()
        assert registry.client.get_run(v1.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    plots = registry.client.list_artifacts(v1.run_id, "plots")
    assert {p.path for p in plots} == {"plots/curves.png", "plots/pr_curve.png", "plots/heldout_examples.png"}

    # A deliberately worse candidate: from random weights, one epoch. Registered, not promoted.
    worse = retrain(make_cfg(ls_server, ls_token, labeled_project.id, any_store, tmp_path,
                             "train.init=base", "model.checkpoint=null"))
    assert not worse["promoted"] and worse["version"] == v1.version + 1
    assert worse["champion_heldout_bbox_mAP"] == pytest.approx(first["heldout_bbox_mAP"], abs=0.02)
    assert registry.champion().version == v1.version
    assert registry.by_alias(CHALLENGER).version == worse["version"]

    # By hand: promote the challenger, then roll back.
    assert promote_stage(make_cfg(ls_server, ls_token, labeled_project.id, any_store, tmp_path,
                                  f"version={worse['version']}")) == {"from": v1.version, "to": worse["version"]}
    assert rollback_stage(base) == {"from": worse["version"], "to": v1.version}
    assert registry.champion().version == v1.version


def test_failures_register_nothing(ls_server, ls_token, ls_client, labeled_project, mlflow_store, tmp_path):
    def versions(cfg):
        reg = open_registry(cfg)
        return len(reg.client.search_model_versions(f"name='{reg.model_name}'"))

    cfg = make_cfg(ls_server, "wrong-token", labeled_project.id, mlflow_store, tmp_path)
    with pytest.raises(LoopError, match="rejected the API key"):
        retrain(cfg)

    empty = ls_client.projects.create(title="nothing-submitted", label_config=labeled_project.label_config)
    with pytest.raises(LoopError, match="no submitted annotations"):
        retrain(make_cfg(ls_server, ls_token, empty.id, mlflow_store, tmp_path))

    # A loss that becomes NaN: the run is marked FAILED and nothing is registered or promoted.
    from train.hooks import TrainingDiverged

    cfg = make_cfg(ls_server, ls_token, labeled_project.id, mlflow_store, tmp_path)
    cfg.train.cfg_options = {"model.bbox_head.loss_bbox.loss_weight": float("nan")}
    with pytest.raises(TrainingDiverged, match="diverged"):
        retrain(cfg)
    assert versions(cfg) == 0
    reg = open_registry(cfg)
    runs = reg.client.search_runs([reg.client.get_experiment_by_name(reg.experiment).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_retrain_trains_under_torchrun_in_two_processes_and_registers_once(ls_server, ls_token, labeled_project,
                                                                            demo_model, mlflow_store, tmp_path):
    """train.gpus=2 on this CPU: two gloo processes through mmengine's pytorch launcher; the stage alone
    evaluates, registers and gates, with what a one-process retrain registers."""
    cfg = make_cfg(ls_server, ls_token, labeled_project.id, mlflow_store, tmp_path,
                   f"model.checkpoint={demo_model['checkpoint']}", "train.gpus=2",
                   f"train.master_port={free_port()}")
    result = retrain(cfg)
    registry = open_registry(cfg)
    version = registry.get(result["version"])
    assert result["promoted"] and result["train_processes"] == 2
    assert [v.version for v in registry.client.search_model_versions(f"name='{registry.model_name}'")] == \
        [version.version]  # registered once
    assert TAGS <= set(version.tags) and version.tags["onnx_check"] == "passed"
    assert registry.client.get_run(version.run_id).data.params["train_processes"] == "2"
    assert result["heldout_bbox_mAP_50"] > 0.1  # both ranks fine-tuned the same model from the demo weights
    log = next((tmp_path / "retrain").rglob("torchrun.log")).read_text()
    assert "world size 2" in log
    assert log.count("left the process group") == 2  # both ranks got through the barrier and out


def test_retrain_with_an_mmyolo_config_registers_a_version_that_serves(ls_server, ls_token, labeled_project,
                                                                       mlflow_store, tmp_path):
    """model.config an MMYOLO model-zoo name: its own pipeline (mosaic, affine, albumentations) and hooks (EMA,
    its learning-rate hook) train a few iterations; the version is registered, checked in ONNX Runtime and
    loads where the backend loads versions."""
    cfg = make_cfg(ls_server, ls_token, labeled_project.id, mlflow_store, tmp_path,
                   "model.config=yolov8_n_syncbn_fast_8xb16-500e_coco", "model.checkpoint=null")
    result = retrain(cfg)
    registry = open_registry(cfg)
    version = registry.get(result["version"])
    assert result["promoted"] and TAGS <= set(version.tags)
    assert version.tags["onnx_check"] == "passed", version.tags["onnx_check_detail"]
    # the int8 network is made and checked for it too (the verdict depends on a few iterations' weights)
    assert version.tags["int8_check"] in ("passed", "failed", "inconclusive"), version.tags["int8_check_detail"]
    files = registry.download(version, tmp_path / "dl")
    assert "default_scope = 'mmyolo'" in (files / "config.py").read_text()
    served = model_loader(serve_settings(cfg))(str(files / "model.pth"), "v1")
    assert served.runtime == "onnxruntime" and served.model_class == "YOLODetector"
    assert served.classes == ["circle", "square", "triangle", "star"] and served.input_size == 160
    assert len(served.predict([np.zeros((120, 200, 3), np.uint8)])) == 1


def test_retrain_of_a_polygon_project_registers_segm_metrics_and_gates_on_them(ls_server, ls_token, ls_client,
                                                                                demo_data, demo_model, mlflow_store,
                                                                                tmp_path):
    """Submitted polygons export as COCO instances; RTMDet-Ins (our demo config, from the box model's weights)
    trains a few iterations; the version carries held-out segm mAP next to bbox mAP, and the gate compares
    segm mAP (registry.gate_metric=auto)."""
    config = segmentation_labels_config(["circle", "square", "triangle", "star"], "PolygonLabels")
    project, gt, file_of = make_demo_project(ls_client, demo_data, 20, "retrain-seg", label_config=config)
    submit_ground_truth(ls_client, gt, file_of, label_config=config)
    cfg = make_cfg(ls_server, ls_token, project.id, mlflow_store, tmp_path,
                   f"model.config={REPO_ROOT / 'train' / 'configs' / 'rtmdet_ins_tiny_demo.py'}",
                   f"model.checkpoint={demo_model['checkpoint']}")
    first = retrain(cfg)
    registry = open_registry(cfg)
    v1 = registry.get(first["version"])
    assert first["promoted"] and first["gate_metric"] == "segm" and v1.tags["gate_metric"] == "segm"
    assert {"heldout_segm_mAP", "heldout_segm_mAP_50"} <= set(v1.tags) and 0.0 <= first["heldout_segm_mAP"] <= 1.0
    assert "heldout_segm_mAP" in registry.client.get_run(v1.run_id).data.metrics
    assert v1.tags["onnx_check"] in ("passed", "inconclusive") and v1.tags["int8_check"] != "unsupported", v1.tags
    exported = next((tmp_path / "exports").rglob("train.json"))
    assert all(a["segmentation"] for a in json.loads(exported.read_text())["annotations"])

    second = retrain(cfg)  # from the champion: compared on segm mAP, the champion's own masks evaluated too
    assert second["gate_metric"] == "segm" and ("segm mAP" in second["reason"])
