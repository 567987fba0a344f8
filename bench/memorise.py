"""Correctness diagnostic of the diffusion chain: trained long enough on a handful of tiles, it must memorise them.

On `--tiles` tiles (16) a tiny VQ-GAN and a tiny U-Net are trained (denoising MSE only; two clusters, the head
frozen at its seeded start) for `--steps` steps; then one tile per training tile, under its cluster, is sampled
with the paper's sampler (ancestral DDPM, all 1,000 steps) with and without x0 clipping. Each sample is audited against the VQ-GAN's reconstructions of the training tiles (the best
the chain can reproduce) with `cldm_nb.eval.nearest_training`: a working chain gives copy_share ≥ 0.8. The
latent's spread along the reverse chain is printed beside the forward marginal's (1 at every t); `--out` gets the
figure of each sampler's closest samples above their nearest reconstructions.

    python bench/memorise.py [--tiles 16] [--steps 2000] [--out /tmp/memorise]
"""
import argparse, time
from pathlib import Path

import numpy as np
import torch

from cldm_nb.data import load_tiles, sample_data, to_tensor, to_uint8
from cldm_nb.diffusion import LDMConfig, UNetConfig, encode_latents, sample, train_ldm
from cldm_nb.eval import nearest_training, plot_nearest
from cldm_nb.imsat import assign_clusters
from cldm_nb.vqgan import VQGANConfig, train_vqgan

def main(n_tiles: int, steps: int, out: Path) -> bool:
    tiles = load_tiles(sample_data())[:n_tiles]
    t0 = time.time()
    vq = train_vqgan(tiles, VQGANConfig.tiny(ch=(16, 32, 32), mid=(32, 32), lr=1e-3, disc_start=10**6, epochs=300 * 8 // n_tiles),
                     out / 'vqgan', progress=False)
    with torch.no_grad(): recon = to_uint8(vq(to_tensor(tiles))[0].clamp(0, 1))
    cfg = LDMConfig.tiny(n_clusters=2, unet=UNetConfig.tiny(n_clusters=2), optimizer='adam', lr=1e-3, w_me=0., w_ce=0., w_af=0.,
                         train_head=False, batch_size=n_tiles, epochs=steps)
    unet, head = train_ldm(tiles, vq, cfg, out / 'ldm', progress=False)
    ids = assign_clusters(head, encode_latents(vq, tiles))           # each tile's condition, from the frozen head
    print(f"trained in {time.time() - t0:.0f} s ({steps} U-Net steps on {n_tiles} tiles)")
    print(f"{'sampler':34s} {'copy_share':>10s} {'d1/d2 median':>12s} {'latent std at t = 900, 500, 100, end':>40s}")
    ok = False
    for clip in (None, 'range'):
        trace = []
        fake = sample(unet, vq, ids, generator=torch.Generator().manual_seed(0), clip_x0=clip, trace=trace, progress=False)
        audit = nearest_training(fake, recon)
        plot_nearest(fake, recon, audit, path=out / f"nearest{'_clipped' if clip else ''}.png")
        stds = dict(trace)
        print(f"{'DDPM-1000' + (', x0 clipped' if clip else ''):34s} {audit['copy_share']:10.2f} {audit['ratio_median']:12.3f} "
              f"{', '.join(f'{stds[t]:.2f}' for t in (900, 500, 100)) + f', {trace[-1][1]:.2f}':>40s}")
        ok |= audit['copy_share'] >= 0.8
    print("PASS: the chain memorises its training tiles" if ok else "FAIL: the chain does not memorise 16 tiles; something in it is wrong")
    return ok

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tiles', type=int, default=16); p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--out', type=Path, default=Path('/tmp/cldm_memorise'))
    a = p.parse_args()
    raise SystemExit(0 if main(a.tiles, a.steps, a.out) else 1)
