"""One-shot GPU check of the `paper` preset on the built-in sample (195 tiles, 128×128).

Sections (each runs on its own; a failure is printed and the next section runs; the exit code is 1
when any failed):

- `unet`: the joint stage's training step (U-Net + cluster head, `phase_trainer` with the paper
  `LDMConfig`) at batch 16 and, by doubling until `torch.OutOfMemoryError`, at the largest batch
  that fits: step time, FLOPs per step (`FlopCounterMode` on one step: forward, backward, update),
  share of the GPU's bf16 dense peak, peak GPU memory;
- `unet_compile`: the same step at batch 16 with `PhaseConfig.compile=True` (torch.compile);
- `vqgan`: the same figures for the VQ-GAN step (`vqgan_trainer`, paper `VQGANConfig`; the
  discriminator on from the first step, as in all but the first 1,000 of the paper's steps);
- `one_k`: one K of the sweep, `train_ldm` capped by steps, extrapolated to the paper's 600 epochs
  on the sample and on 10,000 training tiles;
- `chapters`: `tools/run_chapters.py --gpu --max-steps N` end to end;
- `run`: `cldm run --preset tiny --device cuda` into a temporary folder, timed.

Step times come from the trainer's own step function over its own batches (as `Trainer.fit` runs
them), after a warm-up, between `torch.cuda.synchronize()` calls: a short `fit` would also time
the checkpoint it writes at its end. The batches beyond the sample's 178 training tiles repeat them.

    bash bench/gpu_check.sh [--json PATH] [--peak-tflops T] [--steps N] [--chapter-steps N] [--budget-s 470]
    bash bench/gpu_check.sh --dry-run     # the same code on the CPU in a few minutes (CI)

The dry run uses the `tiny` preset's models (a paper U-Net step takes ~30 s on 2 CPU cores), 2 timed
steps, batches 16 and 32 only, a `smoke` run, and skips torch.compile and the chapters (CI runs
their gpu cells itself): it checks that every section works, its figures mean nothing.
"""
from __future__ import annotations
import argparse, gc, json, math, os, shutil, signal, subprocess, sys, tempfile, time, traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from cldm_nb.data import load_tiles, sample_data, split_indices
from cldm_nb.diffusion import build_models, phase_trainer, train_ldm
from cldm_nb.config import RunConfig
from cldm_nb.train import Trainer, resolve_device, seeded
from cldm_nb.vqgan import VQVAE, vqgan_trainer
from unet_step import CPU_ATTENTION_FLOPS        # bench/: the CPU flash-attention kernels' FLOPs, which the counter lacks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
from run_chapters import tiles_subset            # tools/: the first N sample tiles in a folder
# bf16 dense tensor-core peak in TFLOPS, by a part of the device name (first match; the PCIe H100 before the SXM one)
PEAK_BF16_TFLOPS = [('H100 PCIe', 756.), ('H200', 989.), ('H100', 989.), ('A100', 312.), ('L40S', 362.), ('L4', 121.)]
SK = 14                                          # the K timed for one K of the sweep (the paper's choice)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    "The command line (see the module docstring)."
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dry-run', action='store_true',
                    help='on the CPU: the tiny preset\'s models, 2 steps, batches 16 and 32, a smoke run, chapters skipped')
    ap.add_argument('--json', help='also write the figures as JSON to this path')
    ap.add_argument('--peak-tflops', type=float, help='bf16 dense peak of the device (default: from its name)')
    ap.add_argument('--steps', type=int, help='timed steps per batch size (default 10; dry run 2)')
    ap.add_argument('--max-batch', type=int, default=4096, help='stop the doubling here (default 4096)')
    ap.add_argument('--k-steps', type=int, help='steps of the capped one-K run (default 50; dry run 2)')
    ap.add_argument('--chapter-steps', type=int, default=5, help='CLDM_MAX_STEPS of the chapters\' gpu cells (default 5)')
    ap.add_argument('--budget-s', type=int, default=470, help='the whole check\'s seconds: the chapters and the run get what is left (default 470)')
    ap.add_argument('--chapters-timeout', type=int, default=180, help='seconds at most (default 180)')
    ap.add_argument('--run-preset', help='preset of the timed `cldm run` (default tiny; dry run smoke)')
    ap.add_argument('--run-tiles', type=int, help='the run on the first N sample tiles (default: all 195; dry run 24)')
    ap.add_argument('--run-timeout', type=int, help='seconds at most (default 120; dry run 240, for a busy CI machine)')
    ap.add_argument('--no-compile', action='store_true', help='skip the torch.compile timing')
    a = ap.parse_args(argv)
    a.deadline = time.perf_counter() + a.budget_s
    a.device = torch.device('cpu') if a.dry_run else resolve_device('cuda')
    a.steps = a.steps or (2 if a.dry_run else 10)
    a.k_steps = a.k_steps or (2 if a.dry_run else 50)
    a.run_preset = a.run_preset or ('smoke' if a.dry_run else 'tiny')
    a.run_timeout = a.run_timeout or (240 if a.dry_run else 120)
    a.preset, a.warmup = ('tiny', 0) if a.dry_run else ('paper', 2)   # the counted step warms up too
    a.run_tiles = a.run_tiles or (24 if a.dry_run else None)
    return a


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    "The bf16 dense peak of `device` in TFLOPS: `override`, else from the table by device name (None on the CPU or an unknown GPU)."
    if override or device.type != 'cuda': return override
    name = torch.cuda.get_device_name(device)
    return next((v for part, v in PEAK_BF16_TFLOPS if part in name), None)


