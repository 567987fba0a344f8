"""Benchmark of `cldm_nb.metrics`'s metrics on CPU: SSIM (batched torch vs scikit-image) and LPIPS throughput.

SSIM: `n` pairs (default 10,000, the paper's protocol size) built from the shipped 128×128 KPC tiles
(tile i against a shuffled partner). The batched torch implementation runs on all of them; the
per-pair scikit-image loop runs on the first `--skimage-pairs` (default 1,000) and its time is
extrapolated linearly to `n` (it is a plain loop of identical calls; pass `--skimage-pairs n` to
time it in full). Both are checked to agree on the common pairs. LPIPS (VGG, 128×128, inputs in
[−1, 1]): pairs per second over `--lpips-pairs` pairs; the untrained backbone is used (it costs
exactly what the ImageNet one does).

Each thread count runs in its own subprocess with the count fixed before torch loads.

    python bench/eval_metrics.py                       # 10,000 pairs, 1 and 2 threads
    python bench/eval_metrics.py --threads 2 --skimage-pairs 10000
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, time


def measure(n: int, sk_pairs: int, lpips_pairs: int, batch_size: int | None, rounds: int) -> dict:
    "Run the timings in this process (thread count already fixed by the caller)."
    import numpy as np, torch
    from cldm_nb.data import load_tiles, sample_data
    from cldm_nb.metrics import lpips_net, lpips_paired, ssim_paired
    tiles = load_tiles(sample_data())
    rng = np.random.default_rng(0)
    real = tiles[np.arange(n) % len(tiles)]
    fake = tiles[rng.integers(0, len(tiles), n)]
    ssim_paired(real[:8], fake[:8])                                    # warm-up
    # interleave: each round times torch on n/rounds pairs and scikit-image on sk_pairs/rounds of them,
    # so that both see the same load on a shared machine
    t_torch, t_sk, ratios, diffs, fast = 0., 0., [], [], []
    for r, idx in enumerate(np.array_split(np.arange(n), rounds)):
        t0 = time.perf_counter(); v = ssim_paired(real[idx], fake[idx], batch_size=batch_size); dt = time.perf_counter() - t0
        k = idx[:max(1, sk_pairs // rounds)]
        t0 = time.perf_counter(); ref = ssim_paired(real[k], fake[k], backend='skimage'); ds = (time.perf_counter() - t0) * len(idx) / len(k)
        t_torch, t_sk = t_torch + dt, t_sk + ds
        ratios.append(ds / dt); diffs.append(float(np.abs(v[:len(k)] - ref).max())); fast.append(v)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0); net = lpips_net(pretrained_backbone=False)
    lpips_paired(real[:2], fake[:2], model=net)                        # warm-up
    m = min(lpips_pairs, n)
    t0 = time.perf_counter(); lpips_paired(real[:m], fake[:m], model=net); t_lp = time.perf_counter() - t0
    return dict(threads=torch.get_num_threads(), n=n, skimage_pairs_timed=rounds * max(1, sk_pairs // rounds), torch_s=t_torch,
                skimage_s_extrapolated=t_sk, speedup=t_sk / t_torch, speedup_median_round=float(np.median(ratios)),
                max_abs_diff=max(diffs), ssim_mean=float(np.concatenate(fast).mean()), lpips_pairs=m, lpips_pairs_per_s=m / t_lp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=10_000)
    ap.add_argument('--skimage-pairs', type=int, default=1_000)
    ap.add_argument('--lpips-pairs', type=int, default=64)
    ap.add_argument('--batch-size', type=int, default=None, help='torch SSIM batch (default: ssim_paired\'s CPU default)')
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--rounds', type=int, default=10, help='interleaved torch / scikit-image timing rounds')
    ap.add_argument('--json', help='also write the results here')
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.n, a.skimage_pairs, a.lpips_pairs, a.batch_size, a.rounds))); return
    rows = []
    for t in a.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
        cmd = [sys.executable, __file__, '--child', '--n', str(a.n), '--skimage-pairs', str(a.skimage_pairs),
               '--lpips-pairs', str(a.lpips_pairs), '--rounds', str(a.rounds)] + (['--batch-size', str(a.batch_size)] if a.batch_size else [])
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode: sys.exit(f"the {t}-thread measurement failed:\n{res.stderr[-3000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"SSIM (win 3, RGB, uint8) over {a.n:,} pairs of 128×128 tiles; LPIPS-VGG on CPU")
    print(f"{'threads':>7} {'torch s':>8} {'skimage s':>10} {'speed-up':>9} {'median/round':>13} {'max |Δ|':>9} {'LPIPS pairs/s':>14}")
    for r in rows:
        print(f"{r['threads']:>7} {r['torch_s']:>8.2f} {r['skimage_s_extrapolated']:>10.2f} {r['speedup']:>8.1f}× "
              f"{r['speedup_median_round']:>12.1f}× {r['max_abs_diff']:>9.1e} {r['lpips_pairs_per_s']:>14.1f}")
    if rows and rows[0]['skimage_pairs_timed'] < a.n:
        print(f"(scikit-image timed on {rows[0]['skimage_pairs_timed']:,} pairs and extrapolated to {a.n:,})")
    if a.json:
        with open(a.json, 'w') as f: json.dump(rows, f, indent=2)


if __name__ == '__main__': main()
