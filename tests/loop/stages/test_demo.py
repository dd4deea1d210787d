"""stage=demo as a user runs it: its own Label Studio, MLflow UI and backend processes, a few iterations."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
from loop.al.effort import NO_PREDICTION
from loop.al.oracle import SECONDS
from loop.al.tasks import latest_prediction
from loop.clients import labelstudio
from loop.common.paths import CONF_DIR
from loop.stages.demo import demo
from tests.helpers import command_lines

pytestmark = pytest.mark.integration


def test_demo_runs_the_loop_and_serves_until_stopped(small_demo, tmp_path):
    overrides = ["stage=demo", f"work_dir={tmp_path}", f"data.root={small_demo}", "data.name=small",
                 "stage.images=24", "stage.initial=14", "stage.per_iteration=6", "stage.iterations=2",
                 "train.epochs=1", "model.img_size=128", "train.num_workers=0", "export.val_fraction=0.3",
                 "stage.keep_running=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with ExitStack() as stack:
        result = demo(cfg, stack)
        urls = result["urls"]
        assert [h["labeled"] for h in result["history"]] == [14, 20]
        assert [h["champion"] for h in result["history"]] in ([1, 2], [1, 1])
        assert result["history"][0]["backend_reloaded"] is True
        assert all(0.0 <= h["test_mAP"] <= 1.0 for h in result["history"])
        for url in (urls["mlflow"] + "/health", urls["backend"] + "/health"):
            assert httpx.get(url, timeout=10).status_code == 200
        health = httpx.get(urls["backend"] + "/health", timeout=10).json()
        assert health["model_version"].endswith(f":v{result['history'][-1]['champion']}")
        # The project: labeled tasks from the annotator, predictions and queue scores on the rest.
        base = urls["labelstudio"].split("/projects/")[0]
        client = labelstudio.connect(base, Path(result["token_file"]).read_text().strip())
        tasks = labelstudio.list_tasks(client, result["project_id"])
        unlabeled = [t for t in tasks if not t["annotations"]]
        assert len(tasks) == 24 and len(unlabeled) == 4
        version = health["model_version"]
        assert all(latest_prediction(t)["model_version"] == version for t in unlabeled)  # the queue's scores
        assert "tab=" in urls["labelstudio"]
        # The simulated annotator corrected v1's predictions (sent with lead time and parent prediction):
        # the effort table has the first 14 tasks drawn by hand and the 6 labeled with v1's boxes on screen.
        line = health["model_version"].rsplit(":", 1)[0]
        effort = result["effort"]
        assert (effort[NO_PREDICTION]["tasks"], effort[f"{line}:v1"]["tasks"]) == (14, 6)
        assert effort[NO_PREDICTION]["added"] > 0 and effort[NO_PREDICTION]["seconds_per_task"] > 0
        v1 = effort[f"{line}:v1"]
        edits = sum(v1[k] for k in ("accepted", "adjusted", "relabeled", "deleted", "added"))
        assert edits > 0 and v1["seconds_per_task"] == pytest.approx(
            (6 * SECONDS["task"] + sum(SECONDS[k] * v1[k] for k in SECONDS if k != "task")) / 6)
        # The token reached the backend through its environment: on no command line (ps) and in no file the
        # demo wrote, Label Studio's own data folder apart.
        token = Path(result["token_file"]).read_text().strip().encode()
        assert not any(token in line for line in command_lines())
        ls_data = Path(result["token_file"]).parent
        leaks = [f for f in Path(result["work_dir"]).rglob("*")
                 if f.is_file() and ls_data not in f.parents and token in f.read_bytes()]
        assert not leaks, leaks
    with pytest.raises(httpx.HTTPError):  # Ctrl-C / the end of the stage stops every service
        httpx.get(urls["backend"] + "/health", timeout=3)


def test_the_segmentation_demo_labels_masks_and_serves_polygons(small_demo, tmp_path):
    """stage.masks=PolygonLabels: a PolygonLabels project, the annotator draws each object's polygon, RTMDet-Ins
    trains and is gated on segm mAP, and the backend pre-annotates the rest with polygons."""
    overrides = ["stage=demo", f"work_dir={tmp_path}", f"data.root={small_demo}", "data.name=small",
                 "stage.images=20", "stage.initial=14", "stage.iterations=1", "stage.masks=PolygonLabels",
                 "train.epochs=1", "model.img_size=128", "train.num_workers=0", "export.val_fraction=0.3",
                 "backend.score_threshold=0.0", "stage.keep_running=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with ExitStack() as stack:
        result = demo(cfg, stack)
        (step,) = result["history"]
        assert step["labeled"] == 14 and step["backend_reloaded"] is True and 0.0 <= step["test_segm_mAP"] <= 1.0
        base = result["urls"]["labelstudio"].split("/projects/")[0]
        client = labelstudio.connect(base, Path(result["token_file"]).read_text().strip())
        assert "<PolygonLabels" in labelstudio.get_project(client, result["project_id"])["label_config"]
        tasks = labelstudio.list_tasks(client, result["project_id"])
        drawn = [r for t in tasks for a in t["annotations"] for r in a["result"]]
        assert drawn and {r["type"] for r in drawn} == {"polygonlabels"}
        health = httpx.get(result["urls"]["backend"] + "/health", timeout=10).json()
        assert health["model_class"] == "RTMDet" and health["model_version"].endswith(":v1")
        shown = [latest_prediction(t) for t in tasks if not t["annotations"]]
        assert len(shown) == 6 and all(p["model_version"] == health["model_version"] for p in shown)
        assert {r["type"] for p in shown for r in p["result"]} <= {"polygonlabels"}
