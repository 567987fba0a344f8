#!/usr/bin/env python
"""Runs written by the last release still work with this checkout (run by `.ci/run`).

    python tools/release_compat.py                 # the release named by cldm_nb.checkpoints.RETIRED_AFTER
    python tools/release_compat.py --release v0.1.0 --keep /tmp/compat

The release's code is checked out as a git worktree in a temporary folder and makes a run
there: `cldm run --preset smoke --k 2` on the built-in sample, one thread. Then, with this
checkout:
1. `cldm sample` on that run folder (the release's checkpoints and config) gives the same tiles
   as the release's own `cldm sample`;
2. the folder, with finetune-2 and everything after it removed, resumes (`cldm run --config` its
   own config.json) and reaches the same metrics as the release's run.
About 5 minutes on 2 cores. Exits 1 naming what differs.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLDM = ['-c', 'from cldm_nb.cli import main; main()']
KEEP = {'config.json', 'manifest.json', 'validity.csv', 'validity.png'}   # the run's files before finetune-1 ends
COMMITS = {'v0.1.0': 'c13468c'}          # a release's commit, for clones without its tag


def cldm(code: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    "`cldm ARGS` with the package at `code` (a checkout), one thread, as a subprocess."
    env = {**os.environ, 'PYTHONPATH': str(code), 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, *CLDM, *map(str, args)], cwd=code, env=env, capture_output=True, text=True)
    if check and r.returncode: raise SystemExit(f"cldm {' '.join(map(str, args))} with {code} failed:\n{r.stderr[-3000:]}")
    return r


def numbers(d, prefix: str = '') -> dict[str, float]:
    "The numeric leaves of a nested dict, by dotted key."
    if isinstance(d, dict): return {k: v for key, x in d.items() for k, v in numbers(x, f'{prefix}{key}.').items()}
    if isinstance(d, list): return {k: v for i, x in enumerate(d) for k, v in numbers(x, f'{prefix}{i}.').items()}
    return {prefix[:-1]: float(d)} if isinstance(d, (int, float)) and not isinstance(d, bool) else {}


def tiles(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert('RGB')) for p in sorted(folder.glob('*.png'))])


def release_run(release: str, tmp: Path) -> tuple[Path, Path]:
    "The release's worktree and the smoke run it made (with 4 tiles it sampled in `run/sampled_by_release`)."
    code = tmp/'release'
    have = lambda ref: subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--verify', '-q', f'{ref}^{{commit}}'], capture_output=True).returncode == 0
    ref = next((r for r in (release, COMMITS.get(release)) if r and have(r)), None)
    if ref is None: raise SystemExit(f"{release}: neither the tag nor its commit is in this clone; `git fetch --tags --unshallow` first.")
    subprocess.run(['git', '-C', str(ROOT), 'worktree', 'add', '--detach', str(code), ref], check=True, capture_output=True)
    run = tmp/'run'
    cldm(code, 'run', '--preset', 'smoke', '--k', '2', '--out', run, '--data', code/'cldm_nb'/'assets'/'kpc_tiles')
    cldm(code, 'sample', '--run', run, '--out', run/'sampled_by_release', '--cluster', 0, '--n', 4, '--seed', 3)
    return code, run


def check(release: str, tmp: Path) -> list[str]:
    "What differs between the release and this checkout on the release's run folder."
    code, run = release_run(release, tmp)
    problems = []
    cldm(ROOT, 'sample', '--run', run, '--out', tmp/'sampled_here', '--cluster', 0, '--n', 4, '--seed', 3)
    diff = np.abs(tiles(tmp/'sampled_here').astype(int) - tiles(run/'sampled_by_release').astype(int)).max()
    print(f"cldm sample on the {release} run: largest pixel difference from the release's own tiles {diff}")
    if diff > 1: problems.append(f"cldm sample: tiles differ from the release's by up to {diff} grey levels")

    before = json.loads((run/'metrics.json').read_text())
    resumed = tmp/'resumed'; shutil.copytree(run, resumed)
    for p in resumed.iterdir():
        if p.is_file() and p.name not in KEEP: p.unlink()
        elif p.name in ('generated', 'sampled_by_release'): shutil.rmtree(p)
    for p in resumed.glob('k*/finetune2*'): p.unlink()
    cldm(ROOT, 'run', '--config', resumed/'config.json', '--out', resumed, '--data', code/'cldm_nb'/'assets'/'kpc_tiles')
    a, b = numbers(before), numbers(json.loads((resumed/'metrics.json').read_text()))
    changed = {k: (a[k], b.get(k)) for k in a if 'time' not in k and 'seconds' not in k and not np.isclose(a[k], b.get(k, np.nan), rtol=1e-4, atol=1e-6)}
    print(f"resumed from finetune-1 of the {release} run: {len(a) - len(changed)} of {len(a)} metrics as the release reached them")
    problems += [f"metric {k}: {x} ({release}) vs {y} (here)" for k, (x, y) in changed.items()]
    return problems


if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    from cldm_nb.checkpoints import RETIRED_AFTER
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--release', default=RETIRED_AFTER); p.add_argument('--keep', help='work here and keep the folder')
    a = p.parse_args()
    tmp = Path(a.keep or tempfile.mkdtemp(prefix='cldm-compat-')); tmp.mkdir(parents=True, exist_ok=True)
    try: problems = check(a.release, tmp)
    finally:
        subprocess.run(['git', '-C', str(ROOT), 'worktree', 'remove', '--force', str(tmp/'release')], capture_output=True)
        if not a.keep: shutil.rmtree(tmp, ignore_errors=True)
    print('\n'.join(['release compatibility FAILED:', *problems]) if problems else f'release compatibility: runs of {a.release} work here')
    sys.exit(1 if problems else 0)
