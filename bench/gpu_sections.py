"""The measurements of `bench/gpu_check.py`, one function per section (see its docstring for what each reports).

Every timed training step is a full batch: a trainer's data is a whole number of batches (`full_batches`), the
warm-up steps see the step's shapes first (cuDNN tunes them there, the EMA reads its start once), then one step is
counted by `FlopCounterMode` and the timed steps follow, each under `torch.cuda.set_sync_debug_mode('error')` on CUDA
(`no_host_sync`): a step that makes the host wait for the GPU stops the section. `measure` records the batch sizes
it saw and refuses a partial one.
"""
from __future__ import annotations
import argparse, collections, gc, time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from cldm_nb.config import RunConfig
from cldm_nb.data import load_tiles, sample_data, split_indices
from cldm_nb.sampling import SampleConfig, denoise, make_scheduler
from cldm_nb.diffusion import build_models, phase_trainer
from cldm_nb.fused import fused_trainer
from cldm_nb.train import Trainer, seeded
from cldm_nb.vqgan import VQVAE, vqgan_trainer
from paper_cost import N_TILES, SAMPLE_BATCH, paper_stages, project
from unet_step import CPU_ATTENTION_FLOPS        # the CPU flash-attention kernels' FLOPs, which the counter lacks

# bf16 dense tensor-core peak in TFLOPS, by a part of the device name (first match; the PCIe H100 before the SXM one)
PEAK_BF16_TFLOPS = [('H100 PCIe', 756.), ('H200', 989.), ('H100', 989.), ('A100', 312.), ('L40S', 362.), ('L4', 121.)]
SK = 14                                          # the K timed (the paper's choice)
BATCHES_PER_EPOCH = 8                            # a trainer's data: this many full batches
DDIM = SampleConfig(sampler='ddim', steps=50)    # the DDIM sampler timed beside the paper's DDPM


@dataclass
class Check:
    "What every section reads: the options, the preset's config, the sample's training tiles, a scratch folder, the peak TFLOPS, the figures so far."
    a: argparse.Namespace
    cfg: RunConfig
    train: np.ndarray
    tmp: Path
    peak: float | None
    results: dict


def training_tiles() -> np.ndarray:
    "The built-in sample's training tiles (the paper split)."
    tiles = load_tiles(sample_data())
    return tiles[split_indices(len(tiles))[0]]


def full_batches(tiles: np.ndarray, batch: int, n: int = BATCHES_PER_EPOCH) -> np.ndarray:
    "Exactly `n` batches of `batch` tiles: `tiles` cycled, so that every epoch ends on a full batch."
    return tiles[np.arange(n * batch) % len(tiles)]


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    "The bf16 dense peak of `device` in TFLOPS: `override`, else from the table by device name (None on the CPU or an unknown GPU)."
    if override or device.type != 'cuda': return override
    name = torch.cuda.get_device_name(device)
    return next((v for part, v in PEAK_BF16_TFLOPS if part in name), None)


def sync(device: torch.device) -> None:
    "Wait for the device's queued work (a no-op on the CPU)."
    if device.type == 'cuda': torch.cuda.synchronize(device)


@contextmanager
def no_host_sync(device: torch.device) -> Iterator[None]:
    "On CUDA, any operation that makes the host wait for the GPU raises inside the block (`set_sync_debug_mode('error')`); on the CPU nothing (bench/device_check.py checks the same there)."
    if device.type != 'cuda': yield; return
    old = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode('error')
    try: yield
    finally: torch.cuda.set_sync_debug_mode(old)


class BatchLog:
    "The trainer's batches, epoch after epoch, in the order `fit` draws them; the size of each one handed out in `sizes`."
    def __init__(self, tr: Trainer):
        if tr.n_items % tr.batch_size:
            raise ValueError(f"{tr.name}: {tr.n_items} items make a partial batch of {tr.n_items % tr.batch_size}; "
                             f"give it a multiple of {tr.batch_size} (full_batches).")
        self.tr, self.sizes, self._it = tr, [], self._batches()

    def _batches(self) -> Iterator:
        epoch = 0
        while True:
            yield from self.tr._batches(epoch, 0)
            epoch += 1

    def __next__(self):
        b = next(self._it)
        self.sizes.append(len(b[0] if isinstance(b, (tuple, list)) else b))
        return b


