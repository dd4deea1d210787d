#!/usr/bin/env bash
# Create or update the project environment in .venv/ (idempotent).
#
# Why a script and not just `pip install -e .`: mmcv has no Linux wheels on PyPI and must be built
# with its compiled ops against the torch that is installed (~12 min on 2 cores, cached afterwards),
# and that build needs torch, a setuptools that still has pkg_resources and ninja present *before* pip resolves the project.
#
# Environment knobs:
#   PYTHON=python3.11     interpreter used to create .venv (default: python3)
#   TORCH_SPEC=torch==…   torch to install when none is present (default: torch==2.13.0;
#                         install your CUDA build into .venv first to keep it)
#   MAX_JOBS=N            parallel compile jobs for mmcv (default: number of cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
MMCV_VERSION="2.1.0"
STAMP="$VENV/.labelloop-setup"

log() { printf '[setup] %s\n' "$*" >&2; }

inputs_hash() {
    cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1
}

# PostgreSQL (Debian's package): the team profile runs Label Studio and MLflow on it, and its test starts one.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing PostgreSQL (apt-get install postgresql)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q postgresql >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
    else
        log "PostgreSQL is missing: run \`sudo apt-get install postgresql\` (the team profile and its test need it)"
    fi
fi

# qemu-user (Debian's package): a test runs the int8 network on an emulated AVX2-only CPU (qemu-x86_64 -cpu
# Haswell), so every host checks what CPUs without VNNI compute.
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing qemu-user (apt-get install qemu-user)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q qemu-user >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q qemu-user >/dev/null; }
    else
        log "qemu-user is missing: run \`sudo apt-get install qemu-user\` (the int8 test on an AVX2-only CPU needs it)"
    fi
fi

if [ ! -x "$PY" ]; then
    log "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

want="$(inputs_hash)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$PY" -c "import mmcv.ops, mmdet, loop, backend, train" 2>/dev/null; then
    log "environment is up to date ($VENV)"
    exit 0
fi

PIP=("$PY" -m pip --disable-pip-version-check)
export PIP_CONSTRAINT="$ROOT/constraints.txt"

log "build tools"
"${PIP[@]}" install -q --upgrade "pip>=23.2" setuptools wheel ninja

if ! "$PY" -c "import torch" 2>/dev/null; then
    log "installing $TORCH_SPEC"
    "${PIP[@]}" install -q "$TORCH_SPEC"
fi
log "torch $("$PY" -c 'import torch; print(torch.__version__)')"

if ! "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
    # The compiled ops are tied to the torch they were built against, so the wheel is kept per torch build.
    torch_tag="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
    wheelhouse="${XDG_CACHE_HOME:-$HOME/.cache}/labelloop/wheels/mmcv-$MMCV_VERSION-torch-$torch_tag"
    if ! ls "$wheelhouse"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
        log "building mmcv $MMCV_VERSION with compiled ops against torch $torch_tag"
        log "(about 12 min on 2 cores, once per machine and torch build; kept in $wheelhouse)"
        mkdir -p "$wheelhouse"
        MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${PIP[@]}" wheel -q --no-deps --no-build-isolation --no-cache-dir -w "$wheelhouse" "mmcv==$MMCV_VERSION"
    fi
    "${PIP[@]}" install -q --force-reinstall --no-deps "$wheelhouse"/mmcv-"$MMCV_VERSION"-*.whl
fi

log "installing the project and its pinned dependencies"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[dev]"

"$PY" - <<'PY'
import cv2, mmcv, mmcv.ops, mmdet, mmengine, torch
print(f"[setup] ok: torch {torch.__version__}, mmcv {mmcv.__version__} (ops), mmdet {mmdet.__version__}, "
      f"mmengine {mmengine.__version__}, cv2 {cv2.__version__}")
PY
echo "$want" > "$STAMP"
