"""Speed of one VQ-GAN training step on the CPU, as a share of the machine's fp32 matmul peak.

FLOPs of one full training step (generator forward + backward with MSE, codebook, commitment,
LPIPS-VGG and adversarial terms, then the discriminator's LSGAN update) are counted with
`torch.utils.flop_counter.FlopCounterMode` (plus torch's own formulas for the CPU flash-attention
kernels, which the counter does not map by default). Each timed step is bracketed by
measurements of the fp32 matmul peak (best of 5 products of 2048×2048 matrices, before and
after), so step and peak see the same load on a shared machine; the best and the median share
over the repetitions are printed. Also printed: seconds per step for the tiny and
the paper configs at batch 16, and the process's peak resident memory.

The paper config runs twice: as the package builds it (`F.scaled_dot_product_attention`,
channels-last weights) and as a straightforward implementation would (`baseline`: the mid-block
attention through `nn.MultiheadAttention` on the same weights, which materialises the
16 × 1,024 × 1,024 attention maps of each tile, and NCHW weights everywhere, LPIPS included);
the ratio of their step times is printed. The baseline runs last, so the peak memory printed
after the package's run is the package's own.

    python bench/vqgan_step.py [--reps 3] [--threads N] [--no-baseline]
"""
from __future__ import annotations
import argparse, resource, statistics, tempfile, time
from contextlib import ExitStack
from unittest.mock import patch

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from cldm_nb.data import load_tiles, sample_data
import cldm_nb.vqgan as vqgan_mod
from cldm_nb.vqgan import SelfAttention, VQGANConfig, vqgan_trainer

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

def _mha_forward(self: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    "The mid-block attention as `nn.MultiheadAttention` computes it (weights shared with `qkv`/`proj`; maps materialised)."
    if not hasattr(self, 'mha'):
        self.mha = nn.MultiheadAttention(x.shape[1], self.heads, batch_first=True)
        self.mha.in_proj_weight, self.mha.in_proj_bias = self.qkv.weight, self.qkv.bias
        self.mha.out_proj.weight, self.mha.out_proj.bias = self.proj.weight, self.proj.bias
    b, c, h, w = x.shape
    t = self.norm(x).flatten(2).transpose(1, 2)
    return x + self.mha(t, t, t)[0].transpose(1, 2).reshape(b, c, h, w)

def _nchw(module: nn.Module) -> nn.Module: return module.to(memory_format=torch.contiguous_format)

def baseline_patches(stack: ExitStack) -> None:
    "Make `vqgan_trainer` build the straightforward variant: `nn.MultiheadAttention`, NCHW weights (LPIPS too)."
    lpips_vgg = vqgan_mod.lpips_vgg
    stack.enter_context(patch.object(SelfAttention, 'forward', _mha_forward))
    stack.enter_context(patch.object(vqgan_mod, 'lpips_vgg', lambda *a, **k: _nchw(lpips_vgg(*a, **k))))

def bench(name: str, cfg: VQGANConfig, x: torch.Tensor, tiles, reps: int, baseline: bool = False) -> dict:
    "FLOPs of one full training step of `cfg` on batch `x`; per repetition its time and the matmul peak just around it."
    with tempfile.TemporaryDirectory() as out, ExitStack() as stack:
        if baseline: baseline_patches(stack)
        tr = vqgan_trainer(tiles, cfg, out, device='cpu', progress=False)
        if baseline:
            for m in tr.models.values(): _nchw(m)
        step = lambda: tr.step_fn(tr, x)
        step()                                                            # warm-up
        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as fc: step()
        runs = []
        for _ in range(reps):
            before = matmul_peak(); t = _timed(step); runs.append((t, max(before, matmul_peak())))
    flops = fc.get_total_flops()
    shares = [flops / t / peak for t, peak in runs]
    return dict(config=name, gflop=flops / 1e9, best_s=min(t for t, _ in runs), median_s=statistics.median(t for t, _ in runs),
                peak=max(p for _, p in runs), share_best=max(shares), share_median=statistics.median(shares),
                rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--reps', type=int, default=3, help='timed steps per config')
    ap.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument('--no-baseline', action='store_true', help='skip the straightforward (MultiheadAttention, NCHW) variant')
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    tiles = load_tiles(sample_data())[:32]
    x = torch.from_numpy(tiles[:16])                       # batch 16 of real tiles, uint8 NHWC as the trainer hands it
    # disc_start=0: the step includes the discriminator. The untrained LPIPS backbone costs what the real one does.
    rows = [bench('tiny', VQGANConfig.tiny(batch_size=16, disc_start=0), x, tiles, args.reps),
            bench('paper', VQGANConfig(disc_start=0, pretrained_lpips=False), x, tiles, args.reps)]
    if not args.no_baseline:
        rows.append(bench('paper, baseline', VQGANConfig(disc_start=0, pretrained_lpips=False), x, tiles, args.reps, baseline=True))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch 16 of 128×128 tiles; "
          "share = step FLOP/s over the fp32 2048² matmul FLOP/s measured just before/after that step")
    for r in rows:
        print(f"{r['config']:>15}: {r['gflop']:7.1f} GFLOP/step, {r['best_s']:6.2f} s/step best ({r['median_s']:.2f} median), "
              f"matmul peak {r['peak'] / 1e9:.0f} GFLOP/s, share {100 * r['share_best']:.1f} % best "
              f"({100 * r['share_median']:.1f} % median), peak RSS so far {r['rss_gib']:.2f} GiB")
    if len(rows) == 3:
        print(f"paper step, baseline / package: {rows[2]['best_s'] / rows[1]['best_s']:.2f}× the time "
              f"(best), {rows[2]['median_s'] / rows[1]['median_s']:.2f}× (median)")

if __name__ == '__main__': main()
