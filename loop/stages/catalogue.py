"""The stage catalogue: each `conf/stage/<name>.yaml` names a stage, a one-line summary and its entry point.

The YAML files are the single list of stages, so `python -m loop.run` can list them without importing
torch or mmdet, and a stage's code is imported only when that stage runs.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

import yaml
from omegaconf import DictConfig

from loop.common.errors import UsageError
from loop.common.paths import CONF_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    entry: str  # "package.module:function"


def catalogue() -> dict[str, Stage]:
    stages = {}
    for path in sorted((CONF_DIR / "stage").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        spec = spec.get("stage", spec)  # stages that pick recipes are global packages with a `stage:` node
        stages[path.stem] = Stage(path.stem, spec.get("summary", ""), spec.get("entry"))
    return stages


def usage() -> str:
    stages = catalogue()
    width = max(len(n) for n in stages)
    lines = ["usage: python -m loop.run stage=NAME [group=option] [key=value ...]", "", "stages:"]
    for s in stages.values():
        lines.append(f"  {s.name:<{width}}  {s.summary}")
    lines += ["", "Show a stage's full config without running it: python -m loop.run stage=NAME --cfg job"]
    return "\n".join(lines)


def resolve_entry(name: str) -> Callable[[DictConfig], dict[str, Any]]:
    stages = catalogue()
    if name not in stages:
        raise UsageError(f"unknown stage '{name}'; available: {', '.join(stages)}")
    module, _, func = stages[name].entry.partition(":")
    return getattr(importlib.import_module(module), func)
