#!/usr/bin/env bash
# Install the Label Studio *server* in its own environment, .venv-labelstudio/ (idempotent).
#
# Why separate: label-studio pins setuptools>=83 (no pkg_resources, which mmengine needs at run time),
# and its own numpy/opencv pins; sharing .venv with mmdet breaks one or the other. The project talks
# to the server only over HTTP (label-studio-sdk), so nothing needs to import both.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LABEL_STUDIO_VENV:-$ROOT/.venv-labelstudio}"
PYTHON="${PYTHON:-python3}"
LS_VERSION="${LABEL_STUDIO_VERSION:-1.23.2}"

log() { printf '[setup-labelstudio] %s\n' "$*" >&2; }

if [ -x "$VENV/bin/label-studio" ] \
    && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" = "$LS_VERSION" ]; then
    log "label-studio $LS_VERSION is installed ($VENV/bin/label-studio)"
    exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
log "installing label-studio $LS_VERSION (about 1 GB, a few minutes the first time)"
unset PIP_CONSTRAINT
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "label-studio==$LS_VERSION"
log "installed label-studio $LS_VERSION in $VENV"
