"""Model-zoo configs by name: `rtmdet_m_8xb32-300e_coco` is the file of that name among the configs the
installed OpenMMLab packages ship (mmdet keeps them in `mmdet/.mim/configs/`), as the MMDetection / Label
Studio tutorials use them; a path is taken as it is. The packages are located, not imported."""

from __future__ import annotations

import difflib
import importlib.util
from functools import lru_cache
from pathlib import Path

from loop.common.errors import LoopError

PACKAGES = ("mmdet", "mmyolo")


@lru_cache(maxsize=None)
def _zoo() -> dict[str, Path]:
    """config name (file stem) -> file, over every installed package's `.mim/configs` (mmdet first)."""
    names: dict[str, Path] = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations))) / ".mim" / "configs"
        for path in sorted(root.rglob("*.py")):
            if "_base_" not in path.parts and not path.name.startswith("__"):
                names.setdefault(path.stem, path)
    return names


def resolve_config(name_or_path: str | Path) -> Path:
    """The config file for a path or a model-zoo name; LoopError naming the closest names when neither."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    stem = path.name[:-3] if path.name.endswith(".py") else path.name
    zoo = _zoo()
    if stem in zoo and (path.parent == Path(".") or zoo[stem].parent.name == path.parent.name):
        return zoo[stem]
    close = difflib.get_close_matches(stem, list(zoo), n=3, cutoff=0.6)
    hint = f"; model-zoo names like it: {', '.join(close)}" if close else ""
    raise LoopError(f"config {text} is neither a file nor a model-zoo config of the installed "
                    f"{'/'.join(PACKAGES)} packages{hint}. Pass a path to an mmdet 3.x config file or a name such "
                    "as rtmdet_m_8xb32-300e_coco")