def run_steps(tr: Trainer, batches: BatchLog, n: int, watch: bool = True) -> None:
    "`n` training steps as `fit` runs them (the step's seed, the stage's step function, the step counter); each under `no_host_sync` when `watch`."
    for _ in range(n):
        batch = next(batches)                       # an epoch's first batch copies its indices: outside the watched step
        tr.batch_gen.manual_seed(tr.seed * 1_000_003 + tr.step)
        if watch:
            with no_host_sync(tr.device): tr.step_fn(tr, batch)
        else: tr.step_fn(tr, batch)
        tr.step += 1


def count_flops(fn: Callable[[], None]) -> int:
    "FLOPs of one call of `fn` (matmuls, convolutions, attention), as `FlopCounterMode` counts them."
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as fc: fn()
    return fc.get_total_flops()


def measure(tr: Trainer, steps: int, warmup: int, peak: float | None, flops: int | None = None) -> dict:
    "Step time (mean of `steps` after `warmup` and one counted step), FLOPs per step (counted on a full batch of a shape already run, unless given), share of `peak`, peak GPU memory; the batch sizes seen, all full."
    dev, batches = tr.device, BatchLog(tr)
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    run_steps(tr, batches, warmup, watch=False)     # first shapes (cuDNN tuning) and the EMA's one read of its start
    flops = flops or count_flops(lambda: run_steps(tr, batches, 1))
    sync(dev); t0 = time.perf_counter()
    run_steps(tr, batches, steps)
    sync(dev); step_s = (time.perf_counter() - t0) / steps
    if set(batches.sizes) != {tr.batch_size}: raise AssertionError(f"{tr.name}: partial batches timed: {batches.sizes}")
    tflops = flops / step_s / 1e12
    return dict(batch=tr.batch_size, step_ms=1e3 * step_s, tiles_per_s=tr.batch_size / step_s, tflop_per_step=flops / 1e12,
                tflops=tflops, peak_share=tflops / peak if peak else None, batch_sizes=sorted(set(batches.sizes)),
                timed_steps=steps, sync_debug='error' if dev.type == 'cuda' else 'off (CPU: bench/device_check.py)',
                peak_mem_gb=torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None)


def frozen_vqvae(c: Check) -> VQVAE:
    "The preset's VQ-VAE, untrained (the step costs do not depend on the weights), frozen on the device."
    with seeded(765): vq = VQVAE(c.cfg.vqgan)
    return vq.to(c.a.device).eval().requires_grad_(False)


def phase_cfg(c: Check, phase: str):
    "The preset's config of a diffusion phase for K = 14."
    return dict(joint=c.cfg.for_k(SK), finetune1=c.cfg.finetune1, finetune2=c.cfg.finetune2)[phase]


def diffusion_trainer(c: Check, vq: VQVAE, phase: str, batch: int, name: str, **kw) -> Trainer:
    "A diffusion phase's `Trainer` for K = 14 (the preset's models and config, `kw` replaced) at `batch`, on `BATCHES_PER_EPOCH` full batches."
    unet, head = build_models(c.cfg.for_k(SK), vq.cfg.z_channels)
    cfg = phase_cfg(c, phase).replace(batch_size=batch, **kw)
    return phase_trainer(phase, unet, head, full_batches(c.train, batch), vq, cfg, c.tmp/name, c.a.device, progress=False)


def vqgan_batch_trainer(c: Check, batch: int) -> Trainer:
    "The VQ-GAN stage's `Trainer` (the preset's config, discriminator from step 0, LPIPS with the ImageNet VGG16) at `batch`."
    cfg = c.cfg.vqgan.replace(batch_size=batch, disc_start=0, perceptual_weight=c.cfg.vqgan.perceptual_weight or 1.,
                              pretrained_lpips=True)
    return vqgan_trainer(full_batches(c.train, batch), cfg, c.tmp/'vqgan', c.a.device, progress=False)


def phase_section(phase: str) -> Callable[[Check], dict]:
    "A section timing the step of diffusion phase `phase` at the preset's batch."
    def section(c: Check) -> dict:
        tr = diffusion_trainer(c, frozen_vqvae(c), phase, phase_cfg(c, phase).batch_size, phase)
        return measure(tr, c.a.steps, c.a.warmup, c.peak)
    section.__doc__ = f"The {phase} step at the preset's batch (eager)."
    return section


def section_vqgan(c: Check) -> dict:
    "The VQ-GAN step at the preset's batch, discriminator and LPIPS on (as in all but its first 1,000 steps)."
    return measure(vqgan_batch_trainer(c, c.cfg.vqgan.batch_size), c.a.steps, c.a.warmup, c.peak)


