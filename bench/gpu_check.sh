#!/usr/bin/env bash
# GPU check of the paper configuration (VGG19, 448/224, 2 parts, pretrained none, batch 32):
# eager fp32 against the fast path (bf16 autocast, channels_last, cudnn.benchmark, torch.compile),
# with images/s, model FLOPs per image, MFU against the GPU's dense bf16 peak, and peak memory.
# Finishes in under 5 minutes on one NVIDIA GPU (the compiled variant is skipped when time runs short).
#
#   bash bench/gpu_check.sh                 # results also in $OUT/gpu_bench.json (or ./gpu_bench.json)
#   bash bench/gpu_check.sh --device cpu --tiny --steps 2    # smoke test without a GPU
#
# Extra arguments go to bench/gpu_bench.py (see its --help). Environment: PYTHON (interpreter),
# GPU_CHECK_TIMEOUT (seconds, default 290).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY="$(command -v python3 || command -v python)"; fi
fi

# Without an installed package, map sgma.engine onto engine/ through a temporary shim.
if ! "$PY" -c "import sgma.engine.bench" >/dev/null 2>&1; then
  SHIM="$(mktemp -d)"
  trap 'rm -rf "$SHIM"' EXIT
  mkdir -p "$SHIM/sgma"
  cp "$REPO/sgma_ns/__init__.py" "$SHIM/sgma/__init__.py"
  ln -s "$REPO/engine" "$SHIM/sgma/engine"
  export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
fi

echo "== machine"
uname -srm
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || echo "nvidia-smi not found"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

JSON="${OUT:-.}/gpu_bench.json"
ARGS=("$@")
if [[ ${#ARGS[@]} -eq 0 ]]; then ARGS=(--batch 32 --steps 10 --warmup 3 --compile --budget-s 270); fi
echo "== bench/gpu_bench.py ${ARGS[*]} --json $JSON"
timeout "${GPU_CHECK_TIMEOUT:-290}" "$PY" "$REPO/bench/gpu_bench.py" "${ARGS[@]}" --json "$JSON"
