#!/usr/bin/env bash
# One-shot GPU check of the paper preset on the built-in sample: U-Net and VQ-GAN step times, FLOPs, share of the
# bf16 peak and memory at batch 16 and the largest batch that fits; one K of the sweep extrapolated to the paper's
# epochs; the chapters' #| gpu cells and a tiny `cldm run`, timed (bench/gpu_check.py; about 8 min on an H200).
#   bash bench/gpu_check.sh [--json PATH] [--peak-tflops T] ...     # on a GPU
#   bash bench/gpu_check.sh --dry-run                                # on the CPU in a few minutes (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python bench/gpu_check.py "$@"
