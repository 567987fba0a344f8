#!/usr/bin/env bash
# What the GPU machine lacks, packed into .pack/ (git-ignored; it travels with the working tree): run where a package
# index is reachable. Then `bash bench/gpu_check.sh` needs nothing else.
#   .pack/wheels/                      the wheels of the project's requirements the check imports and the machine lacks
#                                      (GPU_MACHINE.md), for CPython 3.12 manylinux x86-64 and for this interpreter
#   .pack/vgg16_conv_fp16.safetensors  VGG16's convolutional layers (LPIPS), half precision (bench/vgg16_pack.py)
# Prints the size of everything that travels: the working tree (tracked and untracked-not-ignored files) and .pack/.
# Only lpips is missing on the machine among what the check imports (cldm_nb.{config,data,diffusion,finetune,train,
# vqgan,weights}); the rest (pytorch-msssim, fastcore, flask, openslide, nbdev, execnb) serves modules it never imports.
#   bash bench/device_pack.sh [--limit-mib 64]
set -euo pipefail
cd "$(dirname "$0")/.."
limit=64
[ "${1:-}" = --limit-mib ] && limit=${2:?--limit-mib needs a number}
NEEDED=(lpips)
# each wheel's version range as settings.ini's requirements give it
reqs=$(sed -n 's/^requirements *= *//p' settings.ini)
specs=()
for name in "${NEEDED[@]}"; do
  spec=$(tr ' ' '\n' <<<"$reqs" | grep -i "^$name\([<>=!~ ]\|$\)" || true)
  [ -n "$spec" ] || { echo "device_pack: $name is not in settings.ini's requirements" >&2; exit 2; }
  specs+=("$spec")
done
mkdir -p .pack/wheels
for target in "cp312 manylinux x86-64" "this interpreter"; do
  if [ "$target" = "this interpreter" ]; then extra=(); else
    extra=(--python-version 3.12 --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64); fi
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps "${extra[@]}" -d .pack/wheels "${specs[@]}"
  echo "device_pack: wheels for $target: $(cd .pack/wheels && ls -1 *.whl | tr '\n' ' ')"
done
PYTHONPATH="$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}" python3 bench/vgg16_pack.py pack .pack/vgg16_conv_fp16.safetensors >/dev/null
# what travels: tracked + untracked-not-ignored files, and .pack/
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s+=$1} END {print s+0}')
pack=$(find .pack -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
python3 - "$tree" "$pack" "$limit" <<'PY'
import sys
from pathlib import Path
tree, pack, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
mib = lambda b: b / 2**20
for f in sorted(Path('.pack').rglob('*')):
    if f.is_file(): print(f"device_pack:   {f}  {mib(f.stat().st_size):.2f} MiB")
total = tree + pack
print(f"device_pack: travels {mib(total):.1f} MiB = working tree {mib(tree):.1f} MiB + .pack {mib(pack):.1f} MiB (limit {limit:g} MiB)")
sys.exit(0 if mib(total) <= limit else f"device_pack: {mib(total):.1f} MiB is over the {limit:g} MiB that may travel")
PY
