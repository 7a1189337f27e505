"""scfuse: deep fusion clustering of single-cell RNA-seq for scanpy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scfuse")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.1.0"

from . import datasets, models, pl, pp, tl
from ._settings import settings

__all__ = ["__version__", "datasets", "models", "pl", "pp", "settings", "tl"]
