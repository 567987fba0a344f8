"""The default `cldm run` (the `cpu` preset on the built-in sample) over seeds and torch thread counts.

    python nbs/lab/seed_spread.py runs/seeds --seeds 765 1 2 3 4 --threads 1 2     # the runs (resumable)
    python nbs/lab/seed_spread.py runs/seeds --collect nbs/lab/data/seeds.csv     # their table

Each run is `cldm run --config` with every stage's `seed` set (the split stays the paper's), in its
own process with OMP_NUM_THREADS set: one lane of runs per thread count, side by side. The table
has per run: the chosen K, the fine-tuning phase whose model the run kept, the training tiles per cluster, per-cluster accuracy (mean, min), KID as
the report gives it (against the training tiles) and KID against all 195 sample tiles (the protocol
in which the authors' own generated tiles score 3.4·10⁻³), precision, recall, the copy share and the
run's wall time.
"""
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

AUTHORS_KID = 3.4e-3      # the authors' generated tiles, kid(image_features(195 sample tiles), image_features(their tiles))


def seeded_config(seed: int) -> dict:
    "The cpu preset with every stage's `seed` set to `seed`."
    from cldm_nb.config import RunConfig
    walk = lambda d: {k: walk(v) if isinstance(v, dict) else (seed if k == 'seed' else v) for k, v in d.items()}
    return walk(RunConfig.cpu().to_dict())


def one_run(out: Path, seed: int, threads: int) -> Path:
    "The run for (seed, threads), made or resumed; its wall time in `<run>.wall`."
    run = out/f's{seed}_t{threads}'; run.mkdir(parents=True, exist_ok=True)
    cfg = out/f'{run.name}.json'; cfg.write_text(json.dumps(seeded_config(seed)))
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'MKL_NUM_THREADS': str(threads), 'OMP_WAIT_POLICY': 'PASSIVE'}
    if not (run/'report.md').is_file():
        t = time.time()
        with open(out/f'{run.name}.log', 'a') as log:
            subprocess.run(['nice', '-n', '5', sys.executable, '-c', 'from cldm_nb.cli import main; main()', 'run', '--out', str(run),
                            '--config', str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        (out/f'{run.name}.wall').write_text(f'{time.time() - t:.0f}')
    return run


def row(run: Path, sample_features, AUTHORS=AUTHORS_KID) -> dict:
    "One run's line of the table."
    import pandas as pd
    from cldm_nb.features import image_features
    from cldm_nb.gallery import as_tiles
    from cldm_nb.metrics import kid
    from cldm_nb.run import Run
    m = json.loads((run/'metrics.json').read_text()); d = m['distribution']
    acc = pd.read_csv(run/'cluster_accuracy.csv')
    cl = pd.read_csv(run/'clusters.csv'); sizes = cl[cl.split == 'train'].cluster.value_counts().sort_index()
    model = Run.open(run)
    k = model.k
    k195, k195_std = kid(sample_features, image_features(as_tiles(run/'generated', 'generated')))
    wall = run.parent/f'{run.name}.wall'
    seed, threads = run.name[1:].split('_t')
    return dict(seed=int(seed), threads=int(threads), k=k, kept=model.kept, cluster_sizes=' / '.join(str(int(sizes.get(i, 0))) for i in range(k)),
                smallest_share=round(float(sizes.reindex(range(k), fill_value=0).min() / sizes.sum() * k), 2),
                acc_mean=round(float(acc.accuracy.mean()), 3), acc_min=round(float(acc.accuracy.min()), 3),
                kid_train_1e3=round(d['kid'] * 1e3, 2), kid_195_1e3=round(k195 * 1e3, 2), kid_195_std_1e3=round(k195_std * 1e3, 2),
                kid_ratio_authors=round(k195 / AUTHORS, 2), precision=round(d['precision'], 3), recall=round(d['recall'], 3),
                copy_share=m['memorisation']['copy_share'], wall_s=int(wall.read_text()) if wall.is_file() else None)


def collect(out: Path, csv: Path) -> None:
    "The table of every finished run under `out`, written to `csv` and printed."
    import pandas as pd
    from cldm_nb.data import load_tiles, sample_data
    from cldm_nb.features import image_features
    fs = image_features(load_tiles(sample_data()))
    runs = sorted(r for r in out.glob('s*_t*') if r.is_dir() and (r/'report.md').is_file())
    df = pd.DataFrame([row(r, fs) for r in runs]).sort_values(['threads', 'seed'])
    csv.parent.mkdir(parents=True, exist_ok=True); df.to_csv(csv, index=False)
    print(df.to_string(index=False))


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', type=Path); p.add_argument('--seeds', type=int, nargs='+', default=[765, 1, 2, 3, 4])
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2]); p.add_argument('--collect', type=Path)
    a = p.parse_args()
    if a.collect: collect(a.out, a.collect)
    else:
        lanes = [[(s, t) for s in a.seeds] for t in a.threads]      # one lane per thread count, side by side
        with ThreadPoolExecutor(len(lanes)) as ex: list(ex.map(lambda lane: [one_run(a.out, s, t) for s, t in lane], lanes))
