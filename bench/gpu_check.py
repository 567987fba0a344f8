"""One-shot GPU check of the `paper` preset on the built-in sample (195 tiles, 128×128): every stage's step timed,
the joint step four ways, kernel launches counted, bf16 against fp32, a resume, and the whole paper job projected.

Run it through `bash bench/gpu_check.sh` (which installs the packed wheels and VGG16 weights first). Sections, in
order (each writes its line to `OUT/gpu_check.jsonl` as soon as it ends, so a killed run keeps what it measured):

- `preflight`: Python, torch, the device, every module the check imports, the VGG16 pack (rebuilt into a temporary
  `TORCH_HOME`); names what is missing;
- `joint`, `vqgan`, `finetune1`, `finetune2`: each stage's training step at batch 16, eager: ms/step, tiles/s,
  TFLOP/step (`FlopCounterMode` on a full batch of a shape already run), share of the bf16 dense peak, peak memory;
- `generation`: a sampler step of a 64-tile batch, DDPM (the paper's, T = 1,000 steps) and DDIM-50, and a decode;
- `launches`: kernel-launching ATen operations of one joint step (views and metadata excluded); on CUDA also the
  launches the profiler records;
- `projection`: the paper job on 10,000 training tiles, stage by stage (`paper_cost.paper_stages`), from those times;
- `precision`: bf16 and fp32 joint-stage losses on the same batches agree (`--precision-steps`, default 300);
- `resume`: 2 steps, a checkpoint, 2 more resumed, against 4 straight;
- `joint_compile`, `joint_cuda_graphs`, `joint_seven_ks`: the joint step under `torch.compile`, under
  `torch.compile(mode='reduce-overhead')` (CUDA graphs), and the seven Ks trained together (`sweep.fused`: one step for K = 10…16, with its operation count);
- `batches`: the joint step at batch 32, 64, … until out of memory.

Every timed step runs under `torch.cuda.set_sync_debug_mode('error')`. One deadline holds for the whole run
(`--budget-s`, default 360): a section still running then stops, those after it are recorded as skipped.

    bash bench/gpu_check.sh [--out DIR] [--budget-s 360] [--peak-tflops T] [--steps N] ...
    bash bench/gpu_check.sh --dry-run     # the same code on the CPU with the tiny preset's models (CI): figures mean nothing
"""
from __future__ import annotations
import argparse, importlib, importlib.util, json, os, platform, signal, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ('numpy', 'pandas', 'torch', 'torchvision', 'safetensors', 'lpips', 'cldm_nb.config', 'cldm_nb.diffusion',
          'cldm_nb.vqgan', 'cldm_nb.weights', 'paper_cost', 'gpu_sections', 'unet_step', 'vgg16_pack')
PACK = ROOT/'.pack'


class OutOfBudget(Exception):
    "The run's deadline passed."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    "The command line (see the module docstring)."
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dry-run', action='store_true', help="on the CPU: the tiny preset's models, few steps, no compiling")
    ap.add_argument('--out', default=os.environ.get('OUT') or 'runs/gpu_check', help='folder of gpu_check.jsonl (default $OUT, else runs/gpu_check)')
    ap.add_argument('--budget-s', type=float, default=360., help='seconds for the whole run (default 360)')
    ap.add_argument('--vgg16', type=Path, default=PACK/'vgg16_conv_fp16.safetensors', help='the packed VGG16 (bench/device_pack.sh)')
    ap.add_argument('--peak-tflops', type=float, help='bf16 dense peak of the device (default: from its name)')
    ap.add_argument('--steps', type=int, help='timed steps per measurement (default 10; dry run 2)')
    ap.add_argument('--sampler-steps', type=int, help='timed sampler steps (default 20; dry run 2)')
    ap.add_argument('--precision-steps', type=int, help='steps of the bf16/fp32 comparison (default 300; dry run 4)')
    ap.add_argument('--max-batch', type=int, default=4096, help='where the batch doubling stops (default 4096)')
    ap.add_argument('--no-compile', action='store_true', help='skip the torch.compile timings')
    a = ap.parse_args(argv)
    if a.budget_s <= 0: ap.error(f"--budget-s: a positive number of seconds, got {a.budget_s}")
    a.steps = a.steps or (2 if a.dry_run else 10)
    a.sampler_steps = a.sampler_steps or (2 if a.dry_run else 20)
    a.precision_steps = a.precision_steps or (4 if a.dry_run else 300)
    a.warmup = 1 if a.dry_run else 3
    a.preset = 'tiny' if a.dry_run else 'paper'
    return a


class Report:
    "The sections' records, one JSON line each, rewritten atomically into `out/gpu_check.jsonl` after every section."
    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.lines = out/'gpu_check.jsonl', []

    def add(self, section: str, record: dict) -> None:
        self.lines.append(json.dumps(dict(section=section, **record), default=str))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix='.gpu_check.', suffix='.tmp')
        with os.fdopen(fd, 'w') as f: f.write('\n'.join(self.lines) + '\n')
        os.replace(tmp, self.path)


