"""stage=export against a real Label Studio: annotators submit through the SDK, the export must match."""

from __future__ import annotations

import json

import pytest

from loop.clients import labelstudio
from loop.clients.media import MediaConfig, MediaFetcher
from loop.common.errors import LoopError
from tests.helpers import make_demo_project, regions, submit_ground_truth
from train.export import export_project
from train.export_state import ExportState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def annotated_project(ls_client, demo_data):
    """12 demo images; annotators submit ground truth, with a skip, an empty one and a re-annotation."""
    project, gt, file_of = make_demo_project(ls_client, demo_data, 12, "export-test")
    task_ids = sorted(file_of)
    labels = [c["name"] for c in json.loads((demo_data / "pool.json").read_text())["categories"]]
    skipped, empty, twice, untouched = task_ids[0], task_ids[1], task_ids[2], task_ids[3]
    for tid in task_ids:
        im, boxes = gt[file_of[tid]]
        if tid == untouched:
            continue
        if tid == skipped:
            labelstudio.submit_annotation(ls_client, tid, [], was_cancelled=True)
        elif tid == empty:
            labelstudio.submit_annotation(ls_client, tid, [])
        elif tid == twice:
            wrong = [(label, [0, 0, 10, 10]) for label, _ in boxes]
            labelstudio.submit_annotation(ls_client, tid, regions(im, wrong))
            labelstudio.submit_annotation(ls_client, tid, regions(im, boxes))  # the later one wins
        else:
            labelstudio.submit_annotation(ls_client, tid, regions(im, boxes))
    return {"project": project, "gt": gt, "file_of": file_of, "task_ids": task_ids, "skipped": skipped,
            "empty": empty, "untouched": untouched, "labels": labels}


def test_export_matches_ground_truth(ls_client, ls_fetcher, annotated_project, tmp_path):
    p = annotated_project
    result = export_project(ls_client, p["project"].id, tmp_path, fetcher=ls_fetcher, val_fraction=0.25,
                          progress=False)
    submitted = labelstudio.get_project(ls_client, p["project"].id)["num_tasks_with_annotations"]
    assert result["tasks"] == submitted == 10  # 12 - skipped - untouched; the empty one counts

    train, val = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("train", "val"))
    assert [c["name"] for c in train["categories"]] == p["labels"] == [c["name"] for c in val["categories"]]
    images = {im["id"]: im for im in train["images"] + val["images"]}
    assert set(images) == set(p["task_ids"]) - {p["skipped"], p["untouched"]}
    names = {c["id"]: c["name"] for c in train["categories"]}
    for tid, im in images.items():
        gt_im, gt_boxes = p["gt"][p["file_of"][tid]]
        assert (im["width"], im["height"]) == (gt_im["width"], gt_im["height"])
        assert (tmp_path / im["file_name"]).is_file()
        got = sorted((names[a["category_id"]], a["bbox"]) for a in train["annotations"] + val["annotations"]
                     if a["image_id"] == tid)
        want = [] if tid == p["empty"] else sorted(gt_boxes)
        assert [g[0] for g in got] == [w[0] for w in want]
        for (_, gb), (_, wb) in zip(got, want):
            assert max(abs(a - b) for a, b in zip(gb, wb)) <= 1.0

    # Re-running with nothing new changes nothing.
    again = export_project(ls_client, p["project"].id, tmp_path, fetcher=ls_fetcher, val_fraction=0.25,
                          progress=False)
    assert again["changed"] is False and again["tasks"] == 10


def test_validation_split_is_frozen_as_the_project_grows(ls_client, ls_fetcher, annotated_project, tmp_path):
    p = annotated_project
    export_project(ls_client, p["project"].id, tmp_path, fetcher=ls_fetcher, val_fraction=0.3, progress=False)
    exported = [int(t) for t in json.loads((tmp_path / "manifest.json").read_text())["tasks"]]
    with ExportState(tmp_path, p["project"].id) as state:  # the splits it remembers, asked with another fraction
        before = {tid: state.split(tid, 0.6) for tid in exported}
    # More annotations arrive (the untouched task), and the user asks for a different fraction.
    im, boxes = p["gt"][p["file_of"][p["untouched"]]]
    labelstudio.submit_annotation(ls_client, p["untouched"], regions(im, boxes))
    result = export_project(ls_client, p["project"].id, tmp_path, fetcher=ls_fetcher, val_fraction=0.6, progress=False)
    assert result["tasks"] == 11 and result["changed"]
    with ExportState(tmp_path, p["project"].id) as state:
        assert {tid: state.split(tid, 0.6) for tid in before} == before
    val_ids = {im["id"] for im in json.loads((tmp_path / "val.json").read_text())["images"]}
    train_ids = {im["id"] for im in json.loads((tmp_path / "train.json").read_text())["images"]}
    assert not val_ids & train_ids


def test_a_task_whose_image_cannot_be_read_stops_the_export_with_its_id_and_cause(ls_client, ls_server, ls_fetcher,
                                                                                  demo_data, tmp_path):
    project, gt, file_of = make_demo_project(ls_client, demo_data, 3, "export-unreadable")
    submit_ground_truth(ls_client, gt, file_of)
    im, boxes = next(iter(gt.values()))
    missing = ls_client.tasks.create(project=project.id, data={"image": "/data/upload/999/not-there.jpg"}).id
    labelstudio.submit_annotation(ls_client, missing, regions(im, boxes))

    # Label Studio answers a missing upload with HTTP 500
    with pytest.raises(LoopError, match=rf"1 submitted task\(s\) cannot be read \(tasks {missing}\).*HTTP 500.*"
                                        r"still in Label Studio's storage.*export.skip_unreadable=true"):
        export_project(ls_client, project.id, tmp_path / "strict", fetcher=ls_fetcher, progress=False)
    assert not (tmp_path / "strict" / "train.json").exists()  # nothing written that looks complete

    result = export_project(ls_client, project.id, tmp_path / "lenient", fetcher=ls_fetcher, progress=False,
                            skip_unreadable=True)
    assert result["tasks"] == 3 and result["unreadable"] == [missing]

    with MediaFetcher(MediaConfig(ls_url=ls_server.url, api_key="not-a-valid-token")) as wrong_token:
        with pytest.raises(LoopError, match="HTTP 401.*check LABEL_STUDIO_API_KEY"):
            export_project(ls_client, project.id, tmp_path / "token", fetcher=wrong_token, progress=False)