def section_generation(c: Check) -> dict:
    "Sampler steps of a 64-tile batch (the paper's DDPM-1000 and DDIM-50; U-Net, bf16 on CUDA, and update, noise from a CPU generator as `sample` draws it), and one decoder pass of the batch."
    a, vq = c.a, frozen_vqvae(c)
    unet, _ = build_models(c.cfg.for_k(SK), vq.cfg.z_channels)
    unet.to(a.device).eval()
    ids = torch.arange(SAMPLE_BATCH, device=a.device) % SK
    z = torch.randn(SAMPLE_BATCH, unet.cfg.in_channels, 32, 32, device=a.device)
    gen, out = torch.Generator().manual_seed(0), {}
    for s in (c.cfg.sampling, DDIM):
        scheduler = make_scheduler(unet, s, device=a.device)
        ts = scheduler.timesteps.tolist()[:a.warmup + a.sampler_steps]
        scheduler.set_timesteps(timesteps=ts[:max(a.warmup, 1)])
        denoise(unet, z, ids, scheduler, gen, eta=s.eta)                        # first shapes
        scheduler.set_timesteps(timesteps=ts[a.warmup:])
        sync(a.device); t0 = time.perf_counter()
        with no_host_sync(a.device): denoise(unet, z, ids, scheduler, gen, eta=s.eta)
        sync(a.device)
        out[f'{s.sampler}_step_ms'] = 1e3 * (time.perf_counter() - t0) / len(ts[a.warmup:])
        out[f'{s.sampler}_label'] = s.describe()
    with torch.no_grad():
        vq.decode(z); sync(a.device); t0 = time.perf_counter()
        for _ in range(a.steps): vq.decode(z)
        sync(a.device)
    return dict(batch=SAMPLE_BATCH, timed_sampler_steps=a.sampler_steps, decode_ms=1e3 * (time.perf_counter() - t0) / a.steps, **out)


def launches_kernel(func) -> bool:
    "Whether operation `func` runs a kernel: an ATen operation that is not a view or a metadata/allocation-only one (the profiler's markers are not ATen's)."
    if func.namespace != 'aten': return False
    if func in (torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default, torch.ops.aten.lift_fresh.default):
        return False
    return not any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


class KernelOps(TorchDispatchMode):
    "Counts the ATen operations that run a kernel (`launches_kernel`) while active: by name, and by part of the step (the optimisers' `step` apart, through torch's global optimiser hooks)."
    def __init__(self):
        super().__init__()
        self.counts, self.parts, self._part = collections.Counter(), collections.Counter(), 'forward+backward'

    def __enter__(self):
        self._hooks = [register_optimizer_step_pre_hook(lambda *_: setattr(self, '_part', 'optimizer')),
                       register_optimizer_step_post_hook(lambda *_: setattr(self, '_part', 'forward+backward'))]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks: h.remove()
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if launches_kernel(func):
            self.counts[str(func.overloadpacket.__name__)] += 1
            self.parts[self._part] += 1
        return func(*args, **(kwargs or {}))


def cuda_launches(fn: Callable[[], None]) -> int:
    "Kernel launches of one call of `fn` on CUDA, as the profiler records the runtime's launch calls."
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof: fn(); torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if 'LaunchKernel' in e.key or e.key == 'cudaGraphLaunch')


def section_launches(c: Check) -> dict:
    "Kernel-launching ATen operations of one joint step at the preset's batch (views and metadata excluded), the optimiser's apart; on CUDA also the launches the profiler records."
    a = c.a
    tr = diffusion_trainer(c, frozen_vqvae(c), 'joint', c.cfg.ldm.batch_size, 'launches')
    batches = BatchLog(tr)
    run_steps(tr, batches, max(a.warmup, 1), watch=False)
    with KernelOps() as ops: run_steps(tr, batches, 1)
    out = dict(batch=tr.batch_size, aten_kernel_ops=sum(ops.counts.values()), by_part=dict(ops.parts),
               optimizers=[type(o).__name__ + (' (one tensor at a time on the CPU; on CUDA fused (Adam) or foreach)' if a.device.type == 'cpu' else '')
                           for o in tr.optimizers.values()], top_ops=dict(ops.counts.most_common(8)))
    if a.device.type == 'cuda': out['cuda_launches'] = cuda_launches(lambda: run_steps(tr, batches, 1))
    return out


