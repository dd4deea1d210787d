"""Benchmark: the loop's Label Studio I/O on big projects, and how each cost grows with the project.

    .venv/bin/python bench/scale_bench.py [--sizes 1000,10000,100000] [--compare-up-to 10000] [--checkpoint PATH]
                                          [--export-only]

For each size N, a fresh project in a real Label Studio (SQLite, its default) gets N tasks in bulk, small
demo images served from local files (LOCAL_FILES_DOCUMENT_ROOT, read by the loop straight from disk), half
of them with a submitted annotation. Then, measured in this process:
- export: `train.export.export_project` without downloads (sizes from the annotations), tasks/s: a first
  export (every task read in full), the same again with nothing changed, and again after 1 % of the tasks
  were newly labeled (what each retrain's export costs: only new or changed tasks are read in full); and the
  listing alone, every field (as before) against the fields the export names;
- scheduler poll: the project counters it reads, against listing the annotated tasks;
- pre-annotation of the unlabeled half: `stage=preannotate` as users run it (the demo model, registered in a
  temporary MLflow store), split into listing, inference and storing; and, on the first 300 of those tasks,
  the way it used to store (one request per prediction, then one per queue score);
- peak Python memory of each (tracemalloc): flat or growing with N.
Goals (issue): Label Studio I/O <= 10 % of pre-annotation, export >= 2,000 tasks/s, costs linear or better.
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

import loop.run  # noqa: E402,F401  (registers the ${repo:} resolver)
from loop.clients import labelstudio  # noqa: E402
from loop.clients.checkpoints import file_sha256  # noqa: E402
from loop.clients.ls_server import LabelStudioServer  # noqa: E402
from loop.clients.registry import DIGEST_TAG, Registry  # noqa: E402
from loop.common.demo_data import ensure  # noqa: E402
from loop.common.label_configs import rectangle_labels_config  # noqa: E402
from loop.common.paths import CONF_DIR, REPO_ROOT  # noqa: E402
from loop.common.regions import bbox_to_region  # noqa: E402
from loop.stages.preannotate import preannotate  # noqa: E402
from train.export import export_project  # noqa: E402

CLASSES = ["circle", "square", "triangle", "star"]


def measured(fn):
    """(result, seconds, peak MB of Python allocations) of fn()."""
    tracemalloc.stop()
    tracemalloc.start()
    t = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return result, seconds, peak


def make_tasks(images: list[Path], root: Path, n: int) -> list[dict]:
    """n tasks over the demo images (cycled), every second one with a submitted box."""
    tasks = []
    for i in range(n):
        image = images[i % len(images)]
        task = {"data": {"image": f"/data/local-files/?d={image.relative_to(root)}"}}
        if i % 2 == 0:
            task["annotations"] = [{"result": [bbox_to_region([8, 8, 40, 30], CLASSES[i % 4], 320, 240)]}]
        tasks.append(task)
    return tasks


def publish(registry: Registry, checkpoint: Path, tmp: Path) -> int:
    model = tmp / "published" / "model"
    model.mkdir(parents=True)
    shutil.copy(checkpoint, model / "model.pth")
    (model / "classes.json").write_text(json.dumps(CLASSES))
    with registry.run("scale-bench") as run:
        run.log_artifacts(model, "model")
    version = registry.register(run.run_id, {DIGEST_TAG: file_sha256(model / "model.pth")}).version
    registry.promote(version)
    return version


def old_store(client, tasks: list[dict], version: str) -> float:
    """Seconds per task the way pre-annotation stored before: one prediction per request, then the queue
    score written into each task's data (one more request each)."""
    t = time.perf_counter()
    for task in tasks:
        labelstudio.create_prediction(client, task["id"], {"result": [], "score": 0.5, "model_version": version})
        client.tasks.update(id=str(task["id"]), data=dict(task["data"], al_score=0.5))
    return (time.perf_counter() - t) / max(1, len(tasks))


