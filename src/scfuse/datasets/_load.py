from __future__ import annotations

import os
from pathlib import Path

from scfuse._settings import settings

LABEL_KEY = "cell_type"


def _data_dir() -> Path:
    return Path(settings.data_dir)


def available() -> list[str]:
    """Names of the benchmark datasets found in :attr:`scfuse.settings.data_dir` (``SCFUSE_DATA_DIR``).

    Examples
    --------
    >>> import scfuse
    >>> names = scfuse.datasets.available()  # e.g. ['baron_mouse1', ...]; [] when the folder is missing
    """
    d = _data_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.h5ad"))


def read(path: str | os.PathLike):
    """Read a benchmark ``.h5ad`` file (raw counts in ``X``, labels in ``obs["cell_type"]``).

    The counts are also placed in ``layers["counts"]`` so the file is ready for :func:`scfuse.tl.cluster`.

    Examples
    --------
    >>> import scfuse
    >>> names = scfuse.datasets.available()
    """
    import anndata as ad

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    adata = ad.read_h5ad(path)
    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X.copy()
    return adata


def load(name: str):
    """Load a benchmark dataset by name from :attr:`scfuse.settings.data_dir`.

    The folder defaults to the environment variable ``SCFUSE_DATA_DIR`` (else ``../shared/data`` beside the
    checkout); set it with ``export SCFUSE_DATA_DIR=/path/to/data`` or ``scfuse.settings.data_dir = ...``.

    Parameters
    ----------
    name
        File name without ``.h5ad``, e.g. ``"pbmc_10x_4k_top2000"``; see :func:`available`.

    Returns
    -------
    :class:`~anndata.AnnData` with raw counts in ``X`` and ``layers["counts"]`` and labels in ``obs["cell_type"]``.

    Examples
    --------
    >>> import scfuse
    >>> if "baron_mouse1" in scfuse.datasets.available():
    ...     adata = scfuse.datasets.load("baron_mouse1")
    """
    d = _data_dir()
    if not d.is_dir():
        raise FileNotFoundError(
            f"The data folder {d} does not exist. Point SCFUSE_DATA_DIR (or scfuse.settings.data_dir) at the "
            "folder that holds the benchmark .h5ad files."
        )
    names = available()
    stem = name[:-5] if name.endswith(".h5ad") else name
    if stem not in names:
        raise KeyError(
            f"Unknown dataset {name!r}. Available in {d}: {names or 'none'}. "
            "Set SCFUSE_DATA_DIR (or scfuse.settings.data_dir) to another folder if needed."
        )
    return read(d / f"{stem}.h5ad")
