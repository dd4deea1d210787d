"""Command-line entry: `python -m loop.run stage=NAME key=value ...` (Hydra).

`run(cfg)` is the plain function tests call; `main()` is the thin Hydra wrapper. Composition errors
(unknown stage, unknown key, bad override syntax) are caught before Hydra starts, so the user gets one
line saying what to change instead of a stack trace.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from loop.common.errors import LoopError, UsageError
from loop.common.paths import CONF_DIR, REPO_ROOT, resolve
from loop.common.secrets import secret_overrides
from loop.stages.catalogue import catalogue, resolve_entry, usage

log = logging.getLogger("loop")

if not OmegaConf.has_resolver("repo"):
    OmegaConf.register_new_resolver("repo", lambda: str(REPO_ROOT))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the stage that `cfg.stage` names and return its figures."""
    if cfg.get("stage") is None:
        raise UsageError("no stage given\n" + usage())
    name = cfg.stage.name
    entry = resolve_entry(name)
    log.info("stage %s", name)
    result = entry(cfg) or {}
    log.info("stage %s done: %s", name, result)
    return result


def explain_composition_error(exc: Exception) -> str:
    """One line that says what is wrong with the command line and how to fix it."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "Could not find 'stage/" in text:
        bad = text.split("Could not find 'stage/", 1)[1].split("'", 1)[0]
        return f"unknown stage '{bad}'; available: {', '.join(catalogue())}"
    if "Could not find '" in text:
        group = text.split("Could not find '", 1)[1].split("'", 1)[0]
        return f"no config option '{group}' (see the files under conf/{group.split('/')[0]}/)"
    if "is not in struct" in text or "Could not override" in text:
        key = text.split("Could not override '", 1)[1].split("'", 1)[0] if "Could not override '" in text else "?"
        return (f"unknown config key '{key}'; check its spelling against `python -m loop.run stage=NAME --cfg job`"
                f" (add a new key with +{key}=VALUE)")
    if type(exc).__name__ == "OverrideParseException":
        return f"could not parse an override ({first}); write overrides as key=value, quoting lists: 'k=[1,2]'"
    return first


_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--experimental-rerun"}


def precheck(argv: list[str]) -> DictConfig | None:
    """Compose the config the way Hydra will; raise UsageError with one line if it cannot be composed."""
    if any(a in ("-h", "--help", "--hydra-help", "--info", "-m", "--multirun") or a.startswith("--info")
           for a in argv):
        return None  # Hydra's own flags: let Hydra handle them
    overrides, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in _FLAGS_WITH_VALUE:
            skip = True
        elif not a.startswith("-") and not a.startswith("hydra."):
            overrides.append(a)
    secrets = secret_overrides(overrides)
    if secrets:
        raise UsageError(f"{', '.join(secrets)} on the command line would be visible to every user of this machine "
                         "(ps) and saved under runs/hydra; set LABEL_STUDIO_API_KEY (or labelstudio.api_key_file="
                         "PATH to a file holding the token; LABEL_STUDIO_PASSWORD for the local server's password) "
                         "in the environment instead")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="loop"):
            return compose(config_name="config", overrides=overrides)
    except (HydraException, ValueError, KeyError) as exc:
        raise UsageError(explain_composition_error(exc)) from None


OURS = ("loop", "backend", "train", "__main__")  # the loggers whose INFO lines a person reads on the console


class LibraryInfoFilter(logging.Filter):
    """Lets through our own log lines and anyone's warnings and errors: the libraries' INFO lines (one per
    HTTP request from httpx, MLflow's and alembic's notes) are for the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] in OURS


def chatter_to_log_file() -> None:
    """Library chatter goes to the stage's log file under runs/hydra, not to the console a person reads:
    Python warnings (deprecation notices: pkg_resources, torch.cuda.amp, meshgrid, ...) and the libraries'
    INFO lines. Without a log file (Hydra's job logging turned off) everything stays on the console."""
    root = logging.getLogger()
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    if not files:
        return
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    warned.propagate = False
    for handler in files:
        warned.addHandler(handler)
    for handler in root.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.addFilter(LibraryInfoFilter())


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    logging.getLogger().setLevel(cfg.get("log_level", "INFO"))
    chatter_to_log_file()
    try:
        run(cfg)
    except LoopError as exc:
        log.error("%s", exc)
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        log.error("no space left while writing %s (%s): free disk space under %s or point work_dir elsewhere; "
                  "the stage stopped and registered nothing", exc.filename or "a file", exc.strerror,
                  resolve(cfg.work_dir))
        sys.exit(1)


# A full disk, a full quota, or a file over the process's size limit: the user frees space, nothing else.
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


# Nothing the loop starts phones home: MLflow's usage telemetry is off here and in every child process
# (servers, Start Training jobs, the MLflow UI), unless the user set these themselves. MLflow's progress bar
# for downloading a version's few files is off too: the console shows the loop's own steps.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def main(argv: list[str] | None = None) -> None:
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = precheck(argv)
        if cfg is not None and cfg.get("stage") is None:
            raise UsageError("no stage given\n" + usage())
    except LoopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    _hydra_main()


if __name__ == "__main__":
    main()