def sync(device: torch.device) -> None:
    "Wait for the device's queued work (a no-op on the CPU)."
    if device.type == 'cuda': torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    "Drop unreachable objects and return cached GPU memory, so the next batch size starts clean."
    gc.collect()
    if device.type == 'cuda': torch.cuda.empty_cache()


def training_tiles() -> np.ndarray:
    "The sample's training tiles (the paper split)."
    tiles = load_tiles(sample_data())
    return tiles[split_indices(len(tiles))[0]]


def repeated(tiles: np.ndarray, n: int) -> np.ndarray:
    "`tiles`, repeated to at least `n` (so a batch of n/2 leaves two batches per epoch)."
    return np.concatenate([tiles] * math.ceil(n / len(tiles)))


def endless_batches(tr: Trainer) -> Iterator:
    "The trainer's batches, epoch after epoch, in the order `fit` draws them."
    epoch = 0
    while True:
        yield from tr._batches(epoch, 0)
        epoch += 1


def run_steps(tr: Trainer, batches: Iterator, n: int) -> None:
    "`n` training steps as `fit` runs them: the step's seed, the stage's step function, the step counter."
    for _ in range(n):
        tr.batch_gen.manual_seed(tr.seed * 1_000_003 + tr.step)
        tr.step_fn(tr, next(batches))
        tr.step += 1


def count_flops(fn: Callable[[], None]) -> int:
    "FLOPs of one call of `fn` (matmuls, convolutions, attention), as `FlopCounterMode` counts them."
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as fc: fn()
    return fc.get_total_flops()


def measure(tr: Trainer, steps: int, peak: float | None, warmup: int, flops: int | None = None) -> dict:
    "Step time (mean of `steps` after `warmup`), FLOPs per step (counted on one step unless given), share of `peak` TFLOPS and peak GPU memory of trainer `tr`."
    dev, batches = tr.device, endless_batches(tr)
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    run_steps(tr, batches, warmup)
    flops = flops or count_flops(lambda: run_steps(tr, batches, 1))
    sync(dev); t0 = time.perf_counter()
    run_steps(tr, batches, steps)
    sync(dev); step_s = (time.perf_counter() - t0) / steps
    tflops = flops / step_s / 1e12
    return dict(batch=tr.batch_size, step_ms=1e3 * step_s, tiles_per_s=tr.batch_size / step_s, tflop_per_step=flops / 1e12,
                tflops=tflops, peak_share=tflops / peak if peak else None,
                peak_mem_gb=torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None)


def is_oom(e: BaseException) -> bool:
    "Whether `e` says the GPU ran out of memory (torch's own error, or a cuDNN/cuBLAS allocation failure)."
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and
                                                     any(s in str(e) for s in ('out of memory', 'ALLOC_FAILED')))


