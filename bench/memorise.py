"""Correctness diagnostic of the diffusion chain: trained long enough on a handful of tiles, it must memorise them.

On `--tiles` tiles (16) a tiny VQ-GAN and a U-Net (`--width` channels at every level, predicting `--prediction`) are trained (denoising MSE
only; two clusters, the head frozen at its seeded start) for `--steps` steps. Then one tile per training tile, under
its cluster, is sampled with the paper's sampler (ancestral DDPM, all 1,000 steps) three ways:

* by `ExactDenoiser`, the closed-form optimum of the training loss on these latents (a perfect memoriser) in place
  of the U-Net: the same sampler, latent scale, decoder and audit. It must give copies; if it does not, the fault is
  in the chain, not in the network;
* by the trained U-Net, with and without x0 clipping.

Each sample is audited against the VQ-GAN's reconstructions of the training tiles (the best the chain can
reproduce) with `cldm_nb.audit.nearest_training`: a memorising chain gives copy_share ≥ 0.8. The latent's spread
along the reverse chain is printed beside the forward marginal's (1 at every t), and a second table shows where the
U-Net falls short of the memoriser: its clean-latent error at each t next to the exact denoiser's. `--out` gets
the figures of each sampler's closest samples above their nearest reconstructions.

    python bench/memorise.py [--tiles 16] [--steps 2000] [--width 32] [--prediction v] [--ema 0.999] [--lr_decay cosine] [--out /tmp/memorise]
    python bench/memorise.py --prediction v --steps 12000 --lr_decay cosine   # passes: copy share 0.81 (about 1.5 h of one core)
"""
import argparse, time
from pathlib import Path

import numpy as np
import torch

from cldm_nb.data import load_tiles, sample_data
from cldm_nb.schedulers import PREDICTIONS
from cldm_nb.unet import UNetConfig
from cldm_nb.sampling import ExactDenoiser, SampleConfig, sample
from cldm_nb.diffusion import LDMConfig, train_ldm
from cldm_nb.audit import nearest_training, plot_nearest
from cldm_nb.gallery import reconstruct
from cldm_nb.imsat import assign_clusters
from cldm_nb.train import LR_DECAYS
from cldm_nb.vqgan import VQGANConfig, encode_latents, train_vqgan


def train(tiles: np.ndarray, steps: int, width: int, prediction: str, ema: float | None, lr_decay: str | None, out: Path):
    "The tiny VQ-GAN and the U-Net on `tiles` (resumed from `out` when already trained); `(vq, unet, head)`."
    vq = train_vqgan(tiles, VQGANConfig.tiny(ch=(16, 32, 32), mid=(32, 32), lr=1e-3, disc_start=10**6, epochs=300 * 8 // len(tiles)),
                     out / 'vqgan', progress=False)
    unet = UNetConfig.tiny(n_clusters=2, channels=(width,) * 4, mid_channels=(width, width), out_conv_channels=width,
                           prediction=prediction)
    cfg = LDMConfig.tiny(n_clusters=2, unet=unet, optimizer='adam', lr=1e-3, w_me=0., w_ce=0., w_af=0., train_head=False,
                         batch_size=len(tiles), epochs=steps, ema_decay=ema, lr_decay=lr_decay)
    return (vq, *train_ldm(tiles, vq, cfg, out / 'ldm', progress=False))


@torch.no_grad()
def x0_errors(unet, exact: ExactDenoiser, z0: torch.Tensor, ids: torch.Tensor, ts=(10, 50, 100, 200, 400, 600, 800), draws: int = 4):
    "Mean squared error of the clean latent implied at each t (diffusion space, unit variance): the U-Net's and the exact denoiser's."
    sch, g, rows = exact.schedule, torch.Generator().manual_seed(0), []
    for t in ts:
        errs = []
        for _ in range(draws):
            z_t = sch.add_noise(z0, torch.randn(z0.shape, generator=g), torch.full((len(z0),), t))
            errs.append([(sch.eps_x0(m(z_t, t, ids).float(), t, z_t, m.cfg.prediction)[1] - z0).square().mean().item() for m in (unet, exact)])
        rows.append((t, *np.mean(errs, 0)))
    return rows


def main(n_tiles: int, steps: int, width: int, prediction: str, ema: float | None, lr_decay: str | None, out: Path) -> bool:
    tiles = load_tiles(sample_data())[:n_tiles]
    t0 = time.time()
    vq, unet, head = train(tiles, steps, width, prediction, ema, lr_decay, out)
    recon = reconstruct(vq, tiles)
    latents = encode_latents(vq, tiles)
    ids = torch.as_tensor(assign_clusters(head, latents))             # each tile's condition, from the frozen head
    exact = ExactDenoiser(unet.to_diffusion(latents), ids)
    exact.latent_scale.copy_(unet.latent_scale)
    print(f"trained in {time.time() - t0:.0f} s ({steps} U-Net steps, width {width}, {prediction}-prediction, EMA {ema}, lr decay {lr_decay}, on {n_tiles} tiles)")
    print(f"{'sampler':40s} {'copy_share':>10s} {'d1/d2 median':>12s} {'latent std at t = 900, 500, 100, end':>40s}")
    copies = {}
    for name, model, clip in (('exact denoiser', exact, None), ('U-Net', unet, None), ('U-Net, x0 clipped', unet, 'range')):
        trace = []
        fake = sample(model, vq, ids, SampleConfig(clip_x0=clip), torch.Generator().manual_seed(0), trace=trace, progress=False)
        audit = nearest_training(fake, recon)
        plot_nearest(fake, recon, audit, path=out / f"nearest_{name.replace(', ', '_').replace(' ', '_')}.png")
        stds = dict(trace)
        print(f"{'DDPM-1000, ' + name:40s} {audit['copy_share']:10.2f} {audit['ratio_median']:12.3f} "
              f"{', '.join(f'{stds[t]:.2f}' for t in (900, 500, 100)) + f', {trace[-1][1]:.2f}':>40s}")
        copies[name] = audit['copy_share']
    print(f"\n{'t':>5s} {'x0 MSE, U-Net':>14s} {'x0 MSE, exact':>14s}   (diffusion space; the latents' variance is 1)")
    for t, e_unet, e_exact in x0_errors(unet, exact, unet.to_diffusion(latents), ids): print(f"{t:5d} {e_unet:14.4f} {e_exact:14.4f}")
    if copies['exact denoiser'] < 0.8:
        print("FAIL: even the exact denoiser does not give copies; the sampler, scaling, decoding or audit is wrong")
        return False
    ok = max(copies['U-Net'], copies['U-Net, x0 clipped']) >= 0.8
    print("PASS: the chain memorises its training tiles" if ok else
          "the chain is sound (the exact denoiser copies); the U-Net has not memorised its training latents (see the x0 errors)")
    return ok


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tiles', type=int, default=16); p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--width', type=int, default=32, help='U-Net channels at every level (multiple of 8)')
    p.add_argument('--prediction', default='eps', choices=PREDICTIONS, help='what the U-Net predicts (UNetConfig.prediction)')
    p.add_argument('--ema', type=float, default=None, help='EMA decay of the U-Net weights (default: none)')
    p.add_argument('--lr_decay', default=None, choices=LR_DECAYS[1:], help="the U-Net's learning-rate decay (default: constant)")
    p.add_argument('--out', type=Path, default=Path('/tmp/cldm_memorise'))
    a = p.parse_args()
    raise SystemExit(0 if main(a.tiles, a.steps, a.width, a.prediction, a.ema, a.lr_decay, a.out) else 1)
