"""Quality against CPU minutes: what more training time buys, measured with the distribution yardstick.

From a finished `cldm run` folder (default preset: cpu) this re-trains finetune-1 (the U-Net phase that takes
most of the run's minutes) from the chosen K's joint-stage model with the run's own settings, and keeps a copy of
the checkpoint after `--minutes` of training (wall clock of the training loop alone). Each copy generates the same
tiles and is scored like `generation_levers.py` (KID ± std beside its real-vs-real floor, precision, recall, copy
share, per-cluster accuracy, colour) under each guidance scale of `--guidance`. The autoencoder's side of the
budget is read from the run's `vqgan/vqgan_log.csv` (PSNR of its fixed reconstruction grid against steps).
Writes `quality_curve.csv` and `quality_curve.png` to `--out`.

    python bench/quality_curve.py --run runs/cpu [--minutes 2 5 10 15] [--guidance 1 3] [--out /tmp/quality_curve]
"""
import argparse, csv, json, shutil, sys
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from generation_levers import evaluate, load_run
from cldm_nb.data import save_figure
from cldm_nb.diffusion import load_ldm, phase_trainer

def train_snapshots(run: Path, cfg, vq, train, minutes: list[float], out: Path) -> dict[float, tuple[Path, int]]:
    "Finetune-1 from the run's joint-stage model, a checkpoint copy after each number of training minutes: {minutes: (path, step)}."
    k = json.loads((run/'model.json').read_text())['k']
    unet, head = load_ldm(run/f'k{k}'/'ldm.pt', ema=False)
    tr = phase_trainer('finetune1', unet, head, train, vq, cfg.finetune1.replace(epochs=10**6), out, progress=False)
    snaps = {}
    for m in sorted(minutes):
        while tr.elapsed < 60 * m: tr.fit(resume=False, max_steps=tr.steps_per_epoch)
        snaps[m] = (shutil.copy(tr.ckpt_path, out/f'finetune1_{m:g}min.pt'), tr.step)
        print(f"{m:g} min: step {tr.step} ({tr.elapsed:.0f} s)", flush=True)
    return snaps

def plot_curve(df: pd.DataFrame, vq_log: Path, path: Path):
    "KID (with its floor) and per-cluster accuracy against U-Net minutes, one line per guidance scale; the autoencoder's PSNR against its minutes."
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.2))
    for w, g in df.groupby('guidance'):
        axs[0].errorbar(g.minutes, g.kid_x1000, g.kid_std, marker='o', capsize=3, label=f'w = {w:g}')
        axs[1].plot(g.minutes, 100 * g.acc_mean, marker='o', label=f'mean, w = {w:g}')
        axs[1].plot(g.minutes, 100 * g.acc_min, marker='x', ls=':', label=f'min, w = {w:g}')
    axs[0].axhline(df.floor.iloc[0], c='k', ls='--', lw=1, label='real vs real'); axs[0].axhline(16, c='tab:red', ls=':', lw=1, label='target 16')
    axs[0].set(xlabel='finetune-1 minutes (2 cores)', ylabel='KID × 1000', title='distribution'); axs[0].legend(fontsize=7)
    axs[1].axhline(70, c='tab:red', ls=':', lw=1); axs[1].set(xlabel='finetune-1 minutes (2 cores)', ylabel='%', title='per-cluster accuracy')
    axs[1].legend(fontsize=7)
    rows = list(csv.DictReader(open(vq_log)))
    axs[2].plot([int(r['step']) for r in rows], [float(r['grid_psnr']) for r in rows], marker='.')
    axs[2].axhline(25, c='tab:red', ls=':', lw=1); axs[2].set(xlabel='VQ-GAN steps (batch 8)', ylabel='dB', title='autoencoder PSNR (reconstruction grid)')
    fig.tight_layout(); save_figure(fig, path)

def main(run: Path, minutes: list[float], guidance: list[float], n: int, acc_n: int, out: Path) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    cfg, vq, train, ids, tiles, feats = load_run(run, n)
    snaps = train_snapshots(run, cfg, vq, train, minutes, out)
    rows = [dict(minutes=m, step=step, guidance=w, **evaluate(p, vq, cfg.sampling.replace(guidance_scale=w), True, train, ids, tiles,
                                                             feats, acc_n, cfg.seed))
            for m, (p, step) in snaps.items() for w in guidance]
    df = pd.DataFrame(rows)
    df.to_csv(out/'quality_curve.csv', index=False)
    plot_curve(df, run/'vqgan'/'vqgan_log.csv', out/'quality_curve.png')
    pd.set_option('display.width', 220); pd.set_option('display.precision', 3)
    print(df.drop(columns=['latent_std_mid', 'latent_std_end']).to_string(index=False))
    return df

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', type=Path, required=True); p.add_argument('--minutes', type=float, nargs='+', default=[2, 5, 10, 15])
    p.add_argument('--guidance', type=float, nargs='+', default=[1, 3]); p.add_argument('--n', type=int, default=64)
    p.add_argument('--acc_n', type=int, default=16); p.add_argument('--out', type=Path, default=Path('/tmp/quality_curve'))
    a = p.parse_args()
    torch.set_num_threads(2)
    main(a.run, a.minutes, a.guidance, a.n, a.acc_n, a.out)
