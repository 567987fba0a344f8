__version__ = "0.2.0"


def __getattr__(name: str):
    """`cldm_nb.load_pretrained` (from `cldm_nb.export`), imported when first asked for: importing the package, or a light
    module such as `cldm_nb.config`, does not load the slide reader, the metrics and every network on the way."""
    if name == 'load_pretrained':
        from .export import load_pretrained
        return load_pretrained
    raise AttributeError(f"module 'cldm_nb' has no attribute {name!r}")
