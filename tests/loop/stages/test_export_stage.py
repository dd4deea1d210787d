"""stage=export against a real Label Studio: annotations imported with their tasks are exported, and the
counter stage=loop polls is recorded apart from the exported task count, because it leaves them out."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import loop.run  # noqa: F401  (registers the ${repo:} resolver)
from loop.clients import labelstudio
from loop.common.label_configs import rectangle_labels_config
from loop.common.paths import CONF_DIR
from loop.common.regions import bbox_to_region
from loop.stages.export import export
from tests.helpers import key_file

pytestmark = pytest.mark.integration

CLASSES = ["circle", "square"]


def test_imported_annotations_are_exported_but_not_in_the_counter_the_loop_polls(ls_server, ls_token, ls_client,
                                                                                  tmp_path):
    project = labelstudio.create_project(ls_client, "imported-annotations", rectangle_labels_config(CLASSES))

    def task(i, annotated):
        t = {"data": {"image": f"/data/local-files/?d=img{i}.jpg"}}
        if annotated:  # pre-existing labels brought in with the tasks (Label Studio marks them ground truth)
            t["annotations"] = [{"result": [bbox_to_region([8, 8, 40, 30], CLASSES[i % 2], 320, 240)]}]
        return t

    assert labelstudio.import_tasks(ls_client, project.id, [task(i, i < 4) for i in range(7)]) == 7
    fresh = [t["id"] for t in labelstudio.iter_tasks(ls_client, project.id) if not t["annotations"]]
    for tid in fresh:  # three submitted by annotators
        labelstudio.submit_annotation(ls_client, tid, [bbox_to_region([10, 10, 50, 40], "square", 320, 240)])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "stage=export", f"labelstudio.url={ls_server.url}", f"labelstudio.project_id={project.id}",
            f"labelstudio.api_key_file={key_file(tmp_path, ls_token)}", f"work_dir={tmp_path}"])
    result = export(cfg, download=False)
    assert result["tasks"] == 7  # every annotated task is training data
    assert result["submitted_counter"] == 3 == labelstudio.get_project(ls_client, project.id)[
        "num_tasks_with_annotations"]
