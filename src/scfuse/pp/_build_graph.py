from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
from scanpy import logging as logg

from scfuse._keys import GraphKeys
from scfuse._utils._graph import (
    batch_balanced_knn,
    edge_weights,
    knn_search,
    knn_to_csr,
)
from scfuse._utils._matrix import column_mean_var, zscore_pca
from scfuse._utils._random import resolve_seed
from scfuse._utils._validate import batch_codes, check_adata, check_finite, check_positive_int, looks_like_counts

if TYPE_CHECKING:
    from anndata import AnnData

GraphMethod = Literal["gauss", "knn", "umap"]


def log_hvg_matrix(counts, n_top_genes: int | None) -> tuple[sp.csr_matrix, np.ndarray]:
    """Library-size normalise (to the median), log1p and keep the top ``n_top_genes`` HVGs (scanpy, flavor seurat).

    Returns the log-normalised HVG matrix (sparse) and the column indices of the genes kept.
    Genes without any count are dropped first. ``counts`` is never modified.
    """
    import anndata as ad
    import scanpy as sc

    counts = sp.csr_matrix(counts, dtype=np.float32)
    keep = np.flatnonzero(np.asarray((counts > 0).sum(axis=0)).ravel() > 0)
    tmp = ad.AnnData(counts[:, keep].copy())
    sc.pp.normalize_total(tmp)
    sc.pp.log1p(tmp)
    if n_top_genes is not None and n_top_genes < tmp.n_vars:
        hv = sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat", inplace=False)
        sel = np.flatnonzero(hv["highly_variable"].to_numpy())
        return sp.csr_matrix(tmp.X[:, sel]), keep[sel]
    return sp.csr_matrix(tmp.X), keep


