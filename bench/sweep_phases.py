"""Does the vote change when every K of the sweep goes through all three phases (the paper) instead of the joint
stage only? On the built-in sample, with the `tiny` preset's models on the CPU:

    python bench/sweep_phases.py [--out DIR]

Both sweeps share the data split, the VQ-GAN and each K's joint stage (same seeds: the second sweep reloads the
first one's joint checkpoints); the 'all' sweep then trains finetune-1 and finetune-2 for every K and scores the
finetune-2 heads. Prints both validity tables, the K each votes for, and the seconds each took.
"""
import argparse, tempfile, time
from pathlib import Path

import torch

from cldm_nb.config import RunConfig
from cldm_nb.data import sample_data
from cldm_nb.pipeline import choose_k, data_stage, k_sweep
from cldm_nb.run import RunFolder
from cldm_nb.validity import INDICES
from cldm_nb.vqgan import encode_latents, train_vqgan


def sweep(train, vq, latents, cfg: RunConfig, out: Path) -> tuple:
    "The validity table of one sweep, the K it votes for, and its seconds."
    t = time.time()
    table, _ = k_sweep(train, vq, latents, cfg, out, torch.device('cpu'))
    return table, choose_k(table, cfg.sweep.min_cluster), time.time() - t


def main(out: Path) -> None:
    joint = RunConfig.tiny(phases='joint')
    out.mkdir(parents=True, exist_ok=True)
    tiles, train_idx = data_stage(sample_data(), out, joint)
    train = tiles[train_idx]
    vq = train_vqgan(train, joint.vqgan, RunFolder(out).vqgan_dir, device='cpu', progress=False)
    latents = encode_latents(vq, train)
    cols = [*INDICES, 'clusters_used', 'smallest_cluster']
    for name, cfg in (('joint stage only', joint), ('all three phases (the paper)', joint.replace(phases='all'))):
        table, k, seconds = sweep(train, vq, latents, cfg, out)
        print(f"\n== {name}: K = {k} by vote, sweep {seconds:.0f} s\n{table[cols].round(4).to_string()}")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', type=Path, help='folder for the sweep (default: a temporary one)')
    a = p.parse_args()
    if a.out: main(a.out)
    else:
        with tempfile.TemporaryDirectory() as d: main(Path(d))
