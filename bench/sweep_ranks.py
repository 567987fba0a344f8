"""The K sweep on 1 process against N: `cldm run --nproc N` gives each process its own Ks to train whole.

    python bench/sweep_ranks.py                       # smoke preset, K = 2…5, 40 sample tiles, 1 vs 2 processes
    python bench/sweep_ranks.py --preset tiny --k 3-6 --tiles 80

Runs the same `cldm run` twice in fresh folders on the CPU's cores: once as one process with a
thread per core, once under `torchrun` (`--nproc N`) with the cores split among the processes. Prints the sweep stage's wall time, each K's rank and training interval (from
`timings.json`), the ratio of the sweep times, and whether the validity tables and the chosen K agree.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import pandas as pd

from cldm_nb.data import load_tiles, sample_data
from cldm_nb.run import Run

def run(args: list[str], env: dict) -> float:
    "Run `cldm ARGS`, failing loudly; its wall time."
    t = time.time()
    p = subprocess.run(['cldm', *args], env=env, capture_output=True, text=True)
    if p.returncode: sys.exit(f"cldm {' '.join(args)} failed:\n{p.stderr[-3000:]}")
    return time.time() - t

def sweep_seconds(out: Path) -> float:
    "The K sweep stage's seconds from a run's timings.json."
    stages = json.loads((out/'timings.json').read_text())['stages']
    return next(v for k, v in stages.items() if k.startswith('joint LDM'))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--preset', default='smoke'); p.add_argument('--k', default='2-5')
    p.add_argument('--tiles', type=int, default=40); p.add_argument('--nproc', type=int, default=2)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp); np.save(tmp/'tiles.npy', load_tiles(sample_data())[:a.tiles])
        cores = os.cpu_count() or 1                          # the same cores for both: all threads in one process, or split
        common = ['run', '--data', str(tmp/'tiles.npy'), '--preset', a.preset, '--k', a.k, '--device', 'cpu', '--out']
        wall1 = run([*common, str(tmp/'one')], dict(os.environ, OMP_NUM_THREADS=str(cores)))
        wallN = run([*common, str(tmp/'many'), '--nproc', str(a.nproc)], dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // a.nproc))))
        one, many = sweep_seconds(tmp/'one'), sweep_seconds(tmp/'many')
        print(f"K sweep ({a.preset}, K = {a.k}, {a.tiles} tiles, {cores} cores):")
        print(f"  1 process, {cores} threads   : {one:7.1f} s   (whole run {wall1:.0f} s)")
        print(f"  {a.nproc} processes, {max(1, cores // a.nproc)} thread(s) each: {many:7.1f} s   (whole run {wallN:.0f} s)   ratio {many / one:.2f}")
        for k, t in json.loads((tmp/'many'/'timings.json').read_text())['sweep'].items():
            print(f"    K = {k}: rank {t['rank']}, {t['start']:6.1f} … {t['end']:6.1f} s")
        v1, vN = (pd.read_csv(tmp/d/'validity.csv', index_col='K').drop(columns=['kid', 'kid_std', 'accuracy'], errors='ignore')
                  for d in ('one', 'many'))
        diff = np.abs(v1.fillna(0).values - vN.fillna(0).values).max()
        k1, kN = (Run.open(tmp/d).k for d in ('one', 'many'))
        print(f"  validity tables: largest difference {diff:.3g} (threads per process differ, so do float paths; with equal "
              f"threads they agree to float rounding, 10_cli); chosen K: {k1} and {kN}")

if __name__ == '__main__': main()