def stage_seconds(results: dict) -> dict[str, float | None]:
    "Measured seconds per unit of `paper_stages` from the sections' figures (None where a section has none)."
    ms = lambda name, key='step_ms': results.get(name, {}).get(key)
    s = dict(vqgan=ms('vqgan'), joint=ms('joint'), finetune1=ms('finetune1'), finetune2=ms('finetune2'),
             ddpm_step=ms('generation', 'ddpm_step_ms'), ddim_step=ms('generation', 'ddim_step_ms'), decode=ms('generation', 'decode_ms'))
    return {k: None if v is None else v / 1e3 for k, v in s.items()}


def section_projection(c: Check) -> dict:
    "The paper job on the authors' 11,000 tiles (10,000 for training), stage by stage (`paper_cost.paper_stages`), from the step times measured above."
    paper = RunConfig()
    n_train = len(split_indices(N_TILES, paper.data.n_chunks)[0])
    p = project(paper_stages(paper, SK, n_train), stage_seconds(c.results))
    basis = (f"measured on {c.results.get('device')} (eager steps at the preset's batch, sampler steps at batch 64)"
             + (" — a dry run on the CPU with the tiny preset's models: the hours mean nothing" if c.a.dry_run else ''))
    return dict(n_train=n_train, k=SK, basis=basis, **p)


def losses(c: Check, vq: VQVAE, amp: bool, steps: int) -> torch.Tensor:
    "The joint stage's loss at each of `steps` steps from the same initial weights and batches, with or without bf16 autocast."
    tr = diffusion_trainer(c, vq, 'joint', c.cfg.ldm.batch_size, f'amp{int(amp)}', amp=amp)
    batches, out = BatchLog(tr), []
    for _ in range(steps):
        batch = next(batches)
        tr.batch_gen.manual_seed(tr.seed * 1_000_003 + tr.step)
        out.append(tr.step_fn(tr, batch)['loss'])
        tr.step += 1
    return torch.stack(out).float().cpu()


def section_precision(c: Check) -> dict:
    "bf16 and fp32 joint-stage losses on the same batches and noise: none NaN, and their means over windows of 25 steps agree within 10 %."
    a, vq = c.a, frozen_vqvae(c)
    bf16, fp32 = losses(c, vq, True, a.precision_steps), losses(c, vq, False, a.precision_steps)
    w = min(25, a.precision_steps)
    mb, mf = bf16[:len(bf16) // w * w].view(-1, w).mean(1), fp32[:len(fp32) // w * w].view(-1, w).mean(1)
    rel = ((mb - mf).abs() / mf.abs()).max().item()
    out = dict(steps=a.precision_steps, bf16_on=a.device.type == 'cuda', max_window_rel_diff=rel,
               bf16_first_last=[bf16[0].item(), bf16[-1].item()], fp32_first_last=[fp32[0].item(), fp32[-1].item()])
    if not (torch.isfinite(bf16).all() and torch.isfinite(fp32).all()): raise AssertionError(f"non-finite losses: {out}")
    if rel > 0.1: raise AssertionError(f"bf16 and fp32 losses differ by {rel:.1%} over a window: {out}")
    return out


def section_resume(c: Check) -> dict:
    "A joint stage trained 2 + 2 steps with a checkpoint and a resume in between ends where 4 steps straight do."
    a, vq, b = c.a, frozen_vqvae(c), c.cfg.ldm.batch_size
    def trained(name: str, *legs: int) -> Trainer:
        for n in legs: tr = diffusion_trainer(c, vq, 'joint', b, name, epochs=2).fit(max_steps=n)
        return tr
    resumed, straight = trained('resumed', 2, 2), trained('straight', 4)
    diff = max((p - q).abs().max().item() for p, q in zip(resumed.models['unet'].state_dict().values(),
                                                          straight.models['unet'].state_dict().values()) if isinstance(p, torch.Tensor) and p.is_floating_point())
    tol = 1e-3 if a.device.type == 'cuda' else 1e-5          # CUDA's atomics make two runs differ in the last bits
    out = dict(steps=[resumed.step, straight.step], saves=resumed.saves, max_abs_weight_diff=diff, tolerance=tol)
    if resumed.step != straight.step or diff > tol: raise AssertionError(f"the resumed run differs from the straight one: {out}")
    return out


def compiled_section(mode: str | None) -> Callable[[Check], dict]:
    "A section timing the joint step at the preset's batch with the U-Net under `torch.compile(mode=mode)` (compile time apart; FLOPs: the eager step's)."
    def section(c: Check) -> dict:
        a, eager = c.a, c.results.get('joint', {})
        if a.dry_run: return dict(skipped='dry run: compiling the U-Net on 2 CPU cores takes minutes')
        if a.no_compile: return dict(skipped='--no-compile')
        tr = diffusion_trainer(c, frozen_vqvae(c), 'joint', c.cfg.ldm.batch_size, f'compile_{mode}')
        tr.models['unet'].compile(mode=mode)
        sync(a.device); t0 = time.perf_counter()
        run_steps(tr, BatchLog(tr), 5, watch=False)      # compiles, and (reduce-overhead) records the graphs
        sync(a.device)
        flops = eager.get('tflop_per_step') and int(eager['tflop_per_step'] * 1e12)
        return dict(mode=mode or 'default', compile_s=time.perf_counter() - t0, **measure(tr, a.steps, 2, c.peak, flops))
    section.__doc__ = (f"The joint step with the U-Net under torch.compile(mode={mode!r})"
                       + (": its forward and backward captured in CUDA graphs (the optimiser runs eagerly)." if mode else "."))
    return section


def section_seven_ks(c: Check) -> dict:
    ("The sweep's Ks (K = 10…16 in the paper) trained together (`fused_trainer`, `sweep.fused`): one joint step for all of "
     "them at the preset's batch, its kernel-launching operations, and beside it the per-K step times seven times over.")
    vq, batch, ks = frozen_vqvae(c), c.cfg.ldm.batch_size, c.cfg.ks
    cfgs = {k: c.cfg.for_k(k).replace(batch_size=batch) for k in ks}
    tr = fused_trainer('ldm', full_batches(c.train, batch), vq, cfgs, {k: c.tmp/'seven'/f'k{k}' for k in ks},
                       device=c.a.device, progress=False)
    out = dict(ks=ks, **measure(tr, c.a.steps, c.a.warmup, c.peak))
    batches = BatchLog(tr)
    with KernelOps() as ops: run_steps(tr, batches, 1)
    out['aten_kernel_ops'] = sum(ops.counts.values())
    one = c.results.get('joint', {}).get('step_ms')
    alone = c.results.get('launches', {}).get('aten_kernel_ops')
    out['separate_step_ms'] = None if one is None else one * len(ks)
    out['speedup_vs_separate'] = None if one is None else one * len(ks) / out['step_ms']
    out['fewer_ops_vs_separate'] = None if alone is None else alone * len(ks) / out['aten_kernel_ops']
    return out


def is_oom(e: BaseException) -> bool:
    "Whether `e` says the GPU ran out of memory (torch's own error, or a cuDNN/cuBLAS allocation failure)."
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and
                                                     any(s in str(e) for s in ('out of memory', 'ALLOC_FAILED')))


