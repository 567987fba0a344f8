"""Kernel-launching ATen operations per training step, the K sweep's Ks fused (`cldm_nb.fused`) against separate, and
the wall time of a tiny fused sweep against the separate ones.

Operations are counted with a `TorchDispatchMode` around one training step (the step function: draws, VQ encoding
of the augmented batch, forward, backward, NaN guard, optimiser step), the second of the phase, so that the
optimiser's lazily made state is not counted. Views (`OpOverload.is_view`; `_unsafe_view`), metadata queries and
bare allocations launch no kernel and are left out. The count does not depend on the batch size, so the paper's
U-Net and VQ-GAN (`LDMConfig()`, `VQGANConfig()`) run on a small real batch on the CPU. The optimisers are
counted in the form the `Trainer` gets on a GPU (`foreach`: a few multi-tensor operations per step, not some
eight per parameter tensor, which is torch's default on the CPU); `--cpu-optimiser` counts torch's CPU default.

    python bench/fused_ops.py                      # op counts: the joint stage, K = 10…16, the paper's U-Net
    python bench/fused_ops.py --phase finetune1    # …of finetune-1 (U-Net alone)
    python bench/fused_ops.py --wall               # and the wall time of the tiny 3-K sweep (K = 2, 3, 4; 3 phases)
    python bench/fused_ops.py --wall-only --cpu-optimiser    # only that time, with the optimiser training runs on a CPU
"""
from __future__ import annotations
import argparse, tempfile, time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
FREE = {aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided, aten.lift_fresh,
        aten.sym_size, aten.sym_stride, aten.sym_numel, aten.is_same_size, aten.is_contiguous, aten.set_,
        aten._unsafe_view}


class OpCounter(TorchDispatchMode):
    "Counts the ATen operations that launch a kernel (views, metadata and bare allocations left out)."
    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket not in FREE: self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int: return sum(self.ops.values())


def count_step(tr) -> OpCounter:
    "The operations of one step of `tr` (a `Trainer`), after a first step that is not counted."
    batches = tr._batches(0, 0)
    for i in range(2):
        batch = next(batches)
        tr.gen.manual_seed(tr.seed * 1_000_003 + i)
        counter = OpCounter()
        with counter: tr.step_fn(tr, batch)
        tr.step += 1
    return counter


def foreach_optimizers() -> None:
    "Make the optimisers of the diffusion phases, alone and fused, in their multi-tensor (`foreach`) form, as on a GPU."
    from cldm_nb import diffusion, fused
    from cldm_nb.train import make_optimizer
    def foreach(cls, params, device, **kw): return make_optimizer(cls, params, device, foreach=True, **kw)
    for mod in (diffusion, fused): mod.make_optimizer = foreach


def op_counts(ks: list[int], phase: str, batch: int) -> tuple[int, int, OpCounter, OpCounter]:
    "Operations of the separate steps (summed over `ks`) and of the fused step; the fused and the first K's counters."
    from cldm_nb.data import load_tiles, sample_data
    from cldm_nb.diffusion import LDMConfig, build_models, phase_trainer
    from cldm_nb.finetune import Finetune1Config, Finetune2Config
    from cldm_nb.fused import fused_trainer
    from cldm_nb.train import seeded
    from cldm_nb.vqgan import VQVAE, VQGANConfig
    tiles = load_tiles(sample_data())[:2 * batch]
    with seeded(0): vq = VQVAE(VQGANConfig()).eval()
    ldm = {k: LDMConfig(n_clusters=k, batch_size=batch) for k in ks}
    cfgs = dict(ldm=ldm, finetune1={k: Finetune1Config(batch_size=batch) for k in ks},
                finetune2={k: Finetune2Config(batch_size=batch) for k in ks})[phase]
    separate, one = 0, None
    with tempfile.TemporaryDirectory() as out:
        for k in ks:
            unet, head = build_models(ldm[k], vq.cfg.z_channels)
            tr = phase_trainer(phase, unet, head, tiles, vq, cfgs[k], Path(out)/f'k{k}', 'cpu', progress=False)
            c = count_step(tr)
            separate, one = separate + c.total, one or c
            print(f"  K={k} alone: {c.total} ops", flush=True)
        models = {k: build_models(ldm[k], vq.cfg.z_channels) for k in ks}
        fused = count_step(fused_trainer(phase, tiles, vq, cfgs, {k: Path(out)/f'f{k}' for k in ks}, models, 'cpu',
                                         progress=False))
    return separate, fused.total, fused, one


