"""The model input: genes kept, library-size normalisation, log1p and the method's scaling (fitted once, saved)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from scfuse._utils._matrix import column_mean_var

if TYPE_CHECKING:
    from anndata import AnnData


@dataclass
class Preprocessor:
    """Fitted gene selection and input transform; re-applied unchanged to new cells (``predict``/``transfer``).

    ``input_transform``: ``"zscore"`` (per-gene z-score of log-normalised counts), ``"log"`` (log-normalised,
    unscaled) or ``"minmax_l2"`` (per-gene min-max scaling then per-cell L2 normalisation).
    """

    n_top_genes: int | None = 2000
    input_transform: str = "zscore"
    min_cells: float = 1  # a gene must be non-zero in at least this many cells (a fraction when < 1)
    # fitted
    var_names: list[str] = field(default_factory=list)  # all genes of the training data
    genes: np.ndarray | None = None  # indices of the model's genes into var_names
    target_sum: float | None = None  # normalisation target (median library size of the training cells)
    center: np.ndarray | None = None
    scale: np.ndarray | None = None

    def fit(self, counts: sp.csr_matrix, var_names, gene_mask: np.ndarray | None = None) -> None:
        """Choose the genes and fit the input transform.

        ``gene_mask`` (boolean over genes): train on these genes (those expressed in enough cells) instead of
        selecting ``n_top_genes`` highly variable ones.
        """
        import anndata as ad
        import scanpy as sc

        self.var_names = [str(v) for v in var_names]
        n = counts.shape[0]
        min_cells = self.min_cells * n if self.min_cells < 1 else self.min_cells
        nonzero = np.asarray((counts > 0).sum(axis=0)).ravel()
        expressed = nonzero >= max(min_cells, 1)
        keep = np.flatnonzero(expressed if gene_mask is None else expressed & gene_mask)
        if keep.size < 2:
            raise ValueError(
                "Fewer than 2 genes are expressed in enough cells to train a model"
                + ("." if gene_mask is None else f" among the {int(gene_mask.sum())} genes of mask_var.")
            )
        lib = np.asarray(counts.sum(axis=1)).ravel()
        self.target_sum = float(np.median(lib))
        logx = self._log_normalize(counts[:, keep], lib)
        if gene_mask is None and self.n_top_genes is not None and self.n_top_genes < keep.size:
            tmp = ad.AnnData(logx)
            hv = sc.pp.highly_variable_genes(tmp, n_top_genes=self.n_top_genes, flavor="seurat", inplace=False)
            sel = np.flatnonzero(hv["highly_variable"].to_numpy())
            keep, logx = keep[sel], logx[:, sel]
        self.genes = keep
        if self.input_transform == "zscore":
            mean, var = column_mean_var(logx)
            sd = np.sqrt(var)
            sd[sd == 0] = 1.0
            self.center, self.scale = mean.astype(np.float32), sd.astype(np.float32)
        elif self.input_transform == "minmax_l2":
            lo = logx.min(axis=0).toarray().ravel()
            span = logx.max(axis=0).toarray().ravel() - lo
            span[span == 0] = 1.0
            self.center, self.scale = lo.astype(np.float32), span.astype(np.float32)
        elif self.input_transform == "log":
            self.center = np.zeros(keep.size, dtype=np.float32)
            self.scale = np.ones(keep.size, dtype=np.float32)
        else:
            raise ValueError(f"Unknown input_transform {self.input_transform!r}.")

    def _log_normalize(self, counts: sp.csr_matrix, lib: np.ndarray) -> sp.csr_matrix:
        factors = self.target_sum / np.maximum(lib, 1e-12)
        out = sp.csr_matrix(sp.diags(factors.astype(np.float32)) @ counts, dtype=np.float32)
        out.data = np.log1p(out.data)
        return out

    def transform(self, counts: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        """``(log-normalised model genes, raw counts of the model genes, size factors)``; both matrices CSR float32.

        The model input is ``dense_input`` of rows of the first: only a mini-batch or an inference chunk is ever
        dense.
        """
        lib = np.asarray(counts.sum(axis=1)).ravel()
        sub = sp.csr_matrix(counts[:, self.genes], dtype=np.float32)
        size_factors = (lib / self.target_sum).astype(np.float32)
        return self._log_normalize(sub, lib), sub, size_factors

    def dense_input(self, logx_rows: sp.csr_matrix) -> np.ndarray:
        """The model input of some cells (rows of the first matrix of :meth:`transform`), dense float32."""
        x = (logx_rows.toarray() - self.center) / self.scale
        if self.input_transform == "minmax_l2":
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x.astype(np.float32, copy=False)

    def state(self) -> dict:
        return {
            "n_top_genes": self.n_top_genes,
            "input_transform": self.input_transform,
            "min_cells": self.min_cells,
            "var_names": self.var_names,
            "genes": self.genes,
            "target_sum": self.target_sum,
            "center": self.center,
            "scale": self.scale,
        }

    @classmethod
    def from_state(cls, state: dict) -> Preprocessor:
        return cls(**state)


def resolve_mask_var(adata: AnnData, mask_var) -> tuple[np.ndarray | None, str | None]:
    """``(boolean gene mask or None, what it came from)`` for ``mask_var``, as :func:`scanpy.pp.pca` reads it.

    ``"highly_variable"`` (the default) uses ``var["highly_variable"]`` when that column exists and else lets the
    method pick its genes; another string names a ``var`` column that must exist; an array is a boolean mask over
    the genes; ``None`` lets the method pick from all genes.
    """
    if mask_var is None:
        return None, None
    if isinstance(mask_var, str):
        if mask_var not in adata.var:
            if mask_var == "highly_variable":
                return None, None
            raise KeyError(f"mask_var={mask_var!r} is not a column of adata.var (columns: {list(adata.var.columns)}).")
        col = adata.var[mask_var]
        if col.dtype != bool:
            raise ValueError(f"adata.var[{mask_var!r}] must be boolean, not {col.dtype}.")
        return col.to_numpy(dtype=bool), mask_var
    mask = np.asarray(mask_var)
    if mask.dtype != bool or mask.shape != (adata.n_vars,):
        raise ValueError(f"mask_var must be a boolean array of length n_vars={adata.n_vars}, a var column or None.")
    return mask, "array"
