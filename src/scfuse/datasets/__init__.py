"""Built-in demo data (a count simulator) and loaders for the benchmark ``.h5ad`` files."""

from ._load import available, load, read
from ._simulate import simulate

__all__ = ["available", "load", "read", "simulate"]