PACK_FIX = "run `bash bench/device_pack.sh` where a package index is reachable, then `bash bench/gpu_check.sh` (it installs .pack/wheels)"


def preflight(a: argparse.Namespace) -> dict:
    "Python, torch and the device; every module the check imports (located first, in a second, then imported); the VGG16 pack, rebuilt into torch's cache ($TORCH_HOME). Raises naming all that is missing, each with its fix."
    missing = [f"module {n} ({PACK_FIX})" for n in NEEDED if importlib.util.find_spec(n.split('.')[0]) is None]
    if not a.vgg16.is_file(): missing.append(f"the VGG16 pack {a.vgg16} ({PACK_FIX})")
    import torch
    if not a.dry_run and not torch.cuda.is_available(): missing.append('a CUDA device (torch.cuda.is_available() is False; --dry-run runs on the CPU)')
    if not missing:
        for name in NEEDED:
            try: importlib.import_module(name)
            except Exception as e: missing.append(f"module {name}: {type(e).__name__}: {e}")
    if not missing:
        try: importlib.import_module('vgg16_pack').unpack(a.vgg16)
        except (OSError, ValueError) as e: missing.append(f"a readable VGG16 pack ({e})")
    if missing: raise RuntimeError("missing: " + '; '.join(missing))
    return dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
                device=torch.cuda.get_device_name() if not a.dry_run else 'cpu', cldm_nb=importlib.import_module('cldm_nb').__file__)


def run_section(name: str, fn, c, report: Report) -> bool:
    "Run one section into `c.results[name]` and the report (figures and seconds, or the error); whether it succeeded."
    print(f"== {name}: {fn.__doc__.splitlines()[0]}", flush=True)
    t0 = time.perf_counter()
    try: rec, ok = dict(fn(c)), True
    except OutOfBudget:
        rec, ok = dict(error=f'stopped at the deadline (--budget-s {c.a.budget_s:g})'), False
    except Exception as e:
        traceback.print_exc()
        rec, ok = dict(error=f"{type(e).__name__}: {e}"), False
    rec['section_s'] = round(time.perf_counter() - t0, 2)
    c.results[name] = rec
    report.add(name, rec)
    status = 'skipped' if 'skipped' in rec else 'not available' if 'not_available' in rec else 'ok' if ok else 'FAILED'
    print(f"   {name}: {status} in {rec['section_s']:.0f} s: {_summary(rec)}", flush=True)
    return ok


def _summary(rec: dict) -> str:
    "A section's record in one short line."
    keep = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items() if not isinstance(v, (dict, list))}
    return json.dumps(keep, default=str)[:400]


def _deadline(signum, frame):
    raise OutOfBudget()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    t0, report = time.perf_counter(), Report(Path(a.out))
    signal.signal(signal.SIGALRM, _deadline); signal.setitimer(signal.ITIMER_REAL, a.budget_s)
    with tempfile.TemporaryDirectory(prefix='gpu-check-') as d:
        os.environ['TORCH_HOME'] = str(Path(d)/'torch')          # the VGG16 file rebuilt from the pack, for this run only
        try: pre = preflight(a)
        except Exception as e:
            report.add('preflight', dict(error=str(e), section_s=round(time.perf_counter() - t0, 2)))
            print(f"gpu_check: preflight FAILED after {time.perf_counter() - t0:.1f} s: {e}", file=sys.stderr)
            return 2
        report.add('preflight', dict(pre, section_s=round(time.perf_counter() - t0, 2)))
        print(f"gpu_check: preflight ok in {time.perf_counter() - t0:.1f} s: {pre}", flush=True)
        import torch
        import gpu_sections as g
        from cldm_nb.config import RunConfig
        a.device = torch.device('cpu' if a.dry_run else 'cuda')
        torch.manual_seed(0)
        results, failed = dict(device=pre['device'], dry_run=a.dry_run), []
        c = g.Check(a, RunConfig.preset_config(a.preset), g.training_tiles(), Path(d), g.peak_tflops(a.device, a.peak_tflops), results)
        for name, fn in g.SECTIONS.items():
            if time.perf_counter() - t0 >= a.budget_s:
                report.add(name, dict(skipped=f'budget spent (--budget-s {a.budget_s:g})', section_s=0.)); failed.append(name); continue
            if not run_section(name, fn, c, report): failed.append(name)
    signal.setitimer(signal.ITIMER_REAL, 0)
    p = results.get('projection', {})
    if p.get('total_hours') is not None:
        print(f"\npaper job, 10,000 training tiles: {p['total_hours']:.1f} h ({p['basis']})")
        for r in p['stages']: print(f"  {r['stage']}: {r['hours']:.2f} h")
    print(f"gpu_check: {len(g.SECTIONS) - len(failed)} of {len(g.SECTIONS)} sections ok in {time.perf_counter() - t0:.0f} s"
          + (f"; failed or skipped: {', '.join(failed)}" if failed else '') + f"; figures in {report.path}")
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
