"""A lever of `cldm run`, judged over seeds: whole runs of a preset with and without the lever, side by side.

On the sample, one seed's spread in KID is as large as most levers' effect, so a lever is compared with
the preset over several seeds. Each arm is the preset with `field: value` overrides (dotted paths into the
run's config, values as JSON); the arm `preset` (no overrides) is always run. Every (arm, seed) is a whole
`cldm run` (its `seed` and every stage's `seed` set to the seed) in `OUT/ARM/sSEED`, `--jobs` of them at
a time on `--threads` threads each; a run that finished is read back, not run again (re-running resumes).
Prints one row per run from its report's numbers (test PSNR, codes used, the reconstructions' KID, K, KID
± spread, gap = KID − reconstructions' KID, FD, precision, recall, copy share, per-cluster accuracy, RGB
mean) and, per arm, the mean and standard deviation over its seeds. Times are only comparable between
runs that shared the machine alike.

    python bench/seed_arms.py --out runs/arms --seeds 765 1 2 --jobs 3 \\
        --arm fsq3 '{"vqgan.quantizer": "fsq", "vqgan.fsq_levels": [3, 3, 3, 3], "vqgan.z_channels": 4, "ldm.unet.in_channels": 4}'
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from cldm_nb.pipeline import RunConfig

SEEDED = ('vqgan', 'ldm', 'finetune1', 'finetune2')        # the stages with a seed of their own


def arm_config(preset: str, overrides: dict, seed: int) -> dict:
    "The preset's config as a dict, with the dotted-path `overrides` and `seed` everywhere; checked by `RunConfig`."
    d = RunConfig.preset_config(preset).to_dict()
    for path, value in {**overrides, 'seed': seed, **{f'{s}.seed': seed for s in SEEDED}}.items():
        *parents, key = path.split('.')
        node = d
        for p in parents:
            if not isinstance(node.get(p), dict): raise SystemExit(f"--arm: {path!r} is not a field of the run's config.")
            node = node[p]
        if key not in node: raise SystemExit(f"--arm: {path!r} is not a field of the run's config.")
        node[key] = value
    try: return RunConfig.from_dict(d).to_dict()               # refuses values that do not fit together, by name
    except (TypeError, ValueError) as e: raise SystemExit(f"--arm: {e}") from None


def run_one(cfg: dict, out: Path, threads: int, device: str) -> Path:
    "A whole `cldm run` of `cfg` in `out` (skipped when its report exists); its log is `out.log`."
    if (out/'report.md').is_file(): return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_file = out.parent/f'{out.name}.json'
    cfg_file.write_text(json.dumps(cfg, indent=1))
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads)}
    cmd = [sys.executable, '-c', 'from cldm_nb.cli import main; main()', 'run', '--config', str(cfg_file), '--device', device, '--out', str(out)]
    with open(out.parent/f'{out.name}.log', 'w') as log:
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode:
            raise SystemExit(f"cldm run failed for {out}; see {out.parent/f'{out.name}.log'}.")
    return out


def run_row(out: Path) -> dict:
    "The numbers of one finished run, from its report's files."
    m = json.loads((out/'metrics.json').read_text()); q = m['distribution']; rec = q['reconstructions']
    acc = pd.read_csv(out/'cluster_accuracy.csv').accuracy
    codes = pd.read_csv(out/'vqgan'/'vqgan_log.csv').codes_used.iloc[-1]
    return dict(psnr=m['reconstruction']['test']['psnr'], codes_used=int(codes), recon_kid=1e3 * rec['kid'],
                k=json.loads((out/'model.json').read_text())['k'], kid=1e3 * q['kid'], kid_std=1e3 * q['kid_std'],
                gap=1e3 * (q['kid'] - rec['kid']), fd=q['fd'], precision=q['precision'], recall=q['recall'],
                copy_share=m['memorisation']['copy_share'], acc_mean=acc.mean(), acc_min=acc.min(),
                rgb='/'.join(f'{x:.0f}' for x in q['colour_fake']['mean']))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--arm', nargs=2, action='append', default=[], metavar=('NAME', 'JSON'),
                    help='an arm: a name and a JSON object of dotted-path overrides of the preset (repeatable)')
    ap.add_argument('--preset', default='cpu')
    ap.add_argument('--seeds', type=int, nargs='+', default=[765, 1, 2])
    ap.add_argument('--out', required=True, help='folder of the runs (OUT/ARM/sSEED)')
    ap.add_argument('--jobs', type=int, default=2, help='runs at a time')
    ap.add_argument('--threads', type=int, default=1, help='threads per run')
    ap.add_argument('--device', default='cpu')
    args = ap.parse_args()
    arms = {'preset': {}}
    for name, text in args.arm:
        try: arms[name] = json.loads(text)
        except json.JSONDecodeError as e: raise SystemExit(f"--arm {name}: not a JSON object ({e}).") from None
        if not isinstance(arms[name], dict): raise SystemExit(f"--arm {name}: expected a JSON object of overrides.")
    jobs = {(arm, seed): arm_config(args.preset, over, seed) for arm, over in arms.items() for seed in args.seeds}
    out = Path(args.out)
    with ThreadPoolExecutor(args.jobs) as pool:
        done = {key: pool.submit(run_one, cfg, out/key[0]/f's{key[1]}', args.threads, args.device) for key, cfg in jobs.items()}
        rows = [dict(arm=arm, seed=seed, **run_row(f.result())) for (arm, seed), f in done.items()]
    df = pd.DataFrame(rows)
    pd.set_option('display.width', 250)
    print(df.round(3).to_string(index=False))
    print('\nper arm, mean (std) over seeds:')
    print(df.groupby('arm', sort=False)[['psnr', 'recon_kid', 'kid', 'gap', 'precision', 'recall', 'acc_mean', 'acc_min']]
            .agg(lambda s: f'{s.mean():.3g} ({s.std(ddof=1) if len(s) > 1 else 0:.2g})').to_string())


if __name__ == '__main__': main()
