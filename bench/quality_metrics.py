"""Cost of the distribution metrics in `cldm_nb.metrics`: VGG16 feature extraction, KID, FD, precision/recall.

Features: `image_features` (ImageNet VGG16 to conv5_3, tiles resized to 224 px; the untrained network
when the weights are not installed, which costs exactly the same) on `--tiles` of the shipped 128×128
KPC tiles (default 64, after a warm-up batch), reported per tile and extrapolated linearly to 1,000
tiles (a plain loop of identical batches; pass `--tiles 1000` to time it in full). KID (100 subsets of
1,000), FD and precision/recall (k = 3) on random 512-d features, `--n` per side (default 10,000, the
paper's scale), each beside torchmetrics' KID / FID on the same features as the baseline (ratio < 1:
ours is faster). Threads are fixed with `--threads` (default 2, the development machine's cores).

    python bench/quality_metrics.py                 # 64 tiles timed, n = 10,000, 2 threads
    python bench/quality_metrics.py --tiles 1000 --threads 1
"""
from __future__ import annotations
import argparse, time


def timed(f, *args, **kw):
    "Result and wall seconds of one call."
    t = time.perf_counter(); out = f(*args, **kw)
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tiles', type=int, default=64, help='tiles to time feature extraction on (default 64)')
    ap.add_argument('--n', type=int, default=10_000, help='feature vectors per side for KID / FD / P&R (default 10,000)')
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    import numpy as np, torch, torch.nn as nn
    torch.set_num_threads(args.threads)
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance
    from cldm_nb.data import load_tiles, sample_data
    from cldm_nb.features import image_features, vgg16_features
    from cldm_nb.metrics import frechet_distance, kid, precision_recall
    from cldm_nb.weights import vgg16_cache_file

    pretrained = vgg16_cache_file().is_file()
    net = vgg16_features(pretrained)
    tiles = load_tiles(sample_data())
    tiles = tiles[np.arange(args.tiles) % len(tiles)]
    image_features(tiles[:8], net=net)                                   # warm-up
    _, s = timed(image_features, tiles, net=net)
    print(f"features ({'ImageNet' if pretrained else 'untrained'} VGG16, 224 px, {args.threads} threads): "
          f"{args.tiles} tiles in {s:.1f} s = {1e3 * s / args.tiles:.0f} ms/tile → 1,000 tiles: {1000 * s / args.tiles:.0f} s"
          + (" (extrapolated)" if args.tiles != 1000 else ""))

    rng = np.random.default_rng(0)
    real = np.abs(rng.normal(size=(args.n, 512))).astype(np.float32)        # ReLU-like features
    fake = np.abs(rng.normal(0.05, 1, size=(args.n, 512))).astype(np.float32)
    (k, k_std), s_kid = timed(kid, real, fake)
    tm = KernelInceptionDistance(feature=nn.Identity(), subsets=100, subset_size=1000)
    tm.update(torch.from_numpy(real).double(), real=True); tm.update(torch.from_numpy(fake).double(), real=False)
    (tk, _), s_tkid = timed(tm.compute)
    fd, s_fd = timed(frechet_distance, real, fake)

    class PassThrough(nn.Module):                                         # torchmetrics probes it with a dummy image first
        def forward(self, z): return z.flatten(1)[:, :512].double()
    tf = FrechetInceptionDistance(feature=PassThrough())
    tf.update(torch.from_numpy(real)[..., None, None], real=True); tf.update(torch.from_numpy(fake)[..., None, None], real=False)
    tfd, s_tfd = timed(tf.compute)
    (p, r), s_pr = timed(precision_recall, real, fake)
    print(f"n = {args.n:,} per side, 512-d:")
    print(f"  KID (100 × 1,000) {s_kid:7.1f} s   torchmetrics {s_tkid:6.1f} s   ratio {s_kid / s_tkid:.2f}   "
          f"(KID {k:.4g} ± {k_std:.2g}, torchmetrics {float(tk):.4g}, other subsets)")
    print(f"  FD                {s_fd:7.1f} s   torchmetrics {s_tfd:6.1f} s   ratio {s_fd / s_tfd:.2f}   "
          f"(FD {fd:.6g}, torchmetrics {float(tfd):.6g})")
    print(f"  precision/recall  {s_pr:7.1f} s   (no library baseline; {p:.3f} / {r:.3f})")


if __name__ == '__main__': main()
