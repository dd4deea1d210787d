"""One rank of a distributed training step, started by torchrun (mmengine's `pytorch` launcher):

    python -m torch.distributed.run --nproc_per_node=N [--nnodes=M --node_rank=R --master_addr=HOST
        --master_port=PORT] -m train.launch SPEC.json

Every rank trains its share of each batch and takes part in the evaluation; rank 0 writes `result.json`.
The caller (stage=retrain) reads that file and alone evaluates, packages, registers and gates, so a version
is registered once however many processes trained it. `spec_command` builds the command and `write_spec`
the file, so the command a person runs on another node is the one the stage ran on this one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch.distributed as dist

from train.trainer import TrainSpec, train

RESULT = "result.json"
log = logging.getLogger(__name__)


def write_spec(spec: TrainSpec, path: Path) -> Path:
    data = asdict(spec)
    data.update(config=str(spec.config), data_root=str(spec.data_root), work_dir=str(spec.work_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def read_spec(path: Path) -> TrainSpec:
    data = json.loads(Path(path).read_text())
    data.update(config=Path(data["config"]), data_root=Path(data["data_root"]), work_dir=Path(data["work_dir"]))
    return TrainSpec(**data)


def spec_command(spec_file: Path, processes: int, nodes: int = 1, node_rank: int = 0,
                 master_addr: str = "127.0.0.1", master_port: int = 29500) -> list[str]:
    """torchrun for this spec (the interpreter that runs us, so the same environment)."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--nnodes={nodes}",
            f"--node_rank={node_rank}", f"--master_addr={master_addr}", f"--master_port={master_port}",
            "-m", "train.launch", str(spec_file)]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: torchrun ... -m train.launch SPEC.json (written by stage=retrain)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank %(process)d %(name)s: %(message)s")
    spec = read_spec(Path(argv[0]))
    spec.launcher = "pytorch"
    try:
        train(spec)
    finally:
        if dist.is_initialized():  # leave together: a rank that exits with gloo threads running aborts
            dist.barrier()
            dist.destroy_process_group()
    log.info("left the process group")
    return 0


def leave(code: int) -> None:
    """End a rank that has finished without the interpreter's finalization.

    Why: a rank whose training, result file and process group are all done has nothing left to run, but
    tearing down torch's C++ objects at interpreter exit can still abort it (std::terminate, SIGABRT: a
    known gloo teardown race, seen once here in a test run under load, after both ranks had logged their
    training), and torchrun then fails the whole training. Logs are flushed first; everything else this
    rank wrote is closed already."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main(sys.argv[1:]))