def run_size(n: int, server, client, token_file: Path, images: list[Path], root: Path, checkpoint: Path,
             tmp: Path, compare: bool = True, export_only: bool = False) -> dict:
    """One project of n tasks. `compare`: also the ways before (the listing with every field, the scheduler
    reading a listing, one request per prediction), which take minutes at 100,000 tasks and say nothing new.
    `export_only`: import, export and the scheduler poll, no pre-annotation."""
    project = labelstudio.create_project(client, f"scale {n}", rectangle_labels_config(CLASSES))
    created, create_s, _ = measured(lambda: labelstudio.import_tasks(client, project.id, make_tasks(images, root, n)))
    row = {"tasks": created, "import_s": create_s}
    out = tmp / f"export-{n}"
    # a first export (every task read in full), the same again with nothing changed, then after 1 % of the
    # tasks were labeled: what each retrain's export costs. Timed without tracemalloc (it slows Python code
    # down); peak memory from the same two exports, traced, into a second directory.
    def timed_export() -> tuple[dict, float]:
        started = time.perf_counter()
        result = export_project(client, project.id, out, progress=False)
        return result, result["tasks"] / (time.perf_counter() - started)

    row["export_tasks_s"] = timed_export()[1]
    result, row["reexport_same_tasks_s"] = timed_export()
    row["reexport_same_listed"] = result["listed_in_full"]
    labeled = {tid for tid, _ in labelstudio.task_versions(client, project.id)}
    fresh = sorted(tid for tid, _ in labelstudio.task_versions(client, project.id, only_annotated=False)
                   if tid not in labeled)
    for tid in fresh[:max(10, n // 100)]:
        labelstudio.submit_annotation(client, tid, [bbox_to_region([8, 8, 40, 30], CLASSES[0], 320, 240)])
    result, row["reexport_changed_tasks_s"] = timed_export()
    row["reexport_changed_listed"] = result["listed_in_full"]
    traced = tmp / f"export-{n}-traced"
    row["export_peak_mb"] = measured(lambda: export_project(client, project.id, traced, progress=False))[2]
    row["reexport_peak_mb"] = measured(lambda: export_project(client, project.id, traced, progress=False))[2]
    if compare:  # the listing alone: every field, as before, against the fields the export names
        for label, include in (("all_fields", None), ("export_fields", labelstudio.EXPORT_FIELDS)):
            listed, seconds, _ = measured(lambda: sum(1 for _ in labelstudio.iter_tasks(  # noqa: B023
                client, project.id, only_annotated=True, include=include)))  # noqa: B023
            row[f"listing_{label}_tasks_s"] = listed / seconds
    polls = [measured(lambda: labelstudio.get_project(client, project.id)["num_tasks_with_annotations"])[1]
             for _ in range(5)]
    row["poll_counters_ms"] = 1000 * sorted(polls)[2]
    if compare:
        row["poll_listing_ms"] = 1000 * measured(lambda: labelstudio.list_tasks(client, project.id,
                                                                               only_annotated=True))[1]
    if export_only:
        return row

    store = tmp / f"mlflow-{n}"
    store.mkdir()
    uri, line = f"sqlite:///{store / 'mlflow.db'}", f"scale-{n}"
    publish(Registry(uri, line, artifact_location=(store / "artifacts").as_uri()), checkpoint, tmp / f"m{n}")
    overrides = ["stage=preannotate", f"labelstudio.url={server.url}", f"labelstudio.api_key_file={token_file}",
                 f"labelstudio.project_id={project.id}", f"work_dir={tmp / f'work-{n}'}",
                 f"registry.tracking_uri={uri}", f"registry.model_name={line}",
                 f"registry.artifact_location={(store / 'artifacts').as_uri()}",
                 f"backend.local_files_root={root}", "preannotate.batch_size=64"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    report, seconds, peak = measured(lambda: preannotate(cfg))
    io_s = report["list_s"] + report["store_s"]
    work_s = io_s + report["predict_s"]  # the stage less loading the model (registry download, ONNX export)
    row.update({"preannotated": report["predicted"], "preannotate_tasks_s": report["predicted"] / work_s,
                "preannotate_s": seconds, "list_s": report["list_s"], "predict_s": report["predict_s"],
                "store_s": report["store_s"], "ls_io_share": io_s / work_s, "preannotate_peak_mb": peak,
                "runtime": f"{report['runtime']} {report['precision']}"})
    if compare:
        # a fresh client: the long stages above can outlive the access token this one holds
        with labelstudio.session(server.url, token_file.read_text()) as renewed:
            unlabeled = [t for t in labelstudio.iter_tasks(renewed, project.id) if not t["annotations"]][:300]
            row["old_store_ms_per_task"] = 1000 * old_store(renewed, unlabeled, "old-way")
    row["new_store_ms_per_task"] = 1000 * report["store_s"] / max(1, report["predicted"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--checkpoint", default=None, help="default: the demo model the tests train")
    parser.add_argument("--compare-up-to", type=int, default=10000,
                        help="measure the ways before bulk I/O only for projects up to this many tasks")
    parser.add_argument("--export-only", action="store_true", help="import, export and poll; no pre-annotation")
    args = parser.parse_args()
    found = [Path(args.checkpoint)] if args.checkpoint else \
        [Path(p) for p in sorted(glob.glob(str(REPO_ROOT / "runs/test-cache/demo-model-*/model.pth")))]
    if not args.export_only and (not found or not found[0].exists()):
        sys.exit("no checkpoint: run `make test` once (it trains the demo model) or pass --checkpoint")
    demo = ensure(REPO_ROOT / "data" / "demo")
    images = sorted((demo / "images").glob("*.jpg"))[:200]
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        server = LabelStudioServer(venv=REPO_ROOT / ".venv-labelstudio", data_dir=tmp / "ls", local_files_root=demo)
        token_file = tmp / "token"
        with server, labelstudio.session(server.url, server.personal_access_token()) as client:
            token_file.write_text(server.personal_access_token())
            rows = []
            for n in [int(x) for x in args.sizes.split(",")]:
                row = run_size(n, server, client, token_file, images, demo, found[0] if found else None, tmp,
                               compare=n <= args.compare_up_to, export_only=args.export_only)
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                      flush=True)
        model = found[0] if found else "none (export only)"
        print(f"\nLabel Studio (SQLite) on {len(images)} demo images from local files; model {model}")
        keys = [("tasks", "tasks", "{:.0f}"), ("import_s", "bulk import s", "{:.1f}"),
                ("export_tasks_s", "export tasks/s: first (all read)", "{:.0f}"),
                ("reexport_same_tasks_s", "export tasks/s: again, nothing changed", "{:.0f}"),
                ("reexport_changed_tasks_s", "export tasks/s: again, 1 % newly labeled", "{:.0f}"),
                ("reexport_changed_listed", "  tasks read in full", "{:.0f}"),
                ("export_peak_mb", "export peak MB: first", "{:.1f}"),
                ("reexport_peak_mb", "export peak MB: again", "{:.1f}"),
                ("listing_all_fields_tasks_s", "listing tasks/s: every field (before)", "{:.0f}"),
                ("listing_export_fields_tasks_s", "listing tasks/s: the export's fields", "{:.0f}"),
                ("poll_counters_ms", "scheduler poll: counters ms", "{:.1f}"),
                ("poll_listing_ms", "scheduler poll: listing ms", "{:.0f}"),
                ("preannotate_s", "pre-annotation s (with model loading)", "{:.1f}"),
                ("preannotate_tasks_s", "pre-annotation tasks/s (loop)", "{:.1f}"),
                ("predict_s", "  inference s", "{:.1f}"), ("list_s", "  listing s", "{:.1f}"),
                ("store_s", "  storing s", "{:.1f}"), ("ls_io_share", "  Label Studio I/O share", "{:.1%}"),
                ("preannotate_peak_mb", "pre-annotation peak MB", "{:.1f}"),
                ("new_store_ms_per_task", "store ms/task: bulk", "{:.2f}"),
                ("old_store_ms_per_task", "store ms/task: per request + queue write", "{:.2f}")]
        print(f"{'':44}" + "".join(f"{r['tasks']:>12}" for r in rows))
        for key, name, fmt in keys[1:]:
            print(f"{name:44}" + "".join(f"{fmt.format(r[key]) if key in r else '-':>12}" for r in rows))
        if "runtime" in rows[0]:
            print(f"runtime: {rows[0]['runtime']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
