"""Benchmark: one retrain iteration on the demo data, and export throughput, against a real Label Studio.

    .venv/bin/python bench/retrain_bench.py [--epochs 24] [--tasks 300] [--export-tasks 2000]

Starts a Label Studio server (own temp data dir), uploads the demo pool images, submits their ground truth
through the SDK as annotators would, then runs `retrain` with the demo defaults and prints the wall time of
export / train / evaluate / register. Export throughput is measured without image download on a second
project of --export-tasks imported tasks that carry annotations.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

import loop.run  # noqa: E402,F401
from loop.al.oracle import coco_ground_truth, regions  # noqa: E402
from loop.clients import labelstudio  # noqa: E402
from loop.clients.annotator import project_from_coco, submit_ground_truth  # noqa: E402
from loop.clients.ls_server import TOKEN_FILE, LabelStudioServer  # noqa: E402
from loop.common.demo_data import ensure  # noqa: E402
from loop.common.paths import CONF_DIR, REPO_ROOT  # noqa: E402
from loop.stages.retrain import retrain  # noqa: E402
from train.export import export_project  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--export-tasks", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    demo = ensure(REPO_ROOT / "data" / "demo")
    tmp = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    with LabelStudioServer(venv=REPO_ROOT / ".venv-labelstudio", data_dir=tmp / "ls") as server, \
            labelstudio.session(server.url, server.personal_access_token()) as client:

        # Export throughput, no downloads: tasks imported with annotations already on them.
        labels, gt = coco_ground_truth(demo / "pool.json")
        items = list(gt.values())
        tasks = []
        for i in range(args.export_tasks):
            im, boxes = items[i % len(items)]
            tasks.append({"data": {"image": f"http://images.invalid/{i}.jpg"},
                          "annotations": [{"result": regions(im, boxes)}]})
        from loop.common.label_configs import rectangle_labels_config

        big = labelstudio.create_project(client, "export-throughput", rectangle_labels_config(labels))
        client.projects.import_tasks(big.id, request=tasks)
        t = time.perf_counter()
        res = export_project(client, big.id, tmp / "export-big", progress=False)  # no fetcher: no downloads
        export_s = time.perf_counter() - t
        print(f"export without download: {res['tasks']} tasks in {export_s:.2f} s = "
              f"{res['tasks'] / export_s:.0f} tasks/s (of which listing {res['fetch_s']:.2f} s)")

        project, gt, file_of = project_from_coco(client, demo / "pool.json", demo, args.tasks, "retrain-bench")
        submit_ground_truth(client, gt, file_of)
        # the token file the server keeps: a config names where the secret is, never the secret
        overrides = [f"labelstudio.url={server.url}",
                     f"labelstudio.api_key_file={Path(server.data_dir) / TOKEN_FILE}",
                     f"labelstudio.project_id={project.id}", f"work_dir={tmp / 'work'}",
                     f"train.epochs={args.epochs}", "stage=retrain"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        t = time.perf_counter()
        summary = retrain(cfg)
        total = time.perf_counter() - t
    print(json.dumps(summary, indent=1))
    print(f"retrain on {summary['train_images']} train / {summary['heldout_images']} held-out images, "
          f"{args.epochs} epochs, {torch.get_num_threads()} threads:")
    for k in ("export_s", "train_s", "evaluate_s", "register_s"):
        print(f"  {k[:-2]:<9} {summary[k]:7.1f} s")
    print(f"  total     {total:7.1f} s   held-out bbox mAP {summary['heldout_bbox_mAP']:.3f}, "
          f"mAP@50 {summary['heldout_bbox_mAP_50']:.3f}")


if __name__ == "__main__":
    main()
