"""The decoder's perceptual epochs (`VQGANConfig.decoder_epochs`), measured on one finished run with the generated latents held fixed.

For a finished `cldm run` folder: its U-Net generates latents once (the run's sampler settings, the clusters of the
first `--n` training tiles, the run's seed, and `--acc_n` per cluster for the accuracy). Each learning rate of `--lr`
then continues the run's autoencoder checkpoint with the library's own decoder epochs (`vqgan_trainer`, encoder and
codebook frozen, MSE + LPIPS-VGG), and after each count of `--epochs` the same latents are decoded and scored:
the yardstick (`quality_report`: KID ± spread with its real-vs-real floor, FD, precision, recall, copy share against
this decoder's reconstructions of the training tiles), the reconstructions' own KID/precision/recall, held-out PSNR,
per-cluster accuracy, colour, and a sharpness ratio (mean Sobel gradient of the grey image, generated ÷ real). LPIPS
and the feature space are the same ImageNet VGG16, so the colour and sharpness columns are the checks outside it.
The first row is the run's own decoder.

    python bench/decoder_epochs.py --run runs/cpu [--lr 1e-4 3e-4] [--epochs 5 11 22] [--out decoder_epochs]
"""
import argparse, json, tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from skimage.color import rgb2gray
from skimage.filters import sobel

from cldm_nb.data import read_manifest, to_tensor, to_uint8
from cldm_nb.diffusion import encode_latents, load_ldm, sample
from cldm_nb.eval import image_features, quality_report, reconstruct, reconstruction_psnr
from cldm_nb.imsat import assign_clusters
from cldm_nb.pipeline import read_run_config
from cldm_nb.train import load_checkpoint
from cldm_nb.vqgan import vqgan_trainer
from generation_levers import load_run      # the run, its tiles, the clusters of the first n training tiles, the features

def sharpness(tiles: np.ndarray) -> float:
    "Mean Sobel gradient magnitude of the tiles' grey images."
    return float(np.mean([sobel(rgb2gray(t)).mean() for t in tiles]))

def score(vq, z: torch.Tensor, z_acc: torch.Tensor, acc_ids: np.ndarray, ctx: dict) -> dict:
    "Decode the fixed latents with `vq` and score them, its reconstructions and its held-out PSNR."
    with torch.no_grad(): fake, gen = (to_uint8(vq.decode(x).float().clamp(0, 1)) for x in (z, z_acc))
    recon = reconstruct(vq, ctx['train'])
    rf = image_features(recon, net=ctx['net'])
    q = quality_report(ctx['tiles'], fake, recon, real_features=ctx['real'], train_features=rf,
                       fake_features=image_features(fake, net=ctx['net']))
    qr = quality_report(ctx['tiles'], recon[:len(fake)], real_features=ctx['real'], fake_features=rf[:len(fake)])
    pred = assign_clusters(ctx['head'], encode_latents(ctx['vq0'], gen))     # the run's encoder and head, as the report's accuracy
    acc = [float((pred[acc_ids == c] == c).mean()) for c in np.unique(acc_ids)]
    return dict(test_psnr=reconstruction_psnr(vq, ctx['test'])['psnr'], kid_x1000=1000 * q['kid'], kid_std=1000 * q['kid_std'],
                floor=1000 * q['kid_floor'], fd=q['fd'], precision=q['precision'], recall=q['recall'], copy_share=q['copy_share'],
                recon_kid_x1000=1000 * qr['kid'], recon_precision=qr['precision'], recon_recall=qr['recall'],
                acc_mean=np.mean(acc), acc_min=min(acc), rgb_mean='/'.join(f'{v:.0f}' for v in q['colour_fake']['mean']),
                rgb_std='/'.join(f'{v:.0f}' for v in q['colour_fake']['std']),
                sharpness=sharpness(fake) / ctx['sharp_real'], recon_sharpness=sharpness(recon) / ctx['sharp_real']), fake

def continue_decoder(run: Path, lr: float, epochs: list[int], ctx: dict, z, z_acc, acc_ids, out: Path) -> dict:
    "Continue the run's autoencoder with decoder epochs at `lr`, scoring after each count in `epochs`."
    base = read_run_config(run/'config.json').vqgan
    ckpt = load_checkpoint(run/'vqgan'/'vqgan.pt')
    if base.decoder_epochs: raise ValueError(f"{run}: its autoencoder already had decoder epochs; pass a run made without them.")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = base.replace(decoder_epochs=max(epochs), decoder_lr=lr, pretrained_lpips=True)
        tr = vqgan_trainer(ctx['train'], cfg, tmp, progress=False)
        if ckpt['step'] != cfg.epochs * tr.steps_per_epoch: raise ValueError(f"{run}: its autoencoder did not finish its {cfg.epochs} epochs.")
        tr.load_state({**ckpt, 'config': cfg.to_dict(), 'optimizers': {**ckpt['optimizers'], 'dec': tr.optimizers['dec'].state_dict()}})
        for e in sorted(epochs):
            tr.fit(resume=False, max_steps=(cfg.epochs + e) * tr.steps_per_epoch - tr.step)
            rows[f'lr {lr:g}, {e} decoder epochs'], fake = score(tr.models['vqvae'].eval(), z, z_acc, acc_ids, ctx)
            tr.models['vqvae'].train()
            torchvision.utils.save_image(to_tensor(fake[:16]), out/f'lr{lr:g}_e{e}.png', nrow=8)
            print(pd.Series(rows[f'lr {lr:g}, {e} decoder epochs']).to_string(), flush=True)
    return rows

def main(run: Path, lrs: list[float], epochs: list[int], n: int, acc_n: int, out: Path) -> None:
    cfg, vq0, _, ids, tiles, feats = load_run(run, n)
    m, split = json.loads((run/'model.json').read_text()), read_manifest(run/'manifest.json')
    unet, head = load_ldm(run/m['ldm'])
    ctx = dict(tiles=tiles, train=tiles[split['train_idx']], test=tiles[split['test_idx']], net=feats['net'], real=feats['real'],
               head=head, vq0=vq0, sharp_real=sharpness(tiles))
    acc_ids = np.repeat(np.arange(unet.cfg.n_clusters), acc_n)
    kw = dict(decode=False, progress=False, **cfg.sampling.kwargs())
    z = sample(unet, vq0, ids, generator=torch.Generator().manual_seed(cfg.seed), **kw)
    z_acc = sample(unet, vq0, acc_ids, generator=torch.Generator().manual_seed(cfg.seed + 1), **kw)
    out.mkdir(parents=True, exist_ok=True)
    rows = {"the run's decoder": score(vq0, z, z_acc, acc_ids, ctx)[0]}
    for lr in lrs: rows.update(continue_decoder(run, lr, epochs, ctx, z, z_acc, acc_ids, out))
    pd.set_option('display.width', 250); pd.set_option('display.precision', 3)
    print(f"\nrun {run} (preset {cfg.preset}), {n} generated vs {len(tiles)} real tiles, {acc_n} per cluster for the accuracy\n"
          + pd.DataFrame(rows).T.to_string())

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', type=Path, required=True); p.add_argument('--lr', type=float, nargs='+', default=[1e-4, 3e-4])
    p.add_argument('--epochs', type=int, nargs='+', default=[5, 11, 22]); p.add_argument('--n', type=int, default=64)
    p.add_argument('--acc_n', type=int, default=16); p.add_argument('--out', type=Path, default=Path('decoder_epochs'))
    p.add_argument('--threads', type=int, default=2, help='torch threads')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    main(a.run, a.lr, a.epochs, a.n, a.acc_n, a.out)