def batch_sweep(build: Callable[[int], Trainer], a: argparse.Namespace, peak: float | None) -> list[dict]:
    "`measure` of the trainers `build(batch)` for batch 16 and doubling until OOM or `--max-batch` (dry run: 16 and 32)."
    rows, b = [], 16
    while b <= (32 if a.dry_run else a.max_batch):
        try:
            rows.append(measure(build(b), a.steps, peak, a.warmup)); print(f"  batch {b}: {rows[-1]['step_ms']:.1f} ms/step", flush=True)
        except Exception as e:
            if not is_oom(e): raise
            print(f"  batch {b}: out of memory", flush=True); break
        finally: free(a.device)
        b *= 2
    if not rows: raise RuntimeError("batch 16 does not fit")
    return rows


@dataclass
class Check:
    "What every section reads: the options, the preset's config, the sample's training tiles, a scratch folder, the peak TFLOPS, the figures so far."
    a: argparse.Namespace
    cfg: RunConfig
    train: np.ndarray
    tmp: Path
    peak: float | None
    results: dict


def frozen_vqvae(c: Check) -> VQVAE:
    "The preset's VQ-VAE, untrained (the step costs do not depend on the weights), frozen on the device."
    with seeded(765): vq = VQVAE(c.cfg.vqgan)
    return vq.to(c.a.device).eval().requires_grad_(False)


def unet_trainer(c: Check, vq: VQVAE, batch: int, name: str, compile: bool = False) -> Trainer:
    "The joint stage's `Trainer` for K = 14 (the preset's `LDMConfig`) at `batch` (optionally torch.compile'd)."
    cfg = c.cfg.for_k(SK).replace(batch_size=batch, compile=compile)
    unet, head = build_models(cfg, vq.cfg.z_channels)
    return phase_trainer('ldm', unet, head, repeated(c.train, 2 * batch), vq, cfg, c.tmp/name, c.a.device, progress=False)


def vqgan_batch_trainer(c: Check, batch: int) -> Trainer:
    "The VQ-GAN stage's `Trainer` (the preset's `VQGANConfig`, discriminator from step 0) at `batch`."
    cfg = c.cfg.vqgan.replace(batch_size=batch, disc_start=0)
    return vqgan_trainer(repeated(c.train, 2 * batch), cfg, c.tmp/'vqgan', c.a.device, progress=False)

def section_unet(c: Check) -> dict:
    "Joint-stage step at batch 16 and up to the largest batch that fits."
    vq = frozen_vqvae(c)
    return dict(batches=batch_sweep(lambda b: unet_trainer(c, vq, b, 'unet'), c.a, c.peak))


def section_unet_compile(c: Check) -> dict:
    "Joint-stage step at batch 16 with torch.compile (its first steps, which compile, are timed apart; FLOPs: the eager step's)."
    a, eager = c.a, c.results.get('unet', {}).get('batches')
    if a.dry_run or a.no_compile: return dict(skipped='dry run: compiling on the CPU alone takes minutes' if a.dry_run else '--no-compile')
    tr = unet_trainer(c, frozen_vqvae(c), 16, 'unet_compile', compile=True)
    sync(a.device); t0 = time.perf_counter()
    run_steps(tr, endless_batches(tr), 3)
    sync(a.device)
    flops = eager and eager[0]['tflop_per_step'] * 1e12
    return dict(compile_s=time.perf_counter() - t0, **measure(tr, a.steps, c.peak, warmup=1, flops=flops))


def section_vqgan(c: Check) -> dict:
    "VQ-GAN step at batch 16 and up to the largest batch that fits."
    return dict(batches=batch_sweep(lambda b: vqgan_batch_trainer(c, b), c.a, c.peak))


