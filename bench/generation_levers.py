"""The generation levers, measured side by side on one trained model with the distribution yardstick.

For a finished `cldm run` folder (default preset: cpu), every setting below generates the same tiles — the
clusters of the first `--n` training tiles, the same seed — and is scored against the real tiles with
`cldm_nb.eval.quality_report` (KID ± std with its real-vs-real floor, precision, recall, copy share against the
autoencoder's reconstructions of the training tiles, colour) and per-cluster accuracy (`--acc_n` tiles per cluster assigned back by the head).
The groups: `samplers` (DDPM-1000/250, DDIM-100/50/25, both spacings), `ema` (averaged or raw weights), `clip`
(x0 clipped to the training latents' range or not), `quantize` (the final latent re-quantised or not), `guidance`
(w = 1…5) and `eta` (DDIM's noise η = 0, 0.5, 1 at the run's step count, and DDPM-250).
`--ckpt` evaluates other checkpoints of the same run (e.g. copies of finetune1.pt saved along training) with
the run's sampler settings: the quality-vs-training-time curve.

    python bench/generation_levers.py --run runs/cpu [--n 64] [--grid samplers,ema,clip,quantize,guidance,eta] [--threads 2]
    python bench/generation_levers.py --run runs/cpu --ckpt a.pt b.pt
    python bench/generation_levers.py --run runs/cpu --model runs/cpu/k5/finetune1.pt --grid ema   # EMA lives in finetune-1
"""
import argparse, json, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cldm_nb.data import load_tiles, read_manifest
from cldm_nb.diffusion import SampleConfig, encode_latents, load_ldm, sample
from cldm_nb.eval import image_features, quality_report, reconstruct, vgg16_features
from cldm_nb.imsat import assign_clusters
from cldm_nb.pipeline import read_run_config
from cldm_nb.vqgan import load_vqgan

def grids(base: SampleConfig) -> dict[str, list[tuple[str, SampleConfig, bool]]]:
    "Named groups of (label, sampler settings, use EMA weights) compared in one table each."
    ddpm = SampleConfig(clip_x0=base.clip_x0)
    return dict(
        samplers=[(s.describe(), s, True) for s in (ddpm, ddpm.replace(steps=250), ddpm.replace(steps=250, spacing='trailing'),
                  *(base.replace(sampler='ddim', steps=k, spacing=sp) for k in (100, 50, 25) for sp in ('trailing', 'leading')))],
        ema=[('EMA weights', base, True), ('raw weights', base, False)],
        clip=[('x0 clipped', base.replace(clip_x0='range'), True), ('not clipped', base.replace(clip_x0=None), True)],
        quantize=[('decoded as sampled', base.replace(quantize=False), True), ('re-quantised', base.replace(quantize=True), True)],
        guidance=[(f'w = {w:g}', base.replace(guidance_scale=w), True) for w in (1, 1.5, 2, 3, 5)],
        eta=[(s.describe(), s, True) for s in (*(base.replace(sampler='ddim', eta=e) for e in (0., 0.5, 1.)),
                                              base.replace(sampler='ddpm', steps=250, spacing='trailing', eta=0.))])

def evaluate(ckpt: Path, vq, s: SampleConfig, ema: bool, recon, ids, real, feats: dict, acc_n: int, seed: int) -> dict:
    "Generate, score and time one setting."
    unet, head = load_ldm(ckpt, ema=ema)
    if s.guidance_scale != 1 and unet.null_id is None: return dict(note='no null token')
    t, trace = time.time(), []
    fake = sample(unet, vq, ids, generator=torch.Generator().manual_seed(seed), progress=False, trace=trace, **s.kwargs())
    sec = time.time() - t
    q = quality_report(real, fake, recon, real_features=feats['real'], train_features=feats['train'],
                       fake_features=image_features(fake, net=feats['net']))
    k = unet.cfg.n_clusters
    acc_ids = np.repeat(np.arange(k), acc_n)
    gen = sample(unet, vq, acc_ids, generator=torch.Generator().manual_seed(seed + 1), progress=False, **s.kwargs())
    pred = assign_clusters(head, encode_latents(vq, gen))
    acc = [float((pred[acc_ids == c] == c).mean()) for c in range(k)]
    return dict(kid_x1000=1000 * q['kid'], kid_std=1000 * q['kid_std'], floor=1000 * q['kid_floor'], precision=q['precision'],
                recall=q['recall'], copy_share=q['copy_share'], acc_mean=np.mean(acc), acc_min=min(acc),
                rgb_mean='/'.join(f'{v:.0f}' for v in q['colour_fake']['mean']), rgb_std='/'.join(f'{v:.0f}' for v in q['colour_fake']['std']),
                latent_std_mid=trace[len(trace) // 2][1], latent_std_end=trace[-1][1], seconds_per_tile=sec / len(ids))

def load_run(run: Path, n: int):
    "A finished run's config, VQ-GAN, the reconstructions of the training tiles (the copy audit's reference), the clusters of the first `n` training tiles, all real tiles and the features."
    cfg, m = read_run_config(run/'config.json'), json.loads((run/'model.json').read_text())
    tiles = load_tiles(json.loads((run/'config.json').read_text())['data'])      # a run on tiles (not slides)
    train = tiles[read_manifest(run/'manifest.json')['train_idx']]
    vq = load_vqgan(run/m['vqgan'])
    ids = assign_clusters(load_ldm(run/m['ldm'])[1], encode_latents(vq, train))[:n]
    net, recon = vgg16_features(), reconstruct(vq, train)
    return cfg, vq, recon, ids, tiles, dict(net=net, real=image_features(tiles, net=net), train=image_features(recon, net=net))

def main(run: Path, n: int, acc_n: int, groups: list[str], ckpts: list[Path], model: Path | None) -> None:
    cfg, vq, recon, ids, tiles, feats = load_run(run, n)
    model = model or run/json.loads((run/'model.json').read_text())['ldm']
    print(f"run {run} (preset {cfg.preset}), model {model.name}, {n} generated vs {len(tiles)} real tiles, {acc_n} per cluster for the accuracy")
    pd.set_option('display.width', 200); pd.set_option('display.precision', 3)
    if ckpts:
        rows = {c.name: evaluate(c, vq, cfg.sampling, True, recon, ids, tiles, feats, acc_n, cfg.seed) for c in ckpts}
        print(f"\n## checkpoints, {cfg.sampling.describe()}\n" + pd.DataFrame(rows).T.to_string()); return
    for g in groups:
        rows = {label: evaluate(model, vq, s, ema, recon, ids, tiles, feats, acc_n, cfg.seed) for label, s, ema in grids(cfg.sampling)[g]}
        print(f"\n## {g}\n" + pd.DataFrame(rows).T.to_string(), flush=True)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', type=Path, required=True); p.add_argument('--n', type=int, default=64)
    p.add_argument('--acc_n', type=int, default=16)
    p.add_argument('--grid', default='samplers,ema,clip,quantize,guidance'); p.add_argument('--ckpt', type=Path, nargs='*', default=[])
    p.add_argument('--model', type=Path, help="the checkpoint the grids use (default: the run's final model)")
    p.add_argument('--threads', type=int, default=2, help='torch threads')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    main(a.run, a.n, a.acc_n, a.grid.split(','), a.ckpt, a.model)
