"""Training throughput on 1 and on 2 CPU processes (one thread each), and the scaling efficiency.

Trains the tiny VQ-GAN (its BatchNorm discriminator on from the first step, so both optimisers and
the gradient averaging of both run every step) on synthetic tiles, the same global batch in both
cases: once as a plain process, once under `torchrun --nproc_per_node=2`, each process limited to
one thread. Prints tiles per second (timed inside `fit`, after start-up) and the efficiency
`throughput(2) / (2 × throughput(1))`; 1.0 would be perfect scaling. The two are measured in
turn `--repeats` times and the best of each kept, so that load from other programs on a shared
machine weighs on both alike.

    python bench/ddp_throughput.py                    # 64-px tiles, global batch 16, 24 steps
    python bench/ddp_throughput.py --size 128 --steps 40
"""
from __future__ import annotations
import argparse, os, re, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(out: str, size: int, batch: int, steps: int) -> None:
    "Train and, on rank 0, print the tiles per second of the `fit` call."
    import numpy as np
    from cldm_nb.vqgan import VQGANConfig, vqgan_trainer
    tiles = np.random.default_rng(0).integers(0, 256, (batch * steps, size, size, 3), dtype=np.uint8)
    cfg = VQGANConfig.tiny(disc_start=0, batch_size=batch, epochs=1, grid_n=2)
    tr = vqgan_trainer(tiles, cfg, out, device='cpu', progress=False)
    t = time.perf_counter(); tr.fit(); wall = time.perf_counter() - t
    if tr.rank == 0: print(f"THROUGHPUT {len(tiles) / wall:.3f} {tr.world}", flush=True)


def measure(nproc: int, size: int, batch: int, steps: int) -> float:
    "Tiles per second with `nproc` processes of one thread each."
    from cldm_nb.distributed import torchrun_command
    with tempfile.TemporaryDirectory() as out:
        args = [__file__, '--worker', out, '--size', str(size), '--batch', str(batch), '--steps', str(steps)]
        cmd = [sys.executable, *args] if nproc == 1 else torchrun_command(nproc, args)
        env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if p.returncode: raise SystemExit(f"{nproc} process(es) failed:\n{p.stderr[-3000:]}")
        return float(re.search(r'THROUGHPUT (\S+)', p.stdout).group(1))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', type=int, default=64, help='tile side in pixels')
    ap.add_argument('--batch', type=int, default=16, help='global batch (split over the processes)')
    ap.add_argument('--steps', type=int, default=24, help='optimiser steps timed')
    ap.add_argument('--repeats', type=int, default=2, help='measurements of each, alternating; the best is kept')
    ap.add_argument('--worker', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: worker(a.worker, a.size, a.batch, a.steps); sys.exit()
    print(f"tiny VQ-GAN + BatchNorm discriminator, {a.size}-px tiles, global batch {a.batch}, {a.steps} steps, CPU, 1 thread per process")
    runs = [(n, measure(n, a.size, a.batch, a.steps)) for _ in range(a.repeats) for n in (1, 2)]
    one, two = (max(t for n, t in runs if n == k) for k in (1, 2))
    print(f"| processes | tiles/s |\n|---|---|\n| 1 | {one:.1f} |\n| 2 | {two:.1f} |")
    print(f"speed-up {two / one:.2f}×, scaling efficiency {two / (2 * one):.0%} (2 processes; 100% = twice the throughput)")
