"""Train an mmdet config on a COCO dataset with mmengine's Runner and evaluate it with CocoMetric.

The mmdet config file stays the source of truth for the model; this module only fills in what the loop
owns (data paths, class list, input size, schedule, device, starting weights), the way
`tools/train.py --cfg-options` would, so any mmdet 3.x config can be trained here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loop.common.device import select_device
from loop.common.errors import LoopError
from loop.common.model_config import segments, set_input_size, without_sync_bn
from train.start_weights import fitted_start

log = logging.getLogger(__name__)


@dataclass
class TrainSpec:
    config: Path
    data_root: Path
    train_ann: str
    val_ann: str
    work_dir: Path
    img_prefix: str = ""
    img_size: int | None = 256
    epochs: int = 30
    batch_size: int = 16
    lr: float = 0.004
    warmup_iters: int = 100
    num_workers: int = 1
    val_interval: int = 10
    # at least this many iterations: small labeled sets get more epochs (0: `epochs` as given)
    min_iters: int = 0
    # drop an epoch's last batch when it holds under half a batch (see `last_batch_dropped`)
    drop_small_last: bool = True
    load_from: str | None = None
    seed: int = 0
    device: str = "cpu"
    launcher: str = "none"  # "pytorch" under torchrun: mmengine's distributed training
    cfg_options: dict[str, Any] = field(default_factory=dict)


def read_classes(ann_file: Path) -> list[str]:
    """Class names in category-id order, as mmdet's CocoDataset maps them."""
    try:
        cats = json.loads(Path(ann_file).read_text())["categories"]
    except FileNotFoundError:
        raise LoopError(f"annotation file {ann_file} does not exist; for the demo data run "
                        "`python -m loop.run stage=demo_data` (setup does it once)") from None
    except (KeyError, json.JSONDecodeError) as exc:
        raise LoopError(f"{ann_file} is not a COCO annotation file ({exc})") from None
    if not cats:
        raise LoopError(f"{ann_file} has no categories; a COCO file needs at least one")
    return [c["name"] for c in sorted(cats, key=lambda c: c["id"])]


def count_images(spec: TrainSpec) -> int:
    """The number of images in the training annotations."""
    try:
        return len(json.loads((Path(spec.data_root) / spec.train_ann).read_text())["images"])
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise LoopError(f"cannot count the training images of {spec.train_ann} ({exc})") from None


