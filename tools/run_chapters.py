#!/usr/bin/env python
"""Execute the chapters (nbs/*.ipynb, then the lab notebooks nbs/lab/*.ipynb) in place and keep their outputs, or check them (CI).

    python tools/run_chapters.py                  # every chapter and lab notebook, in place, then nbdev_clean on them
    python tools/run_chapters.py nbs/04d_diffusion.ipynb nbs/05_finetune.ipynb
    python tools/run_chapters.py nbs/lab/*.ipynb  # the lab notebooks only
    python tools/run_chapters.py --check          # outputs present, up to date, figures shown
    python tools/run_chapters.py --gpu            # the `#| gpu` cells on this machine under a step cap

Cells run as `nbdev_test` runs them (IN_TEST=1, one fresh shell per notebook, in the notebook's
folder, cells flagged with settings.ini's `tst_flags` skipped), with inline PNG figures. Each
notebook gets `metadata.cldm_executed.code_sha256`, the hash of its code cells when it ran;
`--check` fails when that is missing (never run here) or no longer matches (the outputs came
from other code), or when a cell that draws a figure has no image output.

`--gpu` executes the notebooks that hold `#| gpu` cells, gpu cells included, in a scratch copy
of nbs/ (your runs/ are not touched), in chapter order (later chapters read the checkpoints of
earlier ones). Only while a gpu cell runs is CLDM_MAX_STEPS set (default 2), which
`cldm_nb.train.step_cap` reads; CLDM_TILES / CLDM_DATA point at the first 24 sample tiles unless
they are set. Nothing is written back.
"""
import argparse, hashlib, json, os, re, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
# a call that draws a figure, in a cell that is not a definition
DRAWS = re.compile(r'\b(plt\.(plot|imshow|subplots|figure|bar|hist|scatter)|show_tiles|plot_\w+|\w+_gallery|cluster_grid)\(')

def chapters() -> list[Path]:
    "The notebooks of the book, in order: the chapters, then the lab notebooks of nbs/lab/ (private `_*.ipynb` left out)."
    return [p for folder in (NBS, NBS/'lab') for p in sorted(folder.glob('*.ipynb')) if not p.name.startswith('_')]

def tst_flags() -> set[str]:
    "settings.ini's `tst_flags`: cells flagged with these are skipped by nbdev_test and here."
    m = re.search(r'^tst_flags\s*=\s*(.*)$', (ROOT/'settings.ini').read_text(), re.M)
    return set(m.group(1).split()) if m else set()

def src(cell) -> str: return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def directives(cell) -> dict[str, list[str]]:
    "The cell's leading `#| name args` lines."
    out = {}
    for line in src(cell).splitlines():
        if not line.strip(): continue
        m = re.match(r'\s*#\|\s*([\w-]+:?)\s*(.*)', line)
        if not m: break
        out[m.group(1)] = m.group(2).split()
    return out

def code_sha(nb: dict) -> str:
    "Hash of the notebook's code cells (their sources, in order)."
    return hashlib.sha256('\n\x00'.join(src(c) for c in nb['cells'] if c['cell_type'] == 'code').encode()).hexdigest()[:16]

def runs_here(cell, skip: set[str]) -> bool:
    "Whether the runner executes `cell` (the rules of nbdev_test)."
    if cell['cell_type'] != 'code' or 'nbdev_export' + '(' in src(cell): return False
    d = directives(cell)
    if d.get('eval:', [''])[0].lower() == 'false': return False
    return not (skip & d.keys())

def _final_lines(text: str) -> str:
    "Progress bars write `\\r`-separated updates: keep what a terminal would show last on each line."
    return '\n'.join(line.rstrip('\r').split('\r')[-1] for line in text.split('\n'))

def _plain(o):
    "execnb's output objects → plain JSON values."
    if isinstance(o, dict): return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return [_plain(v) for v in o]
    return o

def small_png(b64: str, min_bytes: int = 40_000) -> str:
    "A large PNG (photos of tissue) re-encoded with a 256-colour palette when that is smaller; base64 in and out."
    import base64, io
    from PIL import Image
    raw = base64.b64decode(b64)
    if len(raw) < min_bytes: return b64
    im = Image.open(io.BytesIO(raw)).convert('RGBA')
    flat = Image.alpha_composite(Image.new('RGBA', im.size, 'white'), im).convert('RGB')
    buf = io.BytesIO(); flat.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(raw) else b64