def section_one_k(c: Check) -> dict:
    "One K of the sweep (`train_ldm`, K = 14) capped at `--k-steps`, extrapolated to the paper's epochs with the measured batch-16 step."
    a, train, cfg = c.a, c.train, c.cfg.for_k(SK)
    sync(a.device); t0 = time.perf_counter()
    train_ldm(train, frozen_vqvae(c), cfg, c.tmp/f'k{SK}', device=a.device, max_steps=a.k_steps, progress=False)
    sync(a.device); wall = time.perf_counter() - t0
    unet = c.results.get('unet', {}).get('batches')
    step_s = unet[0]['step_ms'] / 1e3 if unet else wall / a.k_steps
    overhead = max(0., wall - a.k_steps * step_s)            # latents, scale, epoch reports, checkpoint
    steps = {n: cfg.epochs * math.ceil(n / cfg.batch_size) for n in (len(train), 10_000)}
    return dict(k=SK, capped_steps=a.k_steps, capped_s=wall, step_s=step_s, overhead_s=overhead,
                full_sample_h=(overhead + steps[len(train)] * step_s) / 3600, full_10k_h=(overhead + steps[10_000] * step_s) / 3600,
                sweep_10k_h=len(c.cfg.ks) * (overhead + steps[10_000] * step_s) / 3600)


def seconds_left(a: argparse.Namespace, limit: int, reserve: int = 0) -> int:
    "A subprocess's timeout: `limit`, or less so that `reserve` seconds of the budget stay for what follows (at least 30)."
    return max(30, min(limit, int(a.deadline - time.perf_counter()) - reserve))


def timed_command(cmd: list[str], timeout: int, env: dict | None = None) -> dict:
    "Run `cmd` from the repository root (killed after `timeout` s); its wall time and last output lines. A non-zero exit is an error."
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         env={**os.environ, **(env or {})})
    try: out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); p.communicate()        # its own process group: the chapters' worker processes too
        raise TimeoutError(f"{' '.join(cmd[:3])}…: stopped after {timeout} s") from None
    wall, tail = time.perf_counter() - t0, out.strip().splitlines()[-8:]
    if p.returncode: raise RuntimeError(f"exit {p.returncode} after {wall:.0f} s:\n    " + '\n    '.join(tail))
    return dict(seconds=wall, tail=tail)


def section_chapters(c: Check) -> dict:
    "The chapters' `#| gpu` cells end to end under a step cap (skipped in the dry run: CI runs them on the CPU itself)."
    a = c.a
    if a.dry_run: return dict(skipped="dry run: on 2 CPU cores they take longer than this check's budget; CI runs "
                                      "`tools/run_chapters.py --gpu --max-steps 2` separately")
    r = timed_command([sys.executable, 'tools/run_chapters.py', '--gpu', '--max-steps', str(a.chapter_steps)],
                      seconds_left(a, a.chapters_timeout, reserve=a.run_timeout))
    return dict(max_steps=a.chapter_steps, **r)


def section_run(c: Check) -> dict:
    "`cldm run --preset tiny` on the sample (dry run: smoke on 24 tiles) on the device into a temporary folder, timed."
    a, cldm = c.a, shutil.which('cldm')
    if cldm is None: raise FileNotFoundError("cldm: not on PATH; install the package first (pip install -e .)")
    data = sample_data() if a.run_tiles is None else tiles_subset(a.run_tiles, c.tmp/'run_tiles')
    r = timed_command([cldm, 'run', '--data', str(data), '--preset', a.run_preset, '--device', a.device.type, '--out', str(c.tmp/'run')],
                      seconds_left(a, a.run_timeout), env=dict(MPLBACKEND='Agg'))
    return dict(preset=a.run_preset, tiles=a.run_tiles or len(load_tiles(data)), **r)


SECTIONS = dict(unet=section_unet, unet_compile=section_unet_compile, vqgan=section_vqgan, one_k=section_one_k,
                chapters=section_chapters, run=section_run)

def run_section(name: str, c: Check) -> bool:
    "Run one section: its figures (and seconds) into `c.results[name]`, or the error, printed. Whether it succeeded."
    fn, results = SECTIONS[name], c.results
    print(f"== {name}: {fn.__doc__}", flush=True)
    t0 = time.perf_counter()
    try: results[name] = dict(fn(c), section_s=time.perf_counter() - t0); ok = True
    except Exception as e:
        traceback.print_exc()
        results[name] = dict(error=f"{type(e).__name__}: {e}", section_s=time.perf_counter() - t0); ok = False
    print(f"   {name}: {'ok' if ok else 'FAILED'} in {results[name]['section_s']:.0f} s", flush=True)
    return ok