def last_batch_dropped(images: int, batch_size: int, world_size: int = 1) -> bool:
    """Whether each epoch leaves out its last batch: where it holds fewer than half a batch and a full batch
    comes before it (each process gets ceil(images / world_size) images, as mmengine's DefaultSampler pads).

    Why: a last batch of one or two images takes a full optimiser step on statistics of those images alone.
    On 25 images in batches of 8 that step, every epoch, cost the models 8 to 23 mAP points (README "The
    last small batch"). The images left out change every epoch, since the order is shuffled."""
    per_process = -(-images // max(1, world_size))
    full, rest = divmod(per_process, batch_size)
    return full > 0 and 0 < 2 * rest < batch_size


def batches_per_epoch(images: int, batch_size: int, world_size: int = 1, drop_small_last: bool = True) -> int:
    """Iterations in one epoch over `images` (at least one), with the last batch left out where
    `last_batch_dropped` says so."""
    per_process = -(-images // max(1, world_size))
    batches = -(-per_process // batch_size)
    if drop_small_last and last_batch_dropped(images, batch_size, world_size):
        batches -= 1
    return max(1, batches)


def epochs_for(spec: TrainSpec, world_size: int = 1) -> int:
    """`spec.epochs`, or more where that gives fewer than `spec.min_iters` iterations on its training set.

    Why: a model learns from the number of updates more than from the number of passes over the data, and
    an active-learning loop's first rounds have few images: 60 epochs over 24 images are 180 iterations of
    8, over 72 images 540. Early models trained that briefly find little, and the next rounds start from
    them. A floor in iterations costs little where the data is small (the epochs are short)."""
    if spec.min_iters <= 0:
        return spec.epochs
    per_epoch = batches_per_epoch(count_images(spec), spec.batch_size, world_size, spec.drop_small_last)
    return max(spec.epochs, -(-spec.min_iters // per_epoch))


def set_num_classes(node: Any, n: int) -> None:
    """Every `num_classes` in an mmdet model config set to n (heads, assigners), as a dataset of n classes needs."""
    if isinstance(node, dict):
        if "num_classes" in node:
            node["num_classes"] = n
        for value in node.values():
            set_num_classes(value, n)
    elif isinstance(node, list):
        for value in node:
            set_num_classes(value, n)


def build_config(spec: TrainSpec, world_size: int = 1):
    """The mmengine Config that `Runner.from_cfg` trains (on `world_size` processes)."""
    from mmengine.config import Config

    if not spec.config.is_file():
        raise LoopError(f"mmdet config {spec.config} does not exist; set model.config=PATH to an mmdet 3.x config")
    cfg = Config.fromfile(str(spec.config))
    classes = read_classes(spec.data_root / spec.train_ann)
    set_num_classes(cfg.model, len(classes))

    for loader, ann, shuffle_split in ((cfg.train_dataloader, spec.train_ann, True),
                                       (cfg.val_dataloader, spec.val_ann, False),
                                       (cfg.test_dataloader, spec.val_ann, False)):
        ds = loader.dataset
        ds.data_root = str(spec.data_root)
        ds.ann_file = ann
        ds.data_prefix = dict(img=spec.img_prefix)
        ds.metainfo = dict(classes=tuple(classes))
        if spec.img_size:
            set_input_size(ds.pipeline, spec.img_size)
        loader.num_workers = spec.num_workers
        loader.persistent_workers = spec.num_workers > 0
        if shuffle_split:
            loader.batch_size = spec.batch_size
            _set_drop_last(loader, spec, world_size)
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = str(spec.data_root / spec.val_ann)
        evaluator.pop("proposal_nums", None)
    # The final evaluation also dumps its detections (test_preds.bbox.json) for plots and COCOeval.
    cfg.test_evaluator = dict(cfg.test_evaluator, outfile_prefix=str(spec.work_dir / "test_preds"))
    if spec.img_size:
        cfg.img_scale = (spec.img_size, spec.img_size)

    cfg.train_cfg.max_epochs = spec.epochs
    cfg.train_cfg.val_interval = max(1, min(spec.val_interval, spec.epochs))
    cfg.optim_wrapper.optimizer.lr = spec.lr
    cfg.param_scheduler = [  # mmdet's (and MMYOLO's RTMDet) schedule; other MMYOLO configs: _fit_own_hooks
        dict(type="LinearLR", start_factor=1.0e-3, by_epoch=False, begin=0, end=spec.warmup_iters),
        dict(type="CosineAnnealingLR", eta_min=spec.lr * 0.05, begin=spec.epochs // 2, end=spec.epochs,
             T_max=max(1, spec.epochs - spec.epochs // 2), by_epoch=True, convert_to_iter_based=True),
    ]
    _fit_own_hooks(cfg, spec)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=spec.epochs, max_keep_ckpts=1,
                                        save_last=True)
    cfg.work_dir = str(spec.work_dir)
    cfg.load_from = spec.load_from
    cfg.resume = False
    cfg.randomness = dict(seed=spec.seed)
    cfg.log_level = "ERROR"  # the console's; ConsoleProgressHook keeps INFO in the log file
    cfg.launcher = spec.launcher
    if spec.launcher != "none" and select_device(spec.device) == "cpu":
        # processes on CPU cores: gloo, and DDP without device ids (BN stays per process: SyncBN is GPU-only)
        cfg.env_cfg = dict(cfg.get("env_cfg", {}), dist_cfg=dict(backend="gloo"))
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
        cfg.model = without_sync_bn(cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model))
        if cfg.model.get("type") in ("RTMDet", "YOLODetector"):  # these convert to SyncBN themselves
            cfg.model.use_syncbn = False
    elif spec.launcher != "none":
        cfg.sync_bn = "torch"  # our configs use BN; several GPUs need SyncBN
    if spec.cfg_options:
        cfg.merge_from_dict(dict(spec.cfg_options))
    return cfg


def _set_drop_last(loader, spec: TrainSpec, world_size: int) -> None:
    """The training loader's drop_last, by `last_batch_dropped`; on the batch sampler where the config has
    one (mmdet's AspectRatioBatchSampler), since PyTorch refuses drop_last next to a batch sampler."""
    drop = spec.drop_small_last and last_batch_dropped(count_images(spec), spec.batch_size, world_size)
    if loader.get("batch_sampler"):
        loader.batch_sampler.drop_last = drop
    else:
        loader.drop_last = drop


def _fit_own_hooks(cfg, spec: TrainSpec) -> None:
    """What MMYOLO configs keep outside the pipeline and the schedule: their learning rate hook follows the
    recipe's schedule (no second scheduler), their pipeline switch the input size, and evaluation sees images
    one by one as they are served (no batch shapes tuned for 640 px batches)."""
    hook = cfg.default_hooks.get("param_scheduler") or {}
    if hook.get("type") == "YOLOv5ParamSchedulerHook":
        hook.update(max_epochs=spec.epochs, warmup_epochs=0, warmup_mim_iter=spec.warmup_iters)
        cfg.param_scheduler = None
    for custom in cfg.get("custom_hooks") or []:
        if spec.img_size and custom.get("switch_pipeline"):
            set_input_size(custom["switch_pipeline"], spec.img_size)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        if loader.dataset.get("batch_shapes_cfg"):
            loader.dataset.batch_shapes_cfg = None


def train(spec: TrainSpec) -> dict[str, Any]:
    """Train, then evaluate on the validation annotations; returns figures and the checkpoint path."""
    # Under torchrun, mmengine binds each process to its LOCAL_RANK GPU itself.
    device = select_device(spec.device) if spec.launcher == "none" else f"{spec.launcher} launcher"
    from mmengine.dist import get_rank, get_world_size
    from mmengine.runner import Runner

    from train.hooks import (  # defers mmengine (and torch) to the stages that train
        ConsoleProgressHook,
        EpochHistoryHook,
    )

    world_size = int(os.environ.get("WORLD_SIZE", 1))
    spec = replace(spec, epochs=epochs_for(spec, world_size))
    cfg = build_config(spec, world_size)
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    if spec.launcher != "none" and select_device(spec.device) == "cpu":
        join_cpu_process_group()
    start = None
    if spec.load_from:  # e.g. a COCO checkpoint for a project with other classes: fit it to this model
        cfg.load_from, start = fitted_start(spec.load_from, cfg.model, spec.work_dir)
    started = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    history = EpochHistoryHook()
    runner.register_hook(history)
    runner.register_hook(ConsoleProgressHook())
    with printed_to(spec.work_dir / "stdout.log"), stopping_workers(runner):
        runner.train()
        train_s = time.perf_counter() - started
        metrics = runner.test()
    total_s = time.perf_counter() - started
    checkpoint = spec.work_dir / f"epoch_{spec.epochs}.pth"
    result = {
        "device": device,
        "epochs": spec.epochs,
        "iterations": int(runner.iter),
        "train_s": round(train_s, 1),
        "total_s": round(total_s, 1),
        **_figures(metrics, spec.work_dir, segments(cfg)),
        "checkpoint": str(checkpoint),
        "work_dir": str(spec.work_dir),
        "history": history.history,
        "start_weights": start and {k: start[k] for k in ("checkpoint", "loaded", "fresh")},
        "processes": get_world_size(),
    }
    if get_rank() == 0:  # under torchrun every rank gets here; one writes
        (spec.work_dir / "result.json").write_text(json.dumps(result, indent=1))
    log.info("trained with world size %d: %d iterations in %.0f s; mmengine's log: %s", get_world_size(),
             runner.iter, train_s, runner.logger.log_file)
    return result


@contextmanager
def stopping_workers(runner) -> Iterator[None]:
    """Stop the runner's data loader worker processes when its work is done, or has failed.

    Why: the loaders keep their workers between epochs (persistent_workers), and a finished Runner is freed
    by Python's cycle collector, which closes the loaders' queues before the loaders themselves; their workers
    then never hear that they may stop, and PyTorch waits 5 s for each before killing it: 15 s after every
    training with one worker (the simulation's recipe), 60 s with four, spent inside the next training of the
    same process. Stopped here, while the queues are open, they exit at once."""
    try:
        yield
    finally:
        for name in ("_train_loop", "_val_loop", "_test_loop"):
            loader = getattr(getattr(runner, name, None), "dataloader", None)  # unbuilt loops are dicts
            workers = getattr(loader, "_iterator", None)
            if workers is not None and hasattr(workers, "_shutdown_workers"):
                workers._shutdown_workers()
                loader._iterator = None


def join_cpu_process_group() -> None:
    """Under torchrun on CPU cores: join the gloo process group before mmengine's Runner would, since its
    own initialisation binds each rank to a CUDA device."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def evaluate(spec: TrainSpec) -> dict[str, Any]:
    """COCO metrics of the weights in `spec.load_from` on `spec.val_ann` (no training)."""
    select_device(spec.device)
    from mmengine.runner import Runner

    from train.hooks import ConsoleProgressHook

    spec.work_dir.mkdir(parents=True, exist_ok=True)
    cfg = build_config(spec)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(ConsoleProgressHook())
    with printed_to(spec.work_dir / "stdout.log"), stopping_workers(runner):
        metrics = runner.test()
    return _figures(metrics, spec.work_dir, segments(cfg))


@contextmanager
def printed_to(path: Path) -> Iterator[None]:
    """What libraries print() while training and evaluating (pycocotools' "loading annotations…", "Running
    per image evaluation…") goes to this file instead of the console. Loggers keep their own streams."""
    with path.open("a") as sink, redirect_stdout(sink):
        yield


def _figures(metrics: dict[str, Any], work_dir: Path, masks: bool) -> dict[str, Any]:
    """COCO mAP and mAP@50 with the detections CocoMetric dumped; for instance segmentation models also
    segm mAP and the masks (`segmentations`, COCO RLE; a model that found nothing has no file), next to the
    boxes. NaN where CocoMetric had nothing to score."""
    figures = {"bbox_mAP": float(metrics.get("coco/bbox_mAP", float("nan"))),
               "bbox_mAP_50": float(metrics.get("coco/bbox_mAP_50", float("nan"))),
               "detections": str(work_dir / "test_preds.bbox.json")}
    if masks:
        figures.update(segm_mAP=float(metrics.get("coco/segm_mAP", float("nan"))),
                       segm_mAP_50=float(metrics.get("coco/segm_mAP_50", float("nan"))),
                       segmentations=str(work_dir / "test_preds.segm.json"))
    return figures
