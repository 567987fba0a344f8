"""The ImageNet VGG16 weights in a form that travels: the 13 convolutional layers LPIPS uses, in half precision, as
safetensors (about 29 MB instead of torchvision's 528 MB file).

    python bench/vgg16_pack.py pack OUT.safetensors       # from the weights cldm_nb.weights.fetch_vgg16_weights() provides
    python bench/vgg16_pack.py unpack IN.safetensors       # torchvision's file rebuilt in torch's cache ($TORCH_HOME)

`unpack` writes torchvision's VGG16 state dict where `lpips` (through torchvision) reads it: the convolutions from the
pack, back in float32 (rounded to half precision once: LPIPS distances move in the fourth digit), and the classifier,
which LPIPS never runs, as NaN (one stored number per tensor, broadcast).
"""
from __future__ import annotations
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file, save_file

from cldm_nb.checkpoints import save_checkpoint
from cldm_nb.weights import fetch_vgg16_weights, vgg16_cache_file


def conv_keys() -> list[str]:
    "The state-dict keys of torchvision VGG16's convolutional layers (weights and biases)."
    with torch.device('meta'): ref = torchvision.models.vgg16()
    return [f'features.{i}.{p}' for i, m in enumerate(ref.features) if isinstance(m, nn.Conv2d) for p in ('weight', 'bias')]


def pack(dest: Path) -> Path:
    "Write the convolutional layers of the ImageNet VGG16 (fetched into torch's cache when missing) to `dest` in half precision, atomically."
    sd = torch.load(fetch_vgg16_weights(), map_location='cpu', weights_only=True)
    tensors = {k: sd[k].half().contiguous() for k in conv_keys()}
    tmp = dest.with_name(dest.name + '.tmp')
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata=dict(source='torchvision VGG16_Weights.IMAGENET1K_V1, convolutional layers, float16'))
    tmp.replace(dest)
    return dest


def unpack(src: Path) -> Path:
    "torchvision's VGG16 file in torch's cache (`vgg16_cache_file()`) rebuilt from the pack `src`: float32 convolutions, NaN classifier."
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no VGG16 pack; run `bash bench/device_pack.sh` where a package index is reachable.")
    convs = load_file(str(src))
    if missing := set(conv_keys()) - set(convs):
        raise ValueError(f"{src}: lacks {sorted(missing)[:3]}…; not a VGG16 pack. Run `bash bench/device_pack.sh` again.")
    with torch.device('meta'): ref = torchvision.models.vgg16().state_dict()
    sd = {k: convs[k].float() if k in convs else torch.full((1,), float('nan')).expand(v.shape) for k, v in ref.items()}
    return save_checkpoint(vgg16_cache_file(), sd)


if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] not in ('pack', 'unpack'): sys.exit(__doc__)
    print((pack if sys.argv[1] == 'pack' else unpack)(Path(sys.argv[2])))
