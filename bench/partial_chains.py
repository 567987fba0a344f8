"""Where along the reverse chain a trained model loses the tissue: partial chains from noised training latents.

For a finished `cldm run` folder, `--n` training tiles (spread over the training set) are encoded, their latents
noised to each start step t0 of the forward process, and the rest of the run's own sampler (its DDIM/DDPM steps at
or below t0, its guidance and x0 clip, under each tile's cluster) brings them back. A chain started at a small t0
only has to restore detail; one started at the last step is plain generation. The figure shows the real tiles,
their reconstructions, then one row per t0; the table gives √ᾱ (the share of the tile left in the noised latent)
and the pixel RMS (of 255) between each result and the tile's reconstruction.

    python bench/partial_chains.py --run runs/cpu [--n 8] [--t0 100 300 500 700 999] [--guidance W] [--model CKPT] [--out partial_chains.png]
"""
import argparse, json
from functools import partial
from pathlib import Path

import numpy as np
import torch

from cldm_nb.data import load_tiles, read_manifest, save_figure
from cldm_nb.diffusion import denoise, encode_latents, load_ldm
from cldm_nb.eval import reconstruct
from cldm_nb.imsat import assign_clusters
from cldm_nb.pipeline import read_run_config
from cldm_nb.vqgan import load_vqgan


@torch.no_grad()
def partial_chain(unet, vq, latents: torch.Tensor, ids: torch.Tensor, t0: int, cfg, seed: int = 0) -> np.ndarray:
    "Noise `latents` to step t0 (of the run's sampler's steps, the largest ≤ t0) and run the sampler's remaining steps; uint8 tiles."
    s, g = unet.schedule, torch.Generator().manual_seed(seed)
    ts = [t for t in s.timesteps(cfg.steps, cfg.spacing) if t <= t0]
    z0 = unet.to_diffusion(latents)
    zt = s.add_noise(z0, torch.randn(z0.shape, generator=g), torch.full((len(z0),), ts[0]))
    step = s.step if cfg.sampler == 'ddpm' else partial(s.ddim_step, eta=cfg.eta)
    z = denoise(unet, zt, ids, ts, step, g, schedule=s, guidance_scale=cfg.guidance_scale, clip_x0=cfg.clip_x0)
    z = unet.from_diffusion(z)
    return (vq.decode(z).float().clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def figure(rows: list[np.ndarray], labels: list[str], path: Path):
    "One row of tiles per entry, labelled on the left; saved as PNG."
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(len(rows), len(rows[0]), figsize=(1.1 * len(rows[0]) + 1, 1.1 * len(rows)), squeeze=False)
    for r, (tiles, label) in enumerate(zip(rows, labels)):
        for c, ax in enumerate(axs[r]):
            ax.imshow(tiles[c]); ax.set_xticks([]); ax.set_yticks([])
        axs[r, 0].set_ylabel(label, rotation=0, ha='right', va='center', fontsize=8)
    fig.tight_layout(pad=0.2)
    save_figure(fig, path)


def main(run: Path, n: int, t0s: list[int], out: Path, guidance: float | None = None, model: Path | None = None) -> None:
    cfg, m = read_run_config(run/'config.json'), json.loads((run/'model.json').read_text())
    if guidance is not None: cfg = cfg.replace(sampling=cfg.sampling.replace(guidance_scale=guidance))
    tiles = load_tiles(json.loads((run/'config.json').read_text())['data'])
    train = tiles[read_manifest(run/'manifest.json')['train_idx']]
    real = train[np.linspace(0, len(train) - 1, n).round().astype(int)]
    vq, (unet, head) = load_vqgan(run/m['vqgan']), load_ldm(model or run/m['ldm'])
    unet.eval(); head.eval()
    latents, recon = encode_latents(vq, real), reconstruct(vq, real)
    ids = torch.as_tensor(assign_clusters(head, latents))
    rows, labels = [real, recon], ['real', 'reconstructed']
    ab = unet.schedule.alpha_bars
    print(f"sampler: {cfg.sampling.describe()}; {n} training tiles, clusters {ids.tolist()}")
    print(f"{'t0':>5}{'sqrt(abar)':>12}{'RMS vs reconstruction':>24}")
    for t0 in t0s:
        gen = partial_chain(unet, vq, latents, ids, t0, cfg.sampling)
        rms = np.sqrt(((gen.astype(float) - recon) ** 2).mean(axis=(1, 2, 3))).mean()
        print(f"{t0:>5}{ab[t0].sqrt().item():>12.3f}{rms:>24.1f}")
        rows.append(gen); labels.append(f"from t = {t0}")
    figure(rows, labels, out)
    print(f"figure: {out}")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--run', type=Path, required=True, help='a finished `cldm run` folder')
    ap.add_argument('--n', type=int, default=8, help='training tiles (spread over the training set)')
    ap.add_argument('--t0', type=int, nargs='+', default=[100, 300, 500, 700, 999], help='start steps of the partial chains')
    ap.add_argument('--guidance', type=float, default=None, help="guidance scale w (default: the run's)")
    ap.add_argument('--model', type=Path, default=None, help="another U-Net + head checkpoint of the same run (default: the run's final one)")
    ap.add_argument('--out', type=Path, default=Path('partial_chains.png'))
    a = ap.parse_args()
    main(a.run, a.n, a.t0, a.out, a.guidance, a.model)
