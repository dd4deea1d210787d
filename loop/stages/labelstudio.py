"""stage=labelstudio: run a local Label Studio until Ctrl-C and print how to reach it."""

from __future__ import annotations

import logging
import re
import signal
import time
from pathlib import Path

from omegaconf import DictConfig

from loop.clients.ls_server import TOKEN_FILE
from loop.common.errors import LoopError
from loop.stages.adapters import labelstudio_server

log = logging.getLogger(__name__)


def run_stage(cfg: DictConfig) -> dict:
    server = labelstudio_server(cfg)
    with server:
        token = server.personal_access_token()
        masked = re.sub(r"(?<=.{12}).", "*", token)[:24] + "..."
        log.info("Label Studio: %s  (log in as %s)", server.url, server.username)
        log.info("personal access token in %s (%s): export LABEL_STUDIO_URL=%s LABEL_STUDIO_API_KEY=$(cat %s)",
                 Path(server.data_dir) / TOKEN_FILE, masked, server.url, Path(server.data_dir) / TOKEN_FILE)
        log.info("Ctrl-C stops it")
        try:
            while server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            log.info("stopping Label Studio")
        code = server.proc.returncode if server.proc else 0
    if code not in (None, 0, -signal.SIGTERM):
        raise LoopError(f"Label Studio stopped with code {code}; see {server.log_file}")
    return {"url": server.url}
