"""stage=effort against a real Label Studio and MLflow store: annotations crafted to hit every category."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
from loop.al.effort import NO_PREDICTION
from loop.clients import labelstudio
from loop.clients.registry import Registry
from loop.common.paths import CONF_DIR
from loop.stages.effort import run_stage
from tests.backend.conftest import publish
from tests.helpers import key_file, make_demo_project

pytestmark = pytest.mark.integration


def rect(label, x, y, w, h):
    return {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 320,
            "original_height": 240,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


SHOWN = [rect("circle", 10, 10, 20, 20), rect("square", 50, 50, 20, 20), rect("circle", 5, 60, 10, 10),
         rect("triangle", 70, 5, 10, 10)]
SUBMITTED = [rect("circle", 10, 10, 20, 20),    # accepted
             rect("square", 53, 53, 20, 20),    # adjusted (IoU 0.57)
             rect("star", 5, 60, 10, 10),       # relabeled
             rect("square", 80, 80, 10, 10),    # added
             ]                                  # the triangle: deleted


def test_effort_per_version_reaches_the_table_and_each_versions_run(ls_server, ls_token, ls_client, demo_data,
                                                                    demo_model, mlflow_store, tmp_path, capsys):
    project, _, file_of = make_demo_project(ls_client, demo_data, 3, "effort-test")
    edited, newest_shown, alone = sorted(file_of)
    registry = Registry(mlflow_store["tracking_uri"], "effort-test",
                        artifact_location=mlflow_store["artifact_location"])
    v1, v2 = publish(registry, demo_model, tmp_path, "v1"), publish(registry, demo_model, tmp_path, "v2")

    def predict(task_id, version, result):
        return labelstudio.create_prediction(ls_client, task_id, {"result": result, "score": 0.5,
                                                                  "model_version": f"effort-test:v{version}"})

    shown = predict(edited, v1, SHOWN)
    labelstudio.submit_annotation(ls_client, edited, SUBMITTED, lead_time=20.5, parent_prediction=shown)
    # no parent recorded: the newest prediction made before the annotation (v2's) is the one on screen
    predict(newest_shown, v1, SHOWN[:1])
    predict(newest_shown, v2, SHOWN[:2])
    labelstudio.submit_annotation(ls_client, newest_shown, SHOWN[:2], lead_time=4.0)
    labelstudio.submit_annotation(ls_client, newest_shown, [], was_cancelled=True, lead_time=99.0)  # skipped
    labelstudio.submit_annotation(ls_client, alone, SUBMITTED[:2], lead_time=31.0)
    # Label Studio keeps what the labeling screen records
    stored = labelstudio.get_task(ls_client, edited)["annotations"][0]
    assert (stored["lead_time"], stored["parent_prediction"]) == (20.5, shown)

    overrides = ["stage=effort", f"labelstudio.url={ls_server.url}", f"labelstudio.project_id={project.id}",
                 f"labelstudio.api_key_file={key_file(tmp_path, ls_token)}", f"work_dir={tmp_path}",
                 f"registry.tracking_uri={mlflow_store['tracking_uri']}", "registry.model_name=effort-test",
                 f"registry.artifact_location={mlflow_store['artifact_location']}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        result = run_stage(compose(config_name="config", overrides=overrides))

    figures = result["versions"]
    assert {k: figures["effort-test:v1"][k] for k in ("tasks", "accepted", "adjusted", "relabeled", "deleted",
                                                      "added", "seconds_per_task")} == \
        {"tasks": 1, "accepted": 1, "adjusted": 1, "relabeled": 1, "deleted": 1, "added": 1, "seconds_per_task": 20.5}
    assert {k: figures["effort-test:v2"][k] for k in ("tasks", "accepted", "deleted", "added", "accepted_share",
                                                      "seconds_per_task")} == \
        {"tasks": 1, "accepted": 2, "deleted": 0, "added": 0, "accepted_share": 1.0, "seconds_per_task": 4.0}
    assert (figures[NO_PREDICTION]["tasks"], figures[NO_PREDICTION]["added"],
            figures[NO_PREDICTION]["seconds_per_task"]) == (1, 2, 31.0)
    assert result["logged_versions"] == [v1, v2]
    out = capsys.readouterr().out
    assert "effort-test:v1" in out and NO_PREDICTION in out

    # metrics on each version's own run; the table and plot on the newest one's
    runs = {v: registry.client.get_run(registry.get(v).run_id).data.metrics for v in (v1, v2)}
    assert (runs[v1]["effort_accepted"], runs[v1]["effort_deleted"], runs[v1]["effort_seconds_per_task"]) == \
        (1.0, 1.0, 20.5)
    assert runs[v2]["effort_accepted_share"] == 1.0
    artifacts = {a.path for a in registry.client.list_artifacts(registry.get(v2).run_id, "effort")}
    assert artifacts == {"effort/effort.csv", "effort/effort.json", "effort/effort.png"}
