"""The MMDetection / Label Studio tutorials' path: a model-zoo checkpoint as OpenMMLab publishes it (80 COCO
classes, random weights here: no downloads; mmdet's and MMYOLO's), served without backend.config to a real
Label Studio project with the tutorials' 80-label config and to one that maps labels with predicted_values."""

from __future__ import annotations

import httpx
import pytest

from loop.clients import labelstudio
from loop.common.label_configs import COCO_LABELS, rectangle_labels_config
from tests.helpers import make_demo_project
from tests.zoo import published, runner_checkpoint

pytestmark = pytest.mark.integration

# name -> (class biases that make the random model report people, the config's own input size and max_per_img,
# the runtime backend.runtime=auto picks)
ZOO = {"rtmdet_m_8xb32-300e_coco": ({0: 2.0}, 640, 300, "onnxruntime"),
       "faster-rcnn_r50_fpn_1x_coco": ({0: 6.0}, 1333, 100, "torch"),
       "yolov8_n_syncbn_fast_8xb16-500e_coco": ({0: 2.0}, 640, 300, "onnxruntime")}  # MMYOLO's


@pytest.fixture(scope="module", params=sorted(ZOO))
def zoo_backend(request, tmp_path_factory, start_backend, ls_server, ls_token):
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    checkpoint = published(runner_checkpoint(name, folder / f"{name}.pth", biases=ZOO[name][0]), folder)
    backend = start_backend(f"backend.checkpoint={checkpoint}", f"labelstudio.url={ls_server.url}",
                            "backend.score_threshold=0.3", api_key=ls_token)
    return name, backend


def _stored(client, project_id) -> list[dict]:
    return [t["predictions"][0] for t in labelstudio.list_tasks(client, project_id) if t["predictions"]]


def test_a_model_zoo_checkpoint_serves_the_tutorials_coco_project(zoo_backend, ls_client, demo_data):
    name, backend = zoo_backend
    _, size, max_per_img, runtime = ZOO[name]
    health = httpx.get(f"{backend['url']}/health").json()
    assert (health["input_size"], health["classes"], health["runtime"]) == (size, 80, runtime), health
    project, _, _ = make_demo_project(ls_client, demo_data, 2, f"zoo-coco-{name}", split="test")
    ls_client.projects.update(project.id, label_config=rectangle_labels_config(COCO_LABELS))
    labelstudio.connect_ml_backend(ls_client, project.id, backend["url"])
    labelstudio.retrieve_predictions(ls_client, project.id)
    stored = _stored(ls_client, project.id)
    assert len(stored) == 2
    for prediction in stored:
        labels = [r["value"]["rectanglelabels"][0] for r in prediction["result"]]
        assert 0 < len(labels) <= max_per_img and set(labels) == {"person"}
        assert prediction["model_version"] == health["model_version"]
    print(f"{name}: 80 classes, input {size} px, boxes stored for task 1: {len(stored[0]['result'])}, first "
          f"{stored[0]['result'][0]['value']}")


def test_a_model_zoo_checkpoint_serves_labels_mapped_with_predicted_values(zoo_backend, ls_client, demo_data):
    name, backend = zoo_backend
    config = rectangle_labels_config(["Human", "Toy"], {"Human": "person", "Toy": "kite,sports_ball,teddy bear"})
    project, _, _ = make_demo_project(ls_client, demo_data, 2, f"zoo-mapped-{name}", split="test")
    ls_client.projects.update(project.id, label_config=config)
    labelstudio.connect_ml_backend(ls_client, project.id, backend["url"])
    labelstudio.retrieve_predictions(ls_client, project.id)
    labels = {r["value"]["rectanglelabels"][0] for p in _stored(ls_client, project.id) for r in p["result"]}
    assert labels == {"Human"}
