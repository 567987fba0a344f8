#!/usr/bin/env bash
# CI's proof that the GPU check starts in one shot on a bare machine, on the CPU: packs what the GPU machine lacks
# (bench/device_pack.sh, which also fails when what travels exceeds 64 MiB), builds a virtualenv that sees only the
# packages the GPU machine has (GPU_MACHINE.md; this machine's CPU builds, linked, not copied; no index; cldm_nb not
# installed), runs `bash bench/gpu_check.sh --dry-run` there to its end, checks that every section's JSON line is in
# the output folder and none failed, then runs bench/test_gpu_check.py. Exits non-zero on any failure.
#   bash bench/bare_check.sh [OUT_DIR]        # default: a temporary folder
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/bare-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=${1:-$work/out}
t0=$SECONDS
# the GPU machine's Python packages (GPU_MACHINE.md)
GPU_PACKAGES="absl-py accelerate aiohttp attrs certifi click cloudpickle contourpy cycler einops filelock fonttools fsspec
h5py huggingface-hub idna imageio jinja2 joblib kiwisolver lazy-loader lightning markdown markupsafe matplotlib mpmath
networkx ninja numpy opencv-python-headless packaging pandas pillow pip protobuf psutil pyarrow pygments pyparsing pytest
python-dateutil pytorch-lightning pyyaml regex requests rich safetensors scikit-image scikit-learn scipy seaborn
setuptools six sympy tensorboard threadpoolctl tifffile timm torch torchmetrics torchvision tqdm transformers triton
typing-extensions urllib3 werkzeug wheel"

echo "bare_check: packing (bench/device_pack.sh)"
bash bench/device_pack.sh

echo "bare_check: a virtualenv with the GPU machine's packages only"
python3 -m venv --without-pip "$work/venv"
site=$("$work/venv/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
python3 - "$site" $GPU_PACKAGES <<'PY'
"Link each listed distribution's top-level files and folders (as its RECORD names them) into the virtualenv's site-packages."
import importlib.metadata as md, os, re, sys
from pathlib import Path
site, names = Path(sys.argv[1]), sys.argv[2:]
norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()
dists = {norm(d.metadata['Name']): d for d in md.distributions()}
linked, absent = [], []
for name in names:
    d = dists.get(norm(name))
    if d is None: absent.append(name); continue
    root = Path(d.locate_file(''))
    for top in {Path(f).parts[0] for f in d.files or [] if not str(f).startswith('..')}:
        src, dst = root/top, site/top
        if src.exists() and not dst.exists(): os.symlink(src, dst)
    linked.append(name)
print(f"bare_check: {len(linked)} packages linked; not installed here (the check does not import them): {' '.join(absent) or 'none'}")
PY
base_path=$PATH
export PATH="$work/venv/bin:$PATH" PYTHONNOUSERSITE=1
unset PYTHONPATH
if (cd "$work" && { python3 -c 'import lpips' || python3 -c 'import cldm_nb'; } 2>/dev/null); then   # away from the tree
  echo "bare_check: the virtualenv is not bare (lpips or cldm_nb importable)" >&2; exit 1; fi

echo "bare_check: bash bench/gpu_check.sh --dry-run --out $out"
bash bench/gpu_check.sh --dry-run --out "$out"
PATH=$base_path

echo "bare_check: every section's JSON in $out"
PYTHONPATH="$ROOT:$ROOT/bench" python3 - "$out/gpu_check.jsonl" <<'PY'
import json, sys
import gpu_sections
expected = ['preflight', *gpu_sections.SECTIONS]
got = {r['section']: r for r in map(json.loads, open(sys.argv[1]))}
if missing := [s for s in expected if s not in got]: sys.exit(f"bare_check: no JSON for {missing} in {sys.argv[1]}")
if failed := {s: r['error'] for s, r in got.items() if 'error' in r}: sys.exit(f"bare_check: sections failed: {failed}")
print(f"bare_check: {len(expected)} sections, none failed")
PY

echo "bare_check: bench/test_gpu_check.py"
PYTHONPATH="$ROOT:$ROOT/bench" python3 bench/test_gpu_check.py
echo "bare_check: passed in $((SECONDS - t0)) s"
