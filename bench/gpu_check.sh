#!/usr/bin/env bash
# The GPU check in one call, at most ~6 minutes on one GPU, from a bare machine holding only this repo:
#   bash bench/gpu_check.sh            → ${OUT:-bench}/gpu_check.json (+ gpu_check.log beside it)
# 1. a venv (system site packages visible, so an image's CUDA torch is reused); if it has no torch that
#    sees CUDA: torch==2.14.1 torchvision==0.29.1 from local wheels only ($TORCH_WHEELS, default .whl/),
#    never a download; 2. fcnlib editable, offline; 3. bench/gpu_check.py under `timeout`.
# Without CUDA the JSON says "ran": false and why (exit 0). Knobs: GPU_CHECK_SECONDS (360),
# GPU_CHECK_VENV (${TMPDIR:-/tmp}/fcn-gpu-venv-<uid>; an existing venv is reused only if it is yours and
# not a link: another user's would run their code), PYTHON (python3), TORCH_WHEELS.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUTDIR="${OUT:-bench}"
mkdir -p "$OUTDIR"
JSON="$OUTDIR/gpu_check.json"
TOTAL="${GPU_CHECK_SECONDS:-360}"
VENV="${GPU_CHECK_VENV:-${TMPDIR:-/tmp}/fcn-gpu-venv-$(id -u)}"
if [ -L "$VENV" ] || { [ -e "$VENV" ] && [ ! -O "$VENV" ]; }; then
  echo "error: $VENV is a link or not owned by you; remove it or set GPU_CHECK_VENV to a folder of your own" >&2
  exit 2
fi
WHEELS="${TORCH_WHEELS:-.whl}"
START=$(date +%s)
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

main() {
  echo "== gpu_check.sh $(date -u +%FT%TZ) on $(hostname); budget ${TOTAL}s"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  if [ ! -x "$VENV/bin/python" ]; then
    timeout 60 "${PYTHON:-python3}" -m venv --system-site-packages "$VENV" || { echo "cannot create $VENV"; return 2; }
  fi
  local py="$VENV/bin/python"
  if ! timeout 60 "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "== no torch with CUDA in $VENV: installing torch==2.14.1 torchvision==0.29.1 from $WHEELS (local only)"
    if [ -d "$WHEELS" ]; then
      timeout 240 "$py" -m pip install -q --no-index --find-links "$WHEELS" torch==2.14.1 torchvision==0.29.1 \
        || echo "   local install failed: gpu_check.py will report what it finds"
    else
      echo "   no wheel folder $WHEELS: skipped (set TORCH_WHEELS to a folder of wheels)"
    fi
  fi
  echo "== fcnlib (editable, offline)"
  timeout 120 "$py" -m pip install -q --no-index --no-build-isolation -e . 2>/dev/null \
    || timeout 120 "$py" -m pip install -q --no-index --no-build-isolation --no-deps -e . \
    || echo "   pip install -e . failed; running from the source tree (PYTHONPATH)"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  local t; t=$(left)
  if [ "$t" -lt 60 ]; then echo "setup used the time budget"; return 3; fi
  echo "== bench/gpu_check.py (${t}s left)"
  if ! timeout 60 "$py" -c "import torch" 2>/dev/null; then
    printf '{"ran": false, "reason": "no importable torch in %s: nothing was run"}\n' "$VENV" > "$JSON"
    echo "[gpu_check] NOT RUN: no importable torch; wrote $JSON"; return 0
  fi
  timeout --kill-after=15 $(( t - 10 )) "$py" bench/gpu_check.py --out "$JSON" --budget-s $(( t - 90 ))
  local rc=$?
  [ "$rc" -eq 124 ] && echo "[gpu_check] timed out after $(( t - 10 ))s: $JSON holds the cases that finished"
  return "$rc"
}

main 2>&1 | tee "$OUTDIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
