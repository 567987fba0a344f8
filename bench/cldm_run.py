"""Time and peak memory of the main job, `cldm run`, stage by stage.

Runs `cldm run --preset cpu` (or another preset) on the shipped 195 KPC tiles (or `--data`) in a
fresh output folder, as a user would, in a child process so that its peak resident memory is its
own. Prints the per-stage wall times the run recorded in `timings.json`, the whole run's wall
time and the child's peak RSS, each beside its budget (cpu preset on 2 CPU cores: ≤ 15 minutes,
< 4 GB) as a ratio.

    python bench/cldm_run.py                       # cpu preset, the built-in sample, CPU
    python bench/cldm_run.py --preset smoke --keep runs/bench-smoke
"""
from __future__ import annotations
import argparse, json, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

from cldm_nb.run import Run

BUDGET_S, BUDGET_GB = 900., 4.


def run(preset: str, data: str | None, out: Path, device: str) -> tuple[float, float]:
    "Run `cldm run` in a child process; its wall seconds and peak RSS in GB."
    cmd = [sys.executable, '-c', 'from cldm_nb.cli import main; main()', 'run', '--preset', preset,
           '--device', device, '--out', str(out)] + (['--data', data] if data else [])
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode: raise SystemExit(f"cldm run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(proc.stdout.strip())
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9   # Linux: KiB


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='cpu', help='cpu (default), tiny, smoke or paper')
    ap.add_argument('--data', default=None, help='folder of tiles or .npy (default: the built-in sample)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--keep', default=None, help='write the run here and keep it (default: a temporary folder)')
    args = ap.parse_args()
    tmp = None if args.keep else tempfile.mkdtemp(prefix='cldm-bench-')
    out = Path(args.keep or tmp) / 'run'
    try:
        wall, rss = run(args.preset, args.data, out, args.device)
        timings = json.loads((out / 'timings.json').read_text())
        k = Run.open(out).k
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ncldm run --preset {args.preset} ({args.device}); chosen K = {k}")
    print(f"{'stage':<40}{'seconds':>9}{'share':>8}")
    for name, s in timings['stages'].items(): print(f"{name:<40}{s:9.1f}{100 * s / wall:7.0f}%")
    print(f"{'whole run (wall, incl. start-up)':<40}{wall:9.1f}   budget {BUDGET_S:.0f} s: {wall / BUDGET_S:.2f}× of it")
    print(f"{'peak RSS of the run':<40}{rss:8.2f} GB  budget {BUDGET_GB:.0f} GB: {rss / BUDGET_GB:.2f}× of it")


if __name__ == '__main__': main()