def execute(path: str, skip: list[str], cap: str | None = None) -> tuple[str, float, str | None]:
    "Run one notebook in a fresh process; write it back with its outputs. Returns (path, seconds, error)."
    os.environ['IN_TEST'] = '1'
    os.environ.pop('CLDM_MAX_STEPS', None)
    from execnb.shell import CaptureShell
    path, skip, t0 = Path(path), set(skip), time.time()
    nb = json.loads(path.read_text())
    shell = CaptureShell(path, mpl_format='png')
    shell.run("import matplotlib as _mpl; _mpl.rcParams['figure.dpi'] = 72")
    os.chdir(path.parent)
    n = 0
    for i, cell in enumerate(nb['cells']):
        if cell['cell_type'] == 'code':
            cell['outputs'], cell['execution_count'] = [], None
        if not runs_here(cell, skip): continue
        gpu = 'gpu' in directives(cell)
        if gpu and cap: os.environ['CLDM_MAX_STEPS'] = cap
        try: outs = shell.run(src(cell))
        finally: os.environ.pop('CLDM_MAX_STEPS', None)
        if shell.exc is not None:
            return str(path), time.time() - t0, f"cell {i} ({cell.get('id')}): {type(shell.exc).__name__}: {shell.exc}\n{src(cell)[:400]}"
        n += 1
        cell['execution_count'] = n
        outs = _plain(list(outs or []))
        for o in outs:
            if o.get('output_type') == 'stream': o['text'] = _final_lines(''.join(o['text']) if isinstance(o['text'], list) else o['text'])
            if 'execution_count' in o: o['execution_count'] = n
            if 'image/png' in o.get('data', {}): o['data']['image/png'] = small_png(o['data']['image/png'])
        cell['outputs'] = outs
    nb.setdefault('metadata', {})['cldm_executed'] = dict(code_sha256=code_sha(nb))
    if cap is None: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return str(path), time.time() - t0, None

def check(paths: list[Path], skip: set[str]) -> list[str]:
    "Problems with the committed outputs: never made, stale, or a figure that is not shown."
    problems = []
    for p in paths:
        nb = json.loads(p.read_text()); rel = p.relative_to(ROOT)
        cells = [c for c in nb['cells'] if runs_here(c, skip)]
        if not cells: continue
        fix = f"run `python tools/run_chapters.py {rel}` and commit the result"
        stamp = nb.get('metadata', {}).get('cldm_executed', {}).get('code_sha256')
        if stamp is None: problems.append(f"{rel}: never executed with its outputs kept; {fix}."); continue
        if stamp != code_sha(nb): problems.append(f"{rel}: outputs are stale (the code changed after they were made); {fix}."); continue
        for c in cells:
            if 'export' in directives(c) or not DRAWS.search(src(c)): continue
            if not any('image/png' in o.get('data', {}) for o in c.get('outputs', [])):
                problems.append(f"{rel}: cell {c.get('id')} draws a figure but shows no image; {fix}.")
    return problems

def tiles_subset(n: int, dest: Path) -> Path:
    "The first `n` sample tiles, copied into `dest` (a small folder for the capped gpu run)."
    from cldm_nb.data import sample_data
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(sample_data().glob('*.png'))[:n]: shutil.copy(f, dest/f.name)
    return dest

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to run (default: every chapter)')
    ap.add_argument('--check', action='store_true', help='check the committed outputs instead of running')
    ap.add_argument('--gpu', action='store_true', help='run the #| gpu cells under the step cap, in a scratch copy')
    ap.add_argument('--max-steps', default='2', help='CLDM_MAX_STEPS for the gpu cells (default 2)')
    ap.add_argument('--tiles', type=int, default=24, help='sample tiles for the gpu cells unless CLDM_TILES is set (default 24)')
    ap.add_argument('-j', '--workers', type=int, default=min(2, os.cpu_count() or 1), help='notebooks run at once')
    a = ap.parse_args()
    paths = [Path(p).resolve() for p in a.notebooks] or chapters()
    for p in paths:
        if not p.is_file(): sys.exit(f"{p}: no such notebook.")
    skip = tst_flags()
    if a.check:
        problems = check(paths, skip)
        print('\n'.join(problems) or f"outputs of {len(paths)} notebooks present and up to date")
        sys.exit(1 if problems else 0)
    t0, cap, tmp = time.time(), None, None
    if a.gpu:
        cap, skip = a.max_steps, skip - {'gpu'}
        tmp = Path(tempfile.mkdtemp(prefix='cldm-gpu-'))
        shutil.copytree(NBS, tmp/'nbs', ignore=shutil.ignore_patterns('runs', '_proc', '.ipynb_checkpoints'))
        paths = [tmp/'nbs'/(p.relative_to(NBS) if p.is_relative_to(NBS) else p.name) for p in paths
                 if any('gpu' in directives(c) for c in json.loads(p.read_text())['cells'])]
        if 'CLDM_TILES' not in os.environ:
            os.environ['CLDM_TILES'] = os.environ.setdefault('CLDM_DATA', str(tiles_subset(a.tiles, tmp/'tiles')))
        a.workers = 1                                     # in order: each chapter reads the one before's checkpoints
    failed = []
    try:
        with ProcessPoolExecutor(a.workers, mp_context=get_context('spawn'), max_tasks_per_child=1) as ex:
            jobs = [ex.submit(execute, str(p), sorted(skip), cap) for p in paths]
            for job in jobs:
                p, secs, err = job.result()
                print(f"{Path(p).name}: {'FAILED' if err else 'ok'} in {secs:.0f} s" + (f"\n  {err}" if err else ''), flush=True)
                if err: failed.append(p)
                if err and a.gpu: ex.shutdown(cancel_futures=True); break
    finally:
        if tmp: shutil.rmtree(tmp, ignore_errors=True)
    if not a.gpu:                                         # only the notebooks written here: others may be open elsewhere
        for p in paths: subprocess.run(['nbdev_clean', '--fname', str(p)], cwd=ROOT, check=True)
    print(f"{len(paths) - len(failed)} notebooks ran, {len(failed)} failed, in {time.time() - t0:.0f} s"
          + (f" (gpu cells on the CPU, CLDM_MAX_STEPS={cap})" if a.gpu else ''))
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
