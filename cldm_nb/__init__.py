__version__ = "0.2.0"


def load_pretrained(path, device='cpu'):
    "A model exported by `cldm export` (`cldm_nb.export.load_pretrained`): `.sample(cluster, n, seed)`, `.assign(tiles)`."
    from .export import load_pretrained as load
    return load(path, device)
