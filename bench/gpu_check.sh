#!/usr/bin/env bash
# GPU checks (issue 20): supernet training throughput with AMP + channels_last, the evaluator pool's scaling
# (1/2/4/8 actors) and a short one-shot truth run, each figure written under $OUT (default runs/gpu_check).
# Without CUDA it says so and exits 0 (nothing to check). Budget: under 10 minutes on one GPU.
#   bash bench/gpu_check.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${1:-${OUT:-runs/gpu_check}}"
rc=0
python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)" || rc=$?
if [ "$rc" -eq 3 ]; then
  echo "gpu_check: no CUDA device here; skipped (nothing measured)"
  exit 0
elif [ "$rc" -ne 0 ]; then
  echo "gpu_check: python cannot import torch; activate the project's environment first" >&2
  exit 2
fi
mkdir -p "$OUT"
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
echo "== supernet throughput (fp32, then AMP; channels_last on CUDA)"
timeout 120 python bench/supernet_throughput.py --device cuda --batch-size 256 --steps 20 | tee "$OUT/throughput_fp32.txt"
timeout 120 python bench/supernet_throughput.py --device cuda --batch-size 256 --steps 20 --amp | tee "$OUT/throughput_amp.txt"
echo "== evaluator scaling (1/2/4/8 actors)"
timeout 180 python bench/eval_scaling.py --actors 1 2 4 8 --n 64 | tee "$OUT/eval_scaling.txt"
echo "== one-shot truth (short: 10k images, 3 epochs, 100 random + 50 top cells)"
timeout 240 python bench/oneshot_truth.py --device cuda --images 10000 --epochs 3 --channels 16 --cells 1 \
  --random 100 --top 50 --max-val 1000 --threads 4 --out "$OUT/oneshot_truth.csv" | tee "$OUT/oneshot_truth.txt"
echo "figures in $OUT"