def compute_representation(
    adata: AnnData, *, layer: str | None, n_top_genes: int, n_pcs: int, random_state: int
) -> np.ndarray:
    """PCA of the z-scored log-normalised HVGs of ``layer`` (or of ``X``), computed on copies.

    Sparse input is never densified as a whole above :data:`~scfuse._utils._matrix.DENSE_PCA_MAX_CELLS` cells.
    """
    mat = adata.X if layer is None else adata.layers[layer]
    check_finite(mat, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    if looks_like_counts(mat, sample=200_000):
        rep, _ = log_hvg_matrix(mat, n_top_genes)
    else:  # already normalised by the user: use as is, HVG by variance
        rep = mat if sp.issparse(mat) else np.asarray(mat, dtype=np.float32)
        if n_top_genes < rep.shape[1]:
            sel = np.sort(np.argsort(-column_mean_var(rep)[1])[:n_top_genes])
            rep = rep[:, sel]
    return zscore_pca(rep, n_pcs, random_state=random_state)


def _representation(adata: AnnData, use_rep, layer, n_top_genes, n_pcs, seed, keys) -> tuple:
    """``(representation, its key, the PCA to write or None, the layer read)`` of :func:`build_graph`."""
    pca_to_write = None
    if use_rep is None and "X_pca" in adata.obsm:
        use_rep = "X_pca"
    if use_rep is None:
        if layer is None and "counts" in adata.layers:
            layer = "counts"
        rep = compute_representation(adata, layer=layer, n_top_genes=n_top_genes, n_pcs=n_pcs, random_state=seed)
        pca_to_write = rep
        rep_key = keys.pca
    elif use_rep == "X":
        rep = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        rep_key = "X"
    else:
        if use_rep not in adata.obsm:
            raise KeyError(f"use_rep={use_rep!r} not found in adata.obsm (available: {list(adata.obsm.keys())}).")
        rep = np.asarray(adata.obsm[use_rep])
        rep_key = use_rep
    return rep, rep_key, pca_to_write, layer


def build_graph(
    adata: AnnData,
    n_neighbors: int = 15,
    *,
    method: GraphMethod = "gauss",
    batch_key: str | None = None,
    use_rep: str | None = None,
    n_pcs: int = 50,
    metric: str = "cosine",
    layer: str | None = None,
    n_top_genes: int = 2000,
    key_added: str = "scfuse",
    random_state: int | None = 0,
    copy: bool = False,
) -> AnnData | None:
    """Build a sparse cell-cell kNN graph in scanpy's neighbors layout.

    The graph is what the fusion models of :func:`scfuse.tl.cluster` propagate over. It is stored exactly as
    :func:`scanpy.pp.neighbors` stores a graph under a key, so ``sc.tl.umap(adata, neighbors_key=key_added)``
    and ``sc.tl.leiden(adata, neighbors_key=key_added)`` read it too. No dense ``n x n`` matrix is built:
    memory grows as ``n * n_neighbors``.

    Parameters
    ----------
    adata
        Annotated data matrix (cells x genes).
    n_neighbors
        Number of nearest neighbours of each cell (the cell itself not counted).
    method
        Edge weights. ``"gauss"``: AttentionAE-sc's adaptive Gaussian kernel, evaluated on the kNN edges only
        (``sigma_i`` = half the distance to the cell's furthest neighbour), symmetrised by the maximum.
        ``"knn"``: binary symmetrised kNN graph (scASDC, scDEFER, scCAGN). ``"umap"``: UMAP's fuzzy
        simplicial set, as :func:`scanpy.pp.neighbors`.
    batch_key
        Column of ``adata.obs`` naming each cell's sample (batch). When given, the graph is batch-balanced, as
        bbknn builds it: each cell is joined to its ``n_neighbors // n_batches`` (at least 1) nearest cells in
        every batch, so that cells of one type in different samples are neighbours even when the samples differ
        in depth or chemistry. :func:`scfuse.tl.cluster` with the same ``batch_key`` requires such a graph.
    use_rep
        Key of ``adata.obsm`` (or ``"X"``) to search neighbours in. ``None`` uses ``obsm["X_pca"]`` when present,
        else computes a PCA of the z-scored log-normalised highly variable genes of ``layer`` on a copy and
        stores it in ``obsm[f"X_{key_added}_pca"]`` (``adata.X`` is never changed).
    n_pcs
        Number of principal components when a PCA is computed here.
    metric
        Distance metric of the neighbour search (any scikit-learn metric).
    layer
        Layer with counts (or normalised values) for the PCA computed when ``use_rep`` is ``None``;
        ``None`` uses ``layers["counts"]`` when present, else ``X``.
    n_top_genes
        Highly variable genes kept for that PCA.
    key_added
        Graph key: fields are ``obsp[f"{key_added}_connectivities"]``, ``obsp[f"{key_added}_distances"]`` and
        ``uns[key_added]``. ``"neighbors"`` writes scanpy's default fields.
    random_state
        Seed of the PCA.
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets

    ``adata.obsp[f"{key_added}_connectivities"]`` : :class:`scipy.sparse.csr_matrix`
        Symmetric edge weights.
    ``adata.obsp[f"{key_added}_distances"]`` : :class:`scipy.sparse.csr_matrix`
        Distances to each cell's ``n_neighbors`` nearest neighbours.
    ``adata.uns[key_added]`` : :class:`dict`
        ``{"connectivities_key", "distances_key", "params": {"n_neighbors", "method", "metric", "use_rep", ...}}``.
    ``adata.obsm[f"X_{key_added}_pca"]``
        Only when the PCA was computed here.

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata, n_neighbors=10)
    >>> adata.obsp["scfuse_connectivities"].shape
    (300, 300)
    """
    start = logg.info(f"building the {method!r} kNN graph")
    check_adata(adata)
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    if method not in ("gauss", "knn", "umap"):
        raise ValueError(f"method must be one of 'gauss', 'knn', 'umap', got {method!r}.")
    if adata.n_obs <= n_neighbors:
        raise ValueError(
            f"adata has {adata.n_obs} cells, which is not more than n_neighbors={n_neighbors}; "
            "lower n_neighbors or use more cells."
        )
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in adata.layers (available: {list(adata.layers.keys())}).")
    seed = resolve_seed(random_state)
    batches = batch_codes(adata, batch_key)[0] if batch_key is not None else None
    keys = GraphKeys("neighbors" if key_added == "neighbors" else key_added)

    # everything is computed before anything is written
    rep, rep_key, pca_to_write, layer = _representation(adata, use_rep, layer, n_top_genes, n_pcs, seed, keys)
    rep = np.asarray(rep, dtype=np.float32)
    check_finite(rep, f"the representation {rep_key!r}")

    if batches is None:
        idx, dist = knn_search(rep, n_neighbors, metric=metric, random_state=seed)
    else:
        idx, dist = batch_balanced_knn(rep, batches, n_neighbors, metric=metric, random_state=seed)
    distances = knn_to_csr(idx, dist, adata.n_obs)
    conn = edge_weights(idx, dist, method, metric=metric, random_state=seed)

    params = {"n_neighbors": n_neighbors, "method": method, "metric": metric, "random_state": seed, "use_rep": rep_key}
    if batch_key is not None:
        params.update(batch_key=batch_key, neighbors_per_batch=int(idx.shape[1] // (int(batches.max()) + 1)))
    if pca_to_write is not None:
        params["n_pcs"] = int(pca_to_write.shape[1])
        if layer is not None:
            params["layer"] = layer

    adata = adata.copy() if copy else adata
    if pca_to_write is not None:
        adata.obsm[keys.pca] = pca_to_write
    conn_key = "connectivities" if key_added == "neighbors" else keys.connectivities
    dist_key = "distances" if key_added == "neighbors" else keys.distances
    adata.obsp[conn_key] = sp.csr_matrix(conn, dtype=np.float32)
    adata.obsp[dist_key] = sp.csr_matrix(distances, dtype=np.float32)
    adata.uns[key_added] = {"connectivities_key": conn_key, "distances_key": dist_key, "params": params}
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    '{conn_key}' and '{dist_key}' (adata.obsp), '{key_added}' (adata.uns)",
    )
    return adata if copy else None
