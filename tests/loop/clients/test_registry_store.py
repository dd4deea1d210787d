"""The MLflow fixture is a real store: runs, metrics, model versions and aliases persist in it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_real_mlflow_store_round_trip(mlflow_store, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store["tracking_uri"], registry_uri=mlflow_store["tracking_uri"])
    exp = client.create_experiment("fixture-check", artifact_location=mlflow_store["artifact_location"])
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "bbox_mAP", 0.5, step=1)
    (tmp_path / "weights.txt").write_text("w")
    client.log_artifact(run.info.run_id, str(tmp_path / "weights.txt"), "model")
    client.set_terminated(run.info.run_id)

    client.create_registered_model("detector")
    mv = client.create_model_version("detector", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("detector", "champion", mv.version)

    again = MlflowClient(tracking_uri=mlflow_store["tracking_uri"], registry_uri=mlflow_store["tracking_uri"])
    assert again.get_model_version_by_alias("detector", "champion").version == mv.version
    assert again.get_metric_history(run.info.run_id, "bbox_mAP")[0].value == 0.5
    assert mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model/weights.txt",
                                               tracking_uri=mlflow_store["tracking_uri"])
