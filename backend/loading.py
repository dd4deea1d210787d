"""Serve settings and model loaders: which model the server runs, in which runtime (torch or ONNX Runtime)
and precision, and where it comes from (a fixed checkpoint, or the version a registry alias points at,
followed by a watcher). Bulk pre-annotation loads models through the same loader."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from backend.auth import Credentials
from backend.masks import POLYGON_TOLERANCE
from backend.onnx_runtime import load_onnx
from backend.ort_session import PRECISIONS, check_precision
from backend.predictor import Predictor
from backend.quantize import read_check
from loop.clients.media import MediaConfig
from loop.common.device import select_device
from loop.common.errors import LoopError

log = logging.getLogger("backend")


@dataclass
class ServeSettings:
    checkpoint: str
    config: str | None = None
    img_size: int | None = None  # None: the model config's own input size
    device: str = "cpu"
    score_threshold: float = 0.3
    # Polygons around instance masks are simplified to this many percent of the image's longer side.
    polygon_tolerance: float = POLYGON_TOLERANCE
    batch_size: int | None = None  # None: 1 on CPU, 8 on CUDA
    fetch_workers: int = 8
    # Threads for the model (torch intra-op / ONNX Runtime intra-op); None: one per core. Several server
    # workers on one machine should share the cores: threads = cores / workers.
    threads: int | None = None
    ls_url: str | None = None
    api_key: str | None = None
    image_dir: str | None = None
    local_files_root: str | None = None
    allow_hosts: list[str] = field(default_factory=list)
    max_body_mb: float = 32.0
    trust_checkpoint: bool = False
    # torch, onnx (ONNX Runtime; RTMDet models) or auto (onnx where the model exports, else torch)
    runtime: str = "auto"
    # auto (int8 where the version's int8 check passed and the network runs on the CPU in ONNX Runtime, else
    # fp32), fp32, int8 (asked for: refused at start off the CPU), or bf16 (OpenVINO on a CPU with bfloat16 units)
    precision: str = "auto"
    # The acquisition score each prediction carries as its score (entropy, least_confidence, entropy_sum,
    # class_balanced_entropy, class_balanced_count; object_diverse and class_balanced_object_diverse: their
    # shortlist score, entropy_sum and class_balanced_entropy, since their batch order is bulk pre-annotation's),
    # so Label Studio's queue tab orders by it; None: the mean region score.
    queue_strategy: str | None = None
    # Serve a registry alias instead of a fixed checkpoint, and follow it.
    serve_alias: str | None = None
    tracking_uri: str | None = None
    model_name: str | None = None  # one line shared by every project; None: one line per project
    model_prefix: str = "labelloop"  # per-project lines are <model_prefix>-project-<id>
    projects: list[int] = field(default_factory=list)  # the projects served; empty: any
    max_models: int = 4  # per-project lines kept in memory
    poll_s: float = 5.0
    cache_dir: str | None = None
    # Start Training: retrain jobs run as `python -m loop.run stage=retrain <these overrides>`.
    work_dir: str | None = None
    retrain_overrides: list[str] | None = None
    # Who may call the backend (see backend/auth.py); from the environment only
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = None
    bearer_token: str | None = None

    def credentials(self) -> Credentials:
        return Credentials(self.basic_auth_user, self.basic_auth_pass, self.bearer_token)

    def media(self) -> MediaConfig:
        """Where this server's task images come from (its fetcher's settings)."""
        return MediaConfig(ls_url=self.ls_url, api_key=self.api_key,
                           image_dir=Path(self.image_dir) if self.image_dir else None,
                           local_files_root=Path(self.local_files_root) if self.local_files_root else None,
                           allow_hosts=list(self.allow_hosts))


def configure_threads(threads: int | None) -> None:
    """One thread pool does the model's work: torch and ONNX Runtime get `threads` (default one per core),
    OpenCV none of its own (its resize runs between forward passes, and its pool would fight the model's for
    the same cores), and image fetching/decoding threads mostly wait on I/O. Subnormal floats are flushed
    to zero: they can make small-weight models much slower, and change no detection."""
    import torch  # deferred: a light command that builds settings does not pay for it

    if threads:
        torch.set_num_threads(int(threads))
    torch.set_flush_denormal(True)
    cv2.setNumThreads(1)


def wanted_precision(precision: str, runtime: str, device: str) -> str:
    """The precision to try: `auto` means int8 where ONNX Runtime runs the network on the CPU (served only if
    the version's int8 check passed, else fp32), fp32 elsewhere; anything else is taken as asked."""
    if precision != "auto":
        return precision
    return "int8" if runtime != "torch" and device == "cpu" else "fp32"


def model_loader(settings: ServeSettings):
    """load(checkpoint, version) -> a predictor for the configured runtime, precision, device and threads: the
    server and bulk pre-annotation load models the same way."""

    if settings.runtime not in ("auto", "onnx", "torch"):
        raise LoopError(f"backend.runtime={settings.runtime!r}: use auto, onnx or torch")
    device = select_device(settings.device)
    asked = wanted_precision(settings.precision, settings.runtime, device)
    if settings.precision not in ("auto", "fp32"):
        if settings.runtime == "torch" and asked in PRECISIONS:
            raise LoopError(f"backend.precision={asked} runs in ONNX Runtime: use backend.runtime=onnx")
        # asked for explicitly: refuse at start rather than fall back to torch in fp32 without saying so
        check_precision(asked, device)

    configure_threads(settings.threads)

    def load(checkpoint: str, version: str | None = None):
        predictor = Predictor.load(checkpoint, settings.config, settings.device, version=version,
                                   trust_checkpoint=settings.trust_checkpoint, batch_size=settings.batch_size,
                                   score_threshold=settings.score_threshold, img_size=settings.img_size)
        if settings.runtime == "torch":
            return predictor

        cache = Path(settings.cache_dir or Path.home() / ".cache" / "labelloop") / "onnx"
        onnx_file, precision, refused = Path(checkpoint).with_name("model.onnx"), asked, ""
        if precision == "int8":  # the version's checked int8 network, else fp32 and /health says why
            int8, refused = read_check(Path(checkpoint).parent)
            onnx_file, precision = (int8, "int8") if int8 else (onnx_file, "fp32")
            if refused:
                (log.info if settings.precision == "auto" else log.warning)(
                    "serving %s in fp32, not int8: %s", predictor.version, refused)
        try:
            detector = load_onnx(predictor, cache, score_threshold=settings.score_threshold, onnx_file=onnx_file,
                                 threads=settings.threads, precision=precision)
            # asked for int8 and not given it is a refusal; auto serving fp32 is the normal case, noted
            detector.precision_refused = (refused or None) if settings.precision == "int8" else None
            detector.precision_note = (refused or None) if settings.precision == "auto" else None
            return detector
        except LoopError as exc:
            if settings.runtime == "onnx" or settings.precision not in ("auto", "fp32"):
                raise
            log.info("serving %s with torch: %s", predictor.version, exc)
            return predictor

    return load
