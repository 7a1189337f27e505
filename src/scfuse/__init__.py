"""scfuse: deep fusion clustering of single-cell RNA-seq for scanpy."""

from . import datasets, models, pl, pp, tl
from ._settings import settings
from ._version import __version__

__all__ = ["__version__", "datasets", "models", "pl", "pp", "settings", "tl"]