def batch_sweep(build: Callable[[int], Trainer], batches: list[int], steps: int, warmup: int, peak: float | None,
                free: Callable[[], None]) -> list[dict]:
    "`measure` of `build(b)` for each batch size until one runs out of memory; any other error ends the sweep as a row of its own, the rows measured before it kept."
    rows = []
    for b in batches:
        try: rows.append(measure(build(b), steps, warmup, peak)); print(f"  batch {b}: {rows[-1]['step_ms']:.1f} ms/step", flush=True)
        except Exception as e:
            rows.append(dict(batch=b, oom=True) if is_oom(e) else dict(batch=b, error=f"{type(e).__name__}: {e}"))
            print(f"  batch {b}: {'out of memory' if is_oom(e) else rows[-1]['error']}", flush=True)
            break
        finally: free()
    return rows


def section_batches(c: Check) -> dict:
    "The joint step from twice the preset's batch, doubling until out of memory or `--max-batch` (dry run: twice the batch only)."
    a, vq, b0 = c.a, frozen_vqvae(c), c.cfg.ldm.batch_size
    sizes = [b0 * 2 ** i for i in range(1, 20) if b0 * 2 ** i <= (2 * b0 if a.dry_run else a.max_batch)]
    def free():
        gc.collect()
        if a.device.type == 'cuda': torch.cuda.empty_cache()
    return dict(batches=batch_sweep(lambda b: diffusion_trainer(c, vq, 'joint', b, f'b{b}'), sizes, a.steps, a.warmup, c.peak, free))


SECTIONS = dict(joint=phase_section('joint'), vqgan=section_vqgan, finetune1=phase_section('finetune1'),
                finetune2=phase_section('finetune2'), generation=section_generation, launches=section_launches,
                projection=section_projection, precision=section_precision, resume=section_resume,
                joint_compile=compiled_section(None), joint_cuda_graphs=compiled_section('reduce-overhead'),
                joint_seven_ks=section_seven_ks, batches=section_batches)
