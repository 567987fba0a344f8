__version__ = "0.2.0"

from .export import load_pretrained

__all__ = ['load_pretrained']
