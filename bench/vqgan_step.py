"""Speed of one VQ-GAN training step on the CPU, as a share of the machine's fp32 matmul peak.

FLOPs of one full training step (generator forward + backward with MSE, codebook, commitment,
LPIPS-VGG and adversarial terms, then the discriminator's LSGAN update) are counted with
`torch.utils.flop_counter.FlopCounterMode` (plus torch's own formulas for the CPU flash-attention
kernels, which the counter does not map by default). Each timed step is bracketed by
measurements of the fp32 matmul peak (best of 5 products of 2048×2048 matrices, before and
after), so step and peak see the same load on a shared machine; the best and the median share
over the repetitions are printed. Also printed: seconds per step for the tiny and
the paper configs at batch 16, and the process's peak resident memory.

    python bench/vqgan_step.py [--reps 3] [--threads N]
"""
from __future__ import annotations
import argparse, resource, statistics, tempfile, time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from cldm_nb.data import load_tiles, sample_data, to_tensor
from cldm_nb.vqgan import VQGANConfig, vqgan_trainer

aten = torch.ops.aten
CPU_ATTENTION_FLOPS = {   # FlopCounterMode knows the CUDA flash kernels only; same formulas for the CPU ones
    aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *a, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v)}

def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    "Best fp32 FLOP/s of an n×n matmul over `reps` tries."
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(_timed(lambda: a @ b) for _ in range(reps))

def _timed(f) -> float:
    t = time.perf_counter(); f(); return time.perf_counter() - t

def bench(name: str, cfg: VQGANConfig, x: torch.Tensor, tiles, reps: int) -> dict:
    "FLOPs of one full training step of `cfg` on batch `x`; per repetition its time and the matmul peak just around it."
    with tempfile.TemporaryDirectory() as out:
        tr = vqgan_trainer(tiles, cfg, out, device='cpu', progress=False)
        step = lambda: tr.step_fn(tr, x)
        step()                                                            # warm-up
        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as fc: step()
        runs = []
        for _ in range(reps):
            before = matmul_peak(); t = _timed(step); runs.append((t, max(before, matmul_peak())))
    flops = fc.get_total_flops()
    shares = [flops / t / peak for t, peak in runs]
    return dict(config=name, gflop=flops / 1e9, best_s=min(t for t, _ in runs), median_s=statistics.median(t for t, _ in runs),
                peak=max(p for _, p in runs), share_best=max(shares), share_median=statistics.median(shares))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--reps', type=int, default=3, help='timed steps per config')
    ap.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    tiles = load_tiles(sample_data())[:32]
    x = to_tensor(tiles[:16])                              # batch 16 of real tiles
    # disc_start=0: the step includes the discriminator. The untrained LPIPS backbone costs what the real one does.
    rows = [bench('tiny', VQGANConfig.tiny(batch_size=16, disc_start=0), x, tiles, args.reps),
            bench('paper', VQGANConfig(disc_start=0, pretrained_lpips=False), x, tiles, args.reps)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch 16 of 128×128 tiles; "
          "share = step FLOP/s over the fp32 2048² matmul FLOP/s measured just before/after that step")
    for r in rows:
        print(f"{r['config']:>5}: {r['gflop']:7.1f} GFLOP/step, {r['best_s']:6.2f} s/step best ({r['median_s']:.2f} median), "
              f"matmul peak {r['peak'] / 1e9:.0f} GFLOP/s, share {100 * r['share_best']:.1f} % best ({100 * r['share_median']:.1f} % median)")
    print(f"peak memory (max RSS of the process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")

if __name__ == '__main__': main()
