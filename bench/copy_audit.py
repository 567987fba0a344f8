"""Time the copy audit (`cldm_nb.audit.nearest_training`) on N generated × N training tiles and report its peak memory.

The tiles are synthetic: the 195 sample tiles, each drawn many times and changed by a random flip/rotation, a shift of up to
16 px (rolled), noise of ±8 grey levels and a small per-channel gain, so that no two are equal. The audit's cost has two
parts: the shortlist (every generated tile against every training tile at 16-px blocks: grows as N²) and the fine
alignment (each generated tile against its 16 shortlisted tiles: grows as N). Both are timed on their own, and the
time for 10,000 × 10,000 is extrapolated from them (N² and N); `--n 10000` runs it.

    python bench/copy_audit.py [--n 500] [--threads 1]   # one thread: tiny tensors, and faster on a busy machine
"""
import argparse, resource, time

import numpy as np
import torch

from cldm_nb.data import load_tiles, sample_data
from cldm_nb.audit import _shortlist, nearest_training


def synthetic_tiles(n: int, seed: int) -> np.ndarray:
    "`n` tiles made from the sample: random flip/rotation, roll by up to 16 px, noise ±8 and a per-channel gain of 0.9–1.1."
    base, rng = load_tiles(sample_data()), np.random.default_rng(seed)
    out = np.empty((n, 128, 128, 3), np.uint8)
    for i in range(n):
        t, k = base[rng.integers(len(base))], rng.integers(8)
        t = np.roll(np.rot90(t[:, ::-1] if k >= 4 else t, k % 4), tuple(rng.integers(-16, 17, 2)), (0, 1))
        out[i] = np.clip(t * rng.uniform(.9, 1.1, 3) + rng.integers(-8, 9, t.shape), 0, 255)
    return out


def main(n: int, threads: int) -> None:
    torch.set_num_threads(threads)
    fake, train = synthetic_tiles(n, 0), synthetic_tiles(n, 1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter(); _shortlist(fake, train, 16, 512); t_short = time.perf_counter() - t0
    t0 = time.perf_counter(); audit = nearest_training(fake, train); t_all = time.perf_counter() - t0
    t_fine = max(t_all - t_short, 0.)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} × {n} tiles, {threads} threads: audit {t_all:.1f} s (shortlist {t_short:.1f} s, alignment and table {t_fine:.1f} s); "
          f"peak RSS {peak:.0f} MiB ({rss0:.0f} MiB after making the tiles, {2 * n * 128 * 128 * 3 / 2**20:.0f} MiB of them); "
          f"copy_share {audit['copy_share']:.3f}")
    scale = 10_000 / n
    print(f"10,000 × 10,000 extrapolated: {t_short * scale ** 2 + t_fine * scale:.0f} s "
          f"(shortlist × {scale ** 2:.0f}, alignment × {scale:.0f}); the tiles alone take {2 * 10_000 * 128 * 128 * 3 / 2**30:.1f} GiB")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=500); p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    main(a.n, a.threads)
