"""Tests of the GPU check's measurements that run on the CPU (plain Python; exits non-zero on a failure):

    PYTHONPATH=.:bench python bench/test_gpu_check.py

- every batch a trainer times or counts is full, at batch sizes where the sample's 178 tiles would leave partial ones;
- a batch sweep keeps the rows it measured when a later batch size fails;
- the projection has a stage for every training stage and every generation of the paper job, and follows the sweep's
  design (which phases each K trains);
- the kernel-launch count leaves views and allocations out.
"""
import dataclasses, sys, tempfile
from pathlib import Path

import numpy as np
import torch

import gpu_sections as g
from cldm_nb.config import RunConfig
from cldm_nb.sampling import SampleConfig
from cldm_nb.checkpoints import StageConfig
from paper_cost import SWEEP_PHASES, paper_stages, project


def check(cond: bool, msg: str) -> None:
    if not cond: raise AssertionError(msg)


def test_full_batches(train: np.ndarray) -> None:
    for b in (16, 64, 100, 256, 1024):
        n = len(g.full_batches(train, b))
        check(n == g.BATCHES_PER_EPOCH * b, f"full_batches({b}): {n} tiles, not {g.BATCHES_PER_EPOCH} batches of {b}")


def test_measure(c: g.Check, vq) -> g.Trainer:
    "The batches `measure` warms up on, counts FLOPs on and times are all full; a partial one is refused."
    tr = g.diffusion_trainer(c, vq, 'joint', 8, 'measure')
    r = g.measure(tr, steps=2, warmup=1, peak=None)
    check(r['batch_sizes'] == [8] and r['tflop_per_step'] > 0, f"measure saw batch sizes {r['batch_sizes']}, FLOPs {r['tflop_per_step']}")
    ragged = g.phase_trainer('joint', *g.build_models(c.cfg.for_k(g.SK), vq.cfg.z_channels), c.train[:8 * 3 + 4], vq,
                             c.cfg.for_k(g.SK).replace(batch_size=8), c.tmp/'ragged', 'cpu', progress=False)
    try: g.BatchLog(ragged)
    except ValueError as e: check('partial batch of 4' in str(e), str(e))
    else: raise AssertionError("BatchLog accepted data that ends on a partial batch")
    return tr


def test_batch_sweep(tr: g.Trainer) -> None:
    "A non-OOM error ends the sweep with a row of its own; the rows before it stay; an OOM stops it as OOM."
    def build(b: int):
        if b == 8: return tr
        if b == 16: raise ValueError('broken at 16')
        raise torch.OutOfMemoryError('CUDA out of memory')
    rows = g.batch_sweep(build, [8, 16, 32], steps=1, warmup=0, peak=None, free=lambda: None)
    check(len(rows) == 2 and rows[0]['batch'] == 8 and 'step_ms' in rows[0] and 'broken at 16' in rows[1]['error'], f"rows {rows}")
    rows = g.batch_sweep(build, [32, 64], steps=1, warmup=0, peak=None, free=lambda: None)
    check(rows == [dict(batch=32, oom=True)], f"rows {rows}")


def training_units(cfg: RunConfig) -> set[str]:
    "The units the projection must time: one per training config of the run (a StageConfig with epochs), one per sampler it uses, and the decoder."
    name = dict(ldm='joint')
    train = {name.get(f.name, f.name) for f in dataclasses.fields(cfg)
             if isinstance(getattr(cfg, f.name), StageConfig) and hasattr(getattr(cfg, f.name), 'epochs')}
    return train | {f'{s.sampler}_step' for s in (cfg.sampling, cfg.sweep_sampling)} | {'decode'}


def test_projection_stages() -> None:
    cfg = RunConfig()
    stages = paper_stages(cfg, 14, 10_000)
    units = {u for s in stages for u, _ in s.parts}
    check(training_units(cfg) <= units, f"the projection leaves out {training_units(cfg) - units}")
    gens = [s for s in stages if any(u == 'decode' for u, _ in s.parts)]
    check(len(gens) == 2, f"expected the sweep's and the evaluation's generations, got {[s.name for s in gens]}")
    per_k = [s.parts[0][0] for s in stages if s.runs == len(cfg.ks)]
    check(per_k == list(SWEEP_PHASES['all']['per_k']), f"paper preset: per-K stages {per_k}, not all three phases")
    joint = [s.parts[0][0] for s in paper_stages(cfg.replace(phases='joint'), 14, 10_000) if s.runs == len(cfg.ks)]
    check(joint == ['joint'], f"with sweep.phases='joint', per-K stages {joint}")
    secs = {u: 0.01 for u in units}
    p = project(stages, secs)
    check(p['missing_units'] == [] and abs(p['total_hours'] - sum(r['hours'] for r in p['stages'])) < 1e-9, str(p))
    p = project(stages, {**secs, 'finetune2': None})
    check(p['total_hours'] is None and p['missing_units'] == ['finetune2'], str(p))
    ddim = RunConfig(sampling=SampleConfig(sampler='ddim', steps=50))
    check('ddim_step' in {u for s in paper_stages(ddim, 14, 10_000) for u, _ in s.parts}, "a DDIM run is not projected with DDIM steps")


def test_launch_filter() -> None:
    aten = torch.ops.aten
    for op, launches in ((aten.add.Tensor, True), (aten.add_.Tensor, True), (aten.convolution.default, True),
                         (aten.view.default, False), (aten.t.default, False), (aten.expand.default, False),
                         (aten.empty.memory_format, False)):
        check(g.launches_kernel(op) == launches, f"launches_kernel({op}) should be {launches}")
    with g.KernelOps() as ops: (torch.randn(4, 4).t() + 1).sum()
    check(dict(ops.counts) == {'randn': 1, 'add': 1, 'sum': 1}, f"counted {dict(ops.counts)}")
    w = torch.nn.Parameter(torch.ones(3)); opt = torch.optim.SGD([w], lr=0.1)
    with g.KernelOps() as ops: (w * 2).sum().backward(); opt.step()
    check(ops.parts['optimizer'] >= 1 and ops.parts['forward+backward'] >= 3, f"by part {dict(ops.parts)}")


def main() -> int:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        a = g.argparse.Namespace(device=torch.device('cpu'), dry_run=True)
        c = g.Check(a, RunConfig.tiny(), g.training_tiles(), Path(d), None, {})
        vq = g.frozen_vqvae(c)
        test_full_batches(c.train)
        tr = test_measure(c, vq)
        test_batch_sweep(tr)
    test_projection_stages()
    test_launch_filter()
    print("test_gpu_check: 5 tests passed")
    return 0


if __name__ == '__main__': sys.exit(main())
