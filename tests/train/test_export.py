"""stage=export against a real Label Studio: annotators submit through the SDK, the export must match."""

from __future__ import annotations

import json

import pytest

from loop.al.effort import EffortTable
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


def test_a_re_export_reads_only_the_tasks_that_changed_and_writes_what_a_full_export_writes(ls_client, ls_fetcher,
                                                                                            demo_data, tmp_path):
    project, gt, file_of = make_demo_project(ls_client, demo_data, 7, "export-incremental")
    ids = sorted(file_of)
    kept_out = ids[-1]  # labeled only later, as a new submission
    for tid in ids[:3]:  # a model's boxes on screen before the person labels
        im, boxes = gt[file_of[tid]]
        moved = [(label, [x + 3, y, w, h]) for label, (x, y, w, h) in boxes]
        labelstudio.create_prediction(ls_client, tid, {"result": regions(im, moved), "score": 0.5,
                                                       "model_version": "v1"})
    submitted = {tid: labelstudio.submit_annotation(ls_client, tid, regions(*gt[file_of[tid]]))["id"]
                 for tid in ids[:-1]}

    def exported(out, **kwargs):
        table, seen = EffortTable(decode_brush=labelstudio.brush_to_mask), []
        result = export_project(ls_client, project.id, out, fetcher=ls_fetcher, progress=False,
                                on_task=lambda t: (seen.append(t["id"]), table.add_task(t)), **kwargs)
        return result, sorted(seen), table.records()

    first, seen, _ = exported(tmp_path / "a")
    assert (first["listed_in_full"], first["reused"], first["tasks"]) == (6, 0, 6) and seen == ids[:-1]
    again, seen, effort = exported(tmp_path / "a")
    assert (again["listed_in_full"], again["reused"], again["changed"]) == (0, 6, False) and seen == ids[:-1]
    assert {r["model_version"]: r["tasks"] for r in effort} == {"v1": 3, "(no prediction shown)": 3}

    # a correction, a deleted annotation, a prediction on a labeled task, and a newly labeled task
    im, boxes = gt[file_of[ids[0]]]
    ls_client.annotations.update(id=submitted[ids[0]], result=regions(im, boxes[:1]))
    ls_client.annotations.delete(id=submitted[ids[1]])
    labelstudio.create_prediction(ls_client, ids[4], {"result": [], "score": 0.1, "model_version": "v2"})
    labelstudio.submit_annotation(ls_client, kept_out, regions(*gt[file_of[kept_out]]))

    after, seen, effort = exported(tmp_path / "a")
    assert (after["listed_in_full"], after["reused"], after["tasks"]) == (3, 3, 6)  # ids 0, 4 and the new one
    assert seen == [t for t in ids if t != ids[1]]
    full, full_seen, full_effort = exported(tmp_path / "b", incremental=False)
    assert (full["listed_in_full"], full["reused"]) == (6, 0) and full_seen == seen and full_effort == effort
    for name in ("train.json", "val.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    train = json.loads((tmp_path / "a" / "train.json").read_text())
    val = json.loads((tmp_path / "a" / "val.json").read_text())
    anns = [a for a in train["annotations"] + val["annotations"] if a["image_id"] == ids[0]]
    assert len(anns) == 1  # the correction, not the annotation as first submitted

    # one task of six changed: read by its id, not by paging through the project
    im, boxes = gt[file_of[ids[2]]]
    ls_client.annotations.update(id=submitted[ids[2]], result=regions(im, boxes[1:]))
    after, seen, effort = exported(tmp_path / "a")
    assert (after["listed_in_full"], after["reused"], after["tasks"]) == (1, 5, 6)
    full, full_seen, full_effort = exported(tmp_path / "c", incremental=False)
    assert full_seen == seen and full_effort == effort
    for name in ("train.json", "val.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name
