"""Peak memory per rank of a diffusion phase whose training latents do not fit `cache_gb`.

Writes N synthetic uint8 tiles to a `.npy` file, then runs the smoke preset's joint stage (K = 2)
on them under `torchrun` with `cache_gb=0`: rank 0 encodes the latents once into
`ldm_latents.npy` in the stage folder (memory-mapped, written atomically), every rank maps the
tiles and the latents and trains a few steps. Each rank prints its peak resident memory
(`ru_maxrss`, which counts the pages of mapped files it touched, reclaimable page cache) and,
at the end, its private memory (`RssAnon`, what the process itself holds).

    python bench/latent_cache_rss.py                              # 100,000 tiles of 128 px, 2 ranks
    python bench/latent_cache_rss.py --tiles 20000 --nproc 1
"""
from __future__ import annotations
import argparse, os, re, resource, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_tiles(path: Path, n: int, size: int, chunk: int = 2048) -> None:
    "N uint8 tiles: 256 random ones repeated (enough texture for the encoder; the file is what matters)."
    base = np.random.default_rng(0).integers(0, 256, (256, size, size, 3), dtype=np.uint8)
    mm = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint8, shape=(n, size, size, 3))
    for i in range(0, n, chunk): mm[i:i + chunk] = base[np.arange(i, min(i + chunk, n)) % 256]
    mm.flush(); del mm


def worker(tiles_path: str, out: str, steps: int) -> None:
    "The smoke preset's joint stage on memory-mapped tiles, latents on disk; print this rank's memory."
    import torch
    from cldm_nb.diffusion import build_models, phase_trainer
    from cldm_nb.config import RunConfig
    from cldm_nb.vqgan import VQVAE
    from cldm_nb.train import seeded
    torch.set_num_threads(1)
    tiles = np.load(tiles_path, mmap_mode='r')
    cfg = RunConfig.smoke()
    with seeded(0): vq = VQVAE(cfg.vqgan).eval()
    ldm = cfg.for_k(2).replace(cache_gb=0.)
    t = time.perf_counter()
    tr = phase_trainer('ldm', *build_models(ldm, vq.cfg.z_channels), tiles, vq, ldm, out, device='cpu', progress=False)
    encoded = time.perf_counter() - t
    tr.fit(max_steps=steps)
    anon = int(re.search(r'RssAnon:\s+(\d+)', Path('/proc/self/status').read_text()).group(1)) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"RANK {tr.rank} peak_rss_gb {peak:.2f} rss_anon_gb {anon:.2f} latents_s {encoded:.0f} steps {tr.step}", flush=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tiles', type=int, default=100_000)
    ap.add_argument('--size', type=int, default=128, help='tile side (the pipeline takes 128-px tiles)')
    ap.add_argument('--nproc', type=int, default=2)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: worker(*a.worker, a.steps); sys.exit()
    from cldm_nb.distributed import torchrun_command
    with tempfile.TemporaryDirectory() as tmp:
        tiles = Path(tmp)/'tiles.npy'; write_tiles(tiles, a.tiles, a.size)
        args = [__file__, '--worker', str(tiles), str(Path(tmp)/'ldm'), '--steps', str(a.steps)]
        cmd = torchrun_command(a.nproc, args) if a.nproc > 1 else [sys.executable, *args]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)})
        if p.returncode: raise SystemExit(p.stderr[-3000:])
        lat = (Path(tmp)/'ldm'/'ldm_latents.npy').stat().st_size / 2**30
        print(f"{a.tiles:,} tiles of {a.size} px ({tiles.stat().st_size / 2**30:.2f} GiB), latents on disk {lat:.2f} GiB, "
              f"smoke preset joint stage, {a.nproc} rank(s), {a.steps} steps")
        print('\n'.join(sorted(l for l in p.stdout.splitlines() if l.startswith('RANK'))))
