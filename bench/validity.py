"""Benchmark of `cldm_nb.validity`: time and peak memory of the five validity indices.

Each measurement runs in a fresh subprocess with the thread count fixed before torch/numpy load, so
its peak resident memory is its own. "extra memory" is the peak RSS during the call minus the RSS
just before it (the peak is reset through /proc/self/clear_refs where Linux allows it, otherwise
it is the process peak: an upper bound).

    python bench/validity.py                      # n = 10,000, d = 16, K = 14: tiled vs full matrix, 1 and 2 threads
    python bench/validity.py --n 100000 --no-naive --threads 2
"""
from __future__ import annotations
import argparse, json, os, resource, subprocess, sys, time


def _rss_mb(field: str) -> float:
    "VmRSS / VmHWM of this process in MB (Linux), else the peak from getrusage."
    try:
        for line in open('/proc/self/status'):
            if line.startswith(field + ':'): return int(line.split()[1]) / 1024
    except OSError: pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    "Reset VmHWM to the current RSS (Linux ≥ 4.0); False where not allowed."
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False


def blobs(n: int, d: int, k: int, seed: int = 0):
    "Gaussian blobs: k centres (σ 3), unit-variance points, labels uniform."
    import numpy as np
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return rng.normal(size=(k, d))[y] * 3 + rng.normal(size=(n, d)), y


def worker(kind: str, n: int, d: int, k: int, threads: int, repeat: int) -> dict:
    "One measurement in this process: `kind` is 'tiled' (validity_indices) or 'naive' (brute_force_indices)."
    import torch
    from cldm_nb.validity import validity_indices, brute_force_indices
    torch.set_num_threads(threads)
    X, y = blobs(n, d, k)
    f = validity_indices if kind == 'tiled' else brute_force_indices
    if kind == 'tiled' and repeat > 1: f(X[:2000], y[:2000])             # warm-up (thread pool, first-call costs)
    walls, cpus, result, peaks = [], [], None, []
    for _ in range(repeat):
        reset = _reset_peak(); before = _rss_mb('VmRSS')
        w0, c0 = time.perf_counter(), time.process_time()
        result = f(X, y)
        walls.append(time.perf_counter() - w0); cpus.append(time.process_time() - c0)
        peaks.append(_rss_mb('VmHWM') - before)
    return dict(kind=kind, n=n, d=d, k=k, threads=threads, wall_s=min(walls), cpu_s=min(cpus),
                extra_mb=max(peaks), peak_reset=reset, indices={a: float(b) for a, b in result.items()})


def run(kind: str, n: int, d: int, k: int, threads: int, repeat: int) -> dict:
    "Run `worker` in a fresh interpreter with `threads` threads and return its result."
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, '--worker', kind, '--n', str(n), '--d', str(d), '--k', str(k),
           '--threads', str(threads), '--repeat', str(repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=10_000); ap.add_argument('--d', type=int, default=16)
    ap.add_argument('--k', type=int, default=14)
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--repeat', type=int, default=3, help='timed repetitions of the tiled pass (best is reported)')
    ap.add_argument('--no-naive', action='store_true', help='skip the full-matrix reference (it needs ~n²·12 bytes)')
    ap.add_argument('--worker', choices=['tiled', 'naive'], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.n, a.d, a.k, a.threads[0], a.repeat))); return
    rows = [run('tiled', a.n, a.d, a.k, t, a.repeat) for t in a.threads]
    if not a.no_naive: rows.append(run('naive', a.n, a.d, a.k, max(a.threads), 1))
    print("| method | n | threads | wall s | CPU s | extra memory MB |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['n']:,} | {r['threads']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['extra_mb']:.0f} |")
    if not a.no_naive:
        naive, best = rows[-1], min(rows[:-1], key=lambda r: r['wall_s'])
        worst = max(abs(best['indices'][i] - naive['indices'][i]) / max(abs(naive['indices'][i]), 1e-300) for i in naive['indices'])
        print(f"\nfull matrix / tiled wall time: {naive['wall_s'] / best['wall_s']:.1f}×; largest relative difference {worst:.1e}")
    print('\nindices:', json.dumps(rows[0]['indices']))


if __name__ == '__main__': main()