def _fmt(v: float | None, f: str, scale: float = 1., unit: str = '') -> str:
    "`v × scale` formatted with `f` and `unit`, or a dash when there is no figure."
    return '—' if v is None else format(v * scale, f) + unit


def step_table(results: dict) -> pd.DataFrame:
    "One row per model and batch size: step time, throughput, FLOPs, share of the peak, peak memory."
    rows = []
    for name, label in (('unet', 'U-Net (joint stage)'), ('unet_compile', 'U-Net (joint), compiled'), ('vqgan', 'VQ-GAN')):
        r = results.get(name, {})
        for r in r.get('batches') or ([r] if 'step_ms' in r else []):
            rows.append({'model': label, 'batch': r['batch'], 'ms/step': _fmt(r['step_ms'], '.1f'),
                         'tiles/s': _fmt(r['tiles_per_s'], '.0f'), 'TFLOP/step': _fmt(r['tflop_per_step'], '.3f'),
                         'TFLOPS': _fmt(r['tflops'], '.2f'), 'of peak': _fmt(r['peak_share'], '.1f', 100, ' %'),
                         'peak mem GB': _fmt(r['peak_mem_gb'], '.1f')})
    return pd.DataFrame(rows)


def other_lines(results: dict) -> list[str]:
    "The one-K extrapolation, the chapters' and the run's times, skipped and failed sections, as lines."
    lines = []
    if 'capped_s' in (k := results.get('one_k', {})):
        lines.append(f"one K (train_ldm, K = {k['k']}): {k['capped_steps']} steps in {k['capped_s']:.1f} s (overhead {k['overhead_s']:.1f} s, "
                     f"{1e3 * k['step_s']:.1f} ms/step) → the preset's epochs on the sample {k['full_sample_h']:.2f} h; "
                     f"on 10,000 tiles {k['full_10k_h']:.1f} h per K, {k['sweep_10k_h']:.1f} h for K = 10…16")
    for name, what in (('chapters', "#| gpu cells (tools/run_chapters.py --gpu)"), ('run', 'cldm run')):
        r = results.get(name, {})
        if 'seconds' in r: lines.append(f"{what}: {r['seconds']:.0f} s" + (f" (--max-steps {r['max_steps']})" if 'max_steps' in r else f" (--preset {r['preset']}, {r['tiles']} tiles)"))
    for name, r in results.items():
        if isinstance(r, dict) and 'skipped' in r: lines.append(f"{name}: skipped ({r['skipped']})")
        if isinstance(r, dict) and 'error' in r: lines.append(f"{name}: FAILED ({r['error'].splitlines()[0][:160]})")
    return lines


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    t0, peak = time.perf_counter(), peak_tflops(a.device, a.peak_tflops)
    name = torch.cuda.get_device_name(a.device) if a.device.type == 'cuda' else 'cpu'
    print(f"gpu_check: preset {a.preset}, device {name}, bf16 dense peak {_fmt(peak, '.0f', unit=' TFLOPS')}, torch {torch.__version__}"
          + (" (dry run: the tiny preset's models on the CPU; the figures check the code, they mean nothing)" if a.dry_run else ''), flush=True)
    torch.manual_seed(0)
    train, results = training_tiles(), dict(device=name, peak_tflops=peak, dry_run=a.dry_run)
    with tempfile.TemporaryDirectory(prefix='gpu-check-') as d:
        c = Check(a, RunConfig.preset_config(a.preset), train, Path(d), peak, results)
        failed = [s for s in SECTIONS if not run_section(s, c)]
    results['total_s'] = time.perf_counter() - t0
    print(f"\n== figures: preset {a.preset}, {name}, share of the bf16 dense peak {_fmt(peak, '.0f', unit=' TFLOPS')}"
          + (" (dry run)" if a.dry_run else ''))
    print(step_table(results).to_string(index=False))
    print('\n'.join(other_lines(results)))
    print(f"total {results['total_s']:.0f} s; {len(SECTIONS) - len(failed)} sections ok, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ''))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(results, indent=1, default=str))
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
