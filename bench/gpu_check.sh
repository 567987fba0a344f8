#!/usr/bin/env bash
# One-shot GPU check (bench/gpu_check.py): needs nothing but this working tree, .pack/ (bash bench/device_pack.sh) and
# a python3 with torch. Installs the packed wheels into a temporary folder (no index), puts it and the working tree on
# PYTHONPATH (cldm_nb is imported, not installed), and runs the check under one deadline; its figures go to $OUT
# (or --out): gpu_check.jsonl, one line per section as each ends, and gpu_check.log.
#   bash bench/gpu_check.sh [--out DIR] [--budget-s 360] ...     # on the GPU machine
#   bash bench/gpu_check.sh --dry-run [--out DIR]                # on the CPU (CI: bench/bare_check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
out=${OUT:-runs/gpu_check} budget=360
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --out) out=${args[i+1]:?--out needs a folder} ;;
    --out=*) out=${args[i]#--out=} ;;
    --budget-s) budget=${args[i+1]:?--budget-s needs seconds} ;;
    --budget-s=*) budget=${args[i]#--budget-s=} ;;
  esac
done
mkdir -p "$out"
[ -d .pack/wheels ] || { echo "gpu_check: no .pack/wheels; run 'bash bench/device_pack.sh' where a package index is reachable" >&2; exit 2; }
site=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")
trap 'rm -rf "$site"' EXIT
wheels=(.pack/wheels/*.whl)
python3 -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$site" "${wheels[@]}"
export PYTHONPATH="$site:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg OUT="$out"
# the deadline is the check's own; the hard stop a minute later catches a hung kernel
timeout -k 10 "$(python3 -c "print(int(float('$budget')) + 60)")" python3 bench/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
