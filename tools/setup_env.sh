#!/usr/bin/env bash
# Create or reuse the suite's virtual environment (idempotent: seconds when complete).
#
#   tools/setup_env.sh [VENV]          default VENV: .venv
#
# Environment:
#   PYTHON               interpreter that creates the venv (default: python3)
#   MIXPRO_CONSTRAINTS   pip constraints file pinning torch/torchvision
#                        (default: requirements/constraints.txt; point it at your own for another CUDA build)
#   MIXPRO_CACHE         cache outside the checkout, holding the built mmcv wheel
#                        (default: ${XDG_CACHE_HOME:-~/.cache}/mixpro-suite)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="${MIXPRO_CONSTRAINTS:-$ROOT/requirements/constraints.txt}"
PINS="$ROOT/requirements/pins.txt"
CACHE="${MIXPRO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mixpro-suite}"
MMCV_SPEC="$(grep -v '^#' "$ROOT/requirements/mmcv.txt" | head -n1)"
MMCV_VERSION="${MMCV_SPEC#mmcv==}"

[[ -f "$CONSTRAINTS" ]] || { echo "setup_env: constraints file not found: $CONSTRAINTS" >&2; exit 1; }

fingerprint="$(cat "$CONSTRAINTS" "$PINS" "$ROOT/requirements/mmcv.txt" "$ROOT/pyproject.toml" "$ROOT/tools/setup_env.sh" \
    | sha256sum | cut -c1-16)"
stamp="$VENV/.mixpro-setup-$fingerprint"
if [[ -f "$stamp" ]] && "$VENV/bin/python" -c "import mixpro, mmcv._ext" 2>/dev/null; then
    echo "setup_env: $VENV is complete ($fingerprint)"
    exit 0
fi

log() { echo "setup_env: $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check -c "$PINS")

log "installing torch/torchvision pinned by $CONSTRAINTS"
"${PIP[@]}" -c "$CONSTRAINTS" torch torchvision numpy setuptools

if "$PY" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
    log "mmcv $MMCV_VERSION with ops already installed"
else
    # The wheel's compiled ops are tied to the exact torch build and Python version.
    build_tag="$("$PY" -c 'import sys, torch; print(f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}")')"
    wheel_dir="$CACHE/wheels/mmcv-$MMCV_VERSION-$build_tag"
    mkdir -p "$CACHE/wheels"
    (
        # One build at a time per cache, even with several checkouts setting up at once.
        flock 9
        if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
            log "building mmcv $MMCV_VERSION with ops for $build_tag (once; about 15 min on 2 cores)"
            "${PIP[@]}" -c "$CONSTRAINTS" setuptools wheel ninja
            tmp="$(mktemp -d "$CACHE/wheels/.build.XXXXXX")"
            MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip wheel --quiet --no-build-isolation --no-deps \
                --no-binary mmcv -w "$tmp" "$MMCV_SPEC"
            mv "$tmp" "$wheel_dir"
            log "cached $(ls "$wheel_dir")"
        fi
    ) 9>"$CACHE/wheels/.lock"
    "${PIP[@]}" -c "$CONSTRAINTS" "$wheel_dir"/mmcv-*.whl
fi

log "installing the suite and its dependencies"
"${PIP[@]}" -c "$CONSTRAINTS" -e "$ROOT[mm,test]"

"$PY" -W ignore - <<'EOF'
import pkg_resources  # mmengine imports it at run time
import mmcv, mmcv.ops, mmdet, mmengine, mmseg, timm, torch, torchvision
from mixpro import MixPro, TransMix, ClsAttention
print(f"setup_env: torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, "
      f"mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}")
EOF
rm -f "$VENV"/.mixpro-setup-*
touch "$stamp"
log "ready: $VENV"
