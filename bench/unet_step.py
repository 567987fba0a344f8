"""Speed of the conditional U-Net on the CPU: one training step and one DDPM sampling step, as a share of the fp32 matmul peak.

For the paper config (batch 16 of 32×32×16 latents) the FLOPs of one training step (forward, MSE,
backward, Adadelta update) and of one sampling step (forward + ancestral update, no grad) are
counted with `torch.utils.flop_counter.FlopCounterMode` — with torch's own attention formulas
mapped onto the CPU flash-attention kernels, which the counter does not know by default — and
timed (best of `--reps`). Dividing FLOP/s by the fp32 peak measured in the same run (the best of
several 2048×2048 matmuls, taken before and after) gives the share of peak. Three variants:

- `baseline`: attention through `nn.MultiheadAttention` (the authors' code), NCHW activations;
- `sdpa`: `F.scaled_dot_product_attention` on the same weights, NCHW;
- `sdpa+cl`: the same, channels_last (the package default).

Each variant runs in its own process so that its peak resident memory (`ru_maxrss`) is its own.
Also printed: seconds per training step of the tiny config at batch 16.

    python bench/unet_step.py [--reps 3] [--threads N] [--variants baseline,sdpa,sdpa+cl]
"""
from __future__ import annotations
import argparse, json, resource, subprocess, sys, time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from cldm_nb.unet import CondUNet, UNetConfig
from cldm_nb.schedulers import DDPMScheduler

aten = torch.ops.aten
# The counter maps only the CUDA attention kernels; the CPU flash kernels compute the same products. Its backward
# formula also counts the kernel's recomputation of QKᵀ (half the forward's two products), which is not model
# arithmetic: leaving it out makes every variant count the same FLOPs as the explicit-matmul baseline.
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *a, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v) - sdpa_flop_count(q, k, v) // 2}
VARIANTS = {'baseline': dict(attention='mha', channels_last=False), 'sdpa': dict(attention='sdpa', channels_last=False),
            'sdpa+cl': dict(attention='sdpa', channels_last=True)}

def _timed(f) -> tuple[float, float]:
    "Wall-clock and process CPU seconds (all threads) of one call of `f`."
    w, c = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w, time.process_time() - c

def matmul_peak(n: int = 2048, reps: int = 10) -> tuple[float, float]:
    "Best fp32 FLOP per wall second and per CPU second (per thread) of an n×n matmul."
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = [_timed(lambda: a @ b) for _ in range(reps)]
    return 2 * n**3 / min(w for w, _ in times), 2 * n**3 / min(c for _, c in times)

def steps(unet: CondUNet, batch: int, seed: int = 0):
    "A training step and a sampling step of `unet` on a random batch of latents, as closures."
    g = torch.Generator().manual_seed(seed)
    sch, k = DDPMScheduler(), unet.cfg.n_clusters
    z0 = torch.randn(batch, unet.cfg.in_channels, 32, 32, generator=g)
    t, noise, cond = torch.randint(0, sch.config.num_train_timesteps, (batch,), generator=g), torch.randn(z0.shape, generator=g), torch.randint(0, k, (batch,), generator=g)
    opt = torch.optim.Adadelta(unet.parameters(), lr=3e-3)
    def train():
        loss = F.mse_loss(unet(sch.add_noise(z0, noise, t), t, cond), noise)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    @torch.no_grad()
    def sample(): sch.step(unet(z0, 500, cond), 500, z0, generator=g)
    return train, sample

def measure(fn, reps: int) -> dict:
    "FLOPs (counted once) and the best wall / CPU seconds of `fn` after a warm-up."
    fn()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as fc: fn()
    times = [_timed(fn) for _ in range(reps)]
    return dict(flops=fc.get_total_flops(), best_s=min(w for w, _ in times), best_cpu_s=min(c for _, c in times), times=times)

def worker(variant: str, config: str, batch: int, reps: int) -> dict:
    "Measure one variant in this process; returns the numbers and this process's peak RSS."
    cfg = UNetConfig() if config == 'paper' else UNetConfig.tiny()
    with torch.random.fork_rng(): torch.manual_seed(0); unet = CondUNet(cfg, **VARIANTS[variant])
    train, sample = steps(unet, batch)
    out = dict(variant=variant, config=config, train=measure(train, reps), sample=measure(sample, reps))
    out['peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out

def _spawn(args, variant: str, config: str) -> dict:
    cmd = [sys.executable, __file__, '--worker', variant, '--config', config, '--reps', str(args.reps), '--batch', str(args.batch)]
    if args.threads: cmd += ['--threads', str(args.threads)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--reps', type=int, default=3, help='timed repetitions per step (best reported)')
    ap.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--variants', default='baseline,sdpa,sdpa+cl')
    ap.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--config', default='paper', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    if args.worker: return print(json.dumps(worker(args.worker, args.config, args.batch, args.reps)))
    before = matmul_peak()
    rows = [_spawn(args, v, 'paper') for v in args.variants.split(',')]
    tiny = _spawn(args, 'sdpa+cl', 'tiny')
    after = matmul_peak()
    peak, peak_cpu = max(before[0], after[0]), max(before[1], after[1])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s "
          f"(2048², best of 10, before/after: {before[0] / 1e9:.0f}/{after[0] / 1e9:.0f}); "
          f"{peak_cpu / 1e9:.0f} GFLOP per CPU second")
    print(f"paper U-Net, batch {args.batch}, 32×32×16 latents. 'of peak': FLOP/s over the matmul's; 'CPU-time': the same "
          f"per CPU second (steadier on a shared machine)")
    print(f"{'variant':10} {'step':7} {'GFLOP':>7} {'best s':>8} {'GFLOP/s':>8} {'of peak':>8} {'CPU-time':>9} {'peak RSS':>9}")
    for r in rows:
        for kind in ('train', 'sample'):
            m = r[kind]
            print(f"{r['variant']:10} {kind:7} {m['flops'] / 1e9:7.1f} {m['best_s']:8.3f} {m['flops'] / m['best_s'] / 1e9:8.1f} "
                  f"{m['flops'] / m['best_s'] / peak:8.1%} {m['flops'] / m['best_cpu_s'] / peak_cpu:9.1%} {r['peak_rss_gb']:8.2f}G")
    if len({r['train']['flops'] for r in rows}) > 1: print("warning: the variants' FLOP counts differ")
    print(f"tiny U-Net (sdpa+cl), batch {args.batch}: train {tiny['train']['best_s']:.3f} s/step, "
          f"sample {tiny['sample']['best_s']:.4f} s/step; DDPM (1,000 steps) ≈ {1000 * rows[-1]['sample']['best_s']:.0f} s "
          f"per batch of {args.batch} for the paper config")

if __name__ == '__main__': main()
