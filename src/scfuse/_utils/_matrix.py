"""Column statistics and PCA of cells x genes matrices without densifying all cells."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: up to this many cells the z-scored matrix is made dense and handed to scikit-learn's PCA; above it the PCA is
#: computed from the gene covariance accumulated over chunks of cells (memory: one chunk plus genes x genes)
DENSE_PCA_MAX_CELLS = 20_000
PCA_CHUNK_CELLS = 10_000


def column_mean_var(mat) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) variance of a sparse or dense matrix, in float64, without densifying it."""
    n = mat.shape[0]
    if sp.issparse(mat):
        mean = np.asarray(mat.sum(axis=0), dtype=np.float64).ravel() / n
        sq = sp.csr_matrix(mat, copy=True)
        sq.data = sq.data.astype(np.float64) ** 2
        var = np.asarray(sq.sum(axis=0)).ravel() / n - mean**2
        return mean, np.maximum(var, 0.0)
    arr = np.asarray(mat)
    return arr.mean(axis=0, dtype=np.float64), arr.var(axis=0, dtype=np.float64)


def _zscored(block, mean: np.ndarray, sd: np.ndarray, clip: float) -> np.ndarray:
    dense = block.toarray() if sp.issparse(block) else np.array(block, dtype=np.float32)
    dense = ((dense - mean) / sd).astype(np.float32, copy=False)
    return np.clip(dense, -clip, clip, out=dense)


def pca_of_blocks(blocks, n_features: int, n_comps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, components)`` (``n_features``, ``n_features x n_comps``) of the rows of dense ``blocks``.

    ``blocks`` is an iterable of ``cells x n_features`` arrays; the covariance is summed block by block, and each component's
    largest loading is positive.
    """
    total, gram, n = np.zeros(n_features), np.zeros((n_features, n_features)), 0
    for block in blocks:
        b = np.asarray(block, dtype=np.float64)
        total += b.sum(axis=0)
        gram += b.T @ b
        n += b.shape[0]
    mu = total / n
    cov = (gram - n * np.outer(mu, mu)) / max(n - 1, 1)
    _, evecs = np.linalg.eigh(cov)
    n_comps = int(min(n_comps, n_features))
    comps = evecs[:, ::-1][:, :n_comps]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(n_comps)])
    return mu.astype(np.float32), (comps * signs).astype(np.float32)


def zscore_pca(mat, n_comps: int, *, clip: float = 10.0, random_state: int = 0) -> np.ndarray:
    """PCA scores (float32) of the per-column z-scored, clipped ``mat`` (cells x genes, sparse or dense).

    Up to :data:`DENSE_PCA_MAX_CELLS` cells scikit-learn's PCA runs on the dense z-scored matrix. Above it the
    gene covariance is summed over chunks of :data:`PCA_CHUNK_CELLS` cells and eigendecomposed (the method
    scikit-learn itself picks for many more cells than genes), and the scores are computed chunk by chunk: no
    dense cells x genes array.
    """
    from sklearn.decomposition import PCA

    n, g = mat.shape
    mean, var = column_mean_var(mat)
    sd = np.sqrt(var)
    sd[sd == 0] = 1.0
    n_comps = int(min(n_comps, n - 1, g))
    if n <= DENSE_PCA_MAX_CELLS:
        dense = _zscored(mat, mean, sd, clip)
        return (
            PCA(n_components=n_comps, random_state=random_state, svd_solver="auto")
            .fit_transform(dense)
            .astype(np.float32)
        )
    chunks = [slice(s, min(s + PCA_CHUNK_CELLS, n)) for s in range(0, n, PCA_CHUNK_CELLS)]
    mu, comps = pca_of_blocks((_zscored(mat[c], mean, sd, clip) for c in chunks), g, n_comps)
    return np.vstack([(_zscored(mat[c], mean, sd, clip) - mu) @ comps for c in chunks]).astype(np.float32)