def wall_times(steps: int = 20) -> tuple[float, float]:
    "Seconds of the tiny 3-K sweep (K = 2, 3, 4; joint stage, finetune-1, finetune-2, `steps` steps each)."
    from cldm_nb.data import load_tiles, sample_data
    from cldm_nb.diffusion import LDMConfig, train_ldm
    from cldm_nb.finetune import Finetune1Config, Finetune2Config, finetune1, finetune2
    from cldm_nb.fused import train_fused
    from cldm_nb.train import seeded
    from cldm_nb.vqgan import VQVAE, VQGANConfig
    tiles, ks = load_tiles(sample_data())[:48], (2, 3, 4)
    with seeded(0): vq = VQVAE(VQGANConfig.tiny()).eval()
    ldm = {k: LDMConfig.tiny(n_clusters=k, epochs=4) for k in ks}
    f1, f2 = Finetune1Config.tiny(epochs=4), Finetune2Config.tiny(epochs=4)
    kw = dict(max_steps=steps, progress=False)
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        for k in ks:
            m = train_ldm(tiles, vq, ldm[k], Path(out)/f'a{k}', **kw)
            m = finetune1(*m, tiles, vq, f1, Path(out)/f'a{k}', **kw)
            finetune2(*m, tiles, vq, f2, Path(out)/f'a{k}', **kw)
        separate = time.perf_counter() - t
        dirs = {k: Path(out)/f'f{k}' for k in ks}
        t = time.perf_counter()
        m = train_fused('ldm', tiles, vq, ldm, dirs, **kw)
        m = train_fused('finetune1', tiles, vq, {k: f1 for k in ks}, dirs, m, **kw)
        train_fused('finetune2', tiles, vq, {k: f2 for k in ks}, dirs, m, **kw)
        fused = time.perf_counter() - t
    return separate, fused


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--k-min', type=int, default=10)
    ap.add_argument('--k-max', type=int, default=16)
    ap.add_argument('--phase', default='ldm', choices=('ldm', 'finetune1', 'finetune2'))
    ap.add_argument('--batch', type=int, default=2, help='real batch on the CPU (the count does not depend on it)')
    ap.add_argument('--wall', action='store_true', help='also time the tiny 3-K sweep, separate against fused')
    ap.add_argument('--wall-only', action='store_true', help='only the timing, no op counts')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--cpu-optimiser', action='store_true', help="count torch's per-tensor optimiser (its CPU default)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not a.cpu_optimiser: foreach_optimizers()
    ks = list(range(a.k_min, a.k_max + 1))
    if not a.wall_only:
        separate, fused, counter, one = op_counts(ks, a.phase, a.batch)
        print(f"{a.phase}, K = {ks[0]}…{ks[-1]} ({len(ks)} Ks), paper U-Net, "
              f"{'per-tensor' if a.cpu_optimiser else 'foreach'} optimiser: separate {separate} ops per step of "
              f"every K, fused {fused}: {separate / fused:.1f}× fewer")
        for what, c in (('fused step', counter), (f'K={ks[0]} alone', one)):
            print(f"  {what}, most frequent ops:", ', '.join(f'{n} {c}' for n, c in c.ops.most_common(10)))
    if a.wall or a.wall_only:
        s, f = wall_times()
        print(f"tiny 3-K sweep (K = 2, 3, 4; 3 phases × 20 steps) on {a.threads} threads: separate {s:.1f} s, "
              f"fused {f:.1f} s ({s / f:.2f}×)")
