"""Input checks shared by every public function. They run before anything is written to ``adata``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData

_COUNTS_HINT = (
    "scfuse's count models need raw counts. Keep them in a layer before normalising, e.g.\n"
    "    adata.layers['counts'] = adata.X.copy()\n"
    "    sc.pp.normalize_total(adata); sc.pp.log1p(adata)\n"
    "and pass layer='counts' (the default)."
)


class TrainingError(RuntimeError):
    """Training produced a non-finite loss or was otherwise unable to continue."""


def check_adata(adata, *, writable: bool = False) -> None:
    """An AnnData with cells and genes; ``writable``: also in memory (not backed), since results are written."""
    from anndata import AnnData

    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"adata is empty ({adata.n_obs} cells x {adata.n_vars} genes).")
    if writable and adata.isbacked:
        raise ValueError(
            f"adata is backed by {adata.filename} (read with backed='r'), and scfuse writes its results into "
            "adata. Load it into memory first: adata = adata.to_memory()."
        )


def _values(mat) -> np.ndarray:
    if sp.issparse(mat):
        return np.asarray(mat.data)
    return np.asarray(mat).ravel()


def check_finite(mat, what: str) -> None:
    vals = _values(mat)
    if vals.size and not np.all(np.isfinite(vals)):
        n_bad = int((~np.isfinite(vals)).sum())
        raise ValueError(f"{what} contains {n_bad} NaN or infinite values; remove or impute them first.")


def looks_like_counts(mat, *, sample: int | None = None) -> bool:
    """True when every (sampled) stored value is a finite non-negative integer."""
    vals = _values(mat)
    if sample is not None and vals.size > sample:
        rng = np.random.default_rng(0)
        vals = vals[rng.choice(vals.size, sample, replace=False)]
    if not np.all(np.isfinite(vals)):
        return False
    return bool(np.all(vals >= 0) and np.all(np.mod(vals, 1) == 0))


def get_counts(adata: AnnData, layer: str | None) -> tuple[sp.csr_matrix, str]:
    """Return raw counts as float32 CSR and a description of where they came from.

    ``layer=None`` reads ``adata.X``. When ``layer="counts"`` (the default of every method) is absent but
    ``adata.X`` holds counts, ``X`` is used and a hint is logged. Anything that is not counts raises
    :class:`ValueError` with the fix.
    """
    from scanpy import logging as logg

    if layer is not None and layer not in adata.layers:
        if layer == "counts" and looks_like_counts(adata.X):
            logg.hint("adata.layers['counts'] not found; using adata.X, which holds raw counts.")
            mat, source = adata.X, "X"
        else:
            avail = list(adata.layers.keys())
            raise KeyError(
                f"Layer {layer!r} not found in adata.layers (available: {avail}).\n{_COUNTS_HINT}"
                if layer == "counts"
                else f"Layer {layer!r} not found in adata.layers (available: {avail})."
            )
    else:
        mat, source = (adata.X, "X") if layer is None else (adata.layers[layer], f"layers[{layer!r}]")
    if mat is None:
        raise ValueError("adata.X is None; pass the layer that holds raw counts.")
    check_finite(mat, f"adata.{source}")
    vals = _values(mat)
    if vals.size and vals.min() < 0:
        raise ValueError(f"adata.{source} has negative values, so it does not hold raw counts.\n{_COUNTS_HINT}")
    if not looks_like_counts(mat):
        raise ValueError(f"adata.{source} has non-integer values, so it does not hold raw counts.\n{_COUNTS_HINT}")
    csr = sp.csr_matrix(mat, dtype=np.float32)
    totals = np.asarray(csr.sum(axis=1)).ravel()
    n_empty = int((totals == 0).sum())
    if n_empty:
        raise ValueError(
            f"{n_empty} cells have no counts in adata.{source}; remove them first, "
            "e.g. sc.pp.filter_cells(adata, min_counts=1)."
        )
    if not np.any(np.asarray(csr.sum(axis=0)).ravel() > 0):
        raise ValueError(f"Every gene of adata.{source} is empty.")
    return csr, source


def check_n_clusters(n_clusters, n_obs: int) -> int | None:
    if n_clusters is None:
        return None
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
        raise TypeError(f"n_clusters must be an int or None, got {type(n_clusters).__name__}.")
    if n_clusters < 2 or n_clusters > n_obs:
        raise ValueError(f"n_clusters must be between 2 and the number of cells ({n_obs}), got {n_clusters}.")
    return int(n_clusters)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def batch_codes(adata: AnnData, batch_key: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes ``0..n_batches-1`` of ``adata.obs[batch_key]`` and the batch names.

    Raises clear errors for a missing column, missing values or a single batch.
    """
    if not isinstance(batch_key, str) or batch_key not in adata.obs.columns:
        raise KeyError(f"batch_key={batch_key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)}).")
    col = adata.obs[batch_key]
    if col.isna().any():
        raise ValueError(f"adata.obs[{batch_key!r}] has missing values; every cell needs a batch.")
    names, codes = np.unique(col.astype(str).to_numpy(), return_inverse=True)
    if names.size < 2:
        raise ValueError(f"adata.obs[{batch_key!r}] has a single batch ({names[0]!r}); leave batch_key=None.")
    return codes.astype(np.int64), [str(v) for v in names]
