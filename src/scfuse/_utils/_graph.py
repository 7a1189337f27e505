"""Sparse cell-graph helpers. Nothing here builds a dense n x n matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

#: above this many cells :func:`knn_search` is approximate (pynndescent); at or below it, exact
EXACT_KNN_MAX_CELLS = 10_000


def knn_search(
    rep: np.ndarray, n_neighbors: int, metric: str = "euclidean", *, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """K nearest other cells: ``(indices, distances)``, each ``n x n_neighbors``, self excluded.

    Up to :data:`EXACT_KNN_MAX_CELLS` cells the search is exact (scikit-learn's chunked brute force, memory
    O(n * n_neighbors), well under a second there); above it, approximate with pynndescent (as
    :func:`scanpy.pp.neighbors`), so time grows about as n log n instead of n^2. ``random_state`` seeds the
    approximate search.
    """
    n = rep.shape[0]
    k = min(n_neighbors + 1, n)
    if n > EXACT_KNN_MAX_CELLS:
        from pynndescent import NNDescent

        index = NNDescent(rep, n_neighbors=k, metric=metric, random_state=random_state, n_jobs=1, low_memory=True)
        idx, dist = index.neighbor_graph
    else:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k, metric=metric)
        nn.fit(rep)
        dist, idx = nn.kneighbors(rep)
    return _drop_self(idx, dist)


def knn_query(
    reference: np.ndarray, query: np.ndarray, n_neighbors: int, metric: str = "euclidean", *, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_neighbors`` nearest reference rows of each query row: ``(indices, distances)``, ``n_query x k``.

    Exact up to :data:`EXACT_KNN_MAX_CELLS` reference cells, pynndescent's index query above (as ``knn_search``).
    """
    k = min(n_neighbors, reference.shape[0])
    if reference.shape[0] > EXACT_KNN_MAX_CELLS:
        from pynndescent import NNDescent

        index = NNDescent(
            reference, n_neighbors=max(k, 15), metric=metric, random_state=random_state, n_jobs=1, low_memory=True
        )
        idx, dist = index.query(query, k=k)
    else:
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k, metric=metric).fit(reference).kneighbors(query)
    return idx.astype(np.int64), dist.astype(np.float64)


def query_edge_weights(distances: np.ndarray, method: str) -> np.ndarray:
    """Edge weights from new cells to their reference neighbours (``n_query x k`` distances, nearest first).

    ``"knn"``: 1. ``"gauss"``: ``exp(-d^2 / (2 s^2))`` with ``s`` half the distance to the furthest of the ``k``
    (the kernel of :func:`gauss_weights` when both cells have the same ``s``). ``"umap"``: UMAP's membership
    strengths ``exp(-(d - rho) / sigma)`` of the query row.
    """
    d = np.asarray(distances, dtype=np.float64)
    if method == "knn":
        return np.ones_like(d, dtype=np.float32)
    if method == "gauss":
        s = np.maximum(d[:, -1:] / 2.0, 1e-12)
        return np.exp(-(d**2) / (2 * s**2)).astype(np.float32)
    if method == "umap":
        from umap.umap_ import smooth_knn_dist

        sigmas, rhos = smooth_knn_dist(d.astype(np.float32), float(d.shape[1]), local_connectivity=1.0)
        return np.exp(-np.maximum(d - rhos[:, None], 0.0) / sigmas[:, None]).astype(np.float32)
    raise ValueError(f"Unknown graph weights {method!r}.")


def _drop_self(idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each cell from its own neighbour list (normally column 0; duplicates can swap the order)."""
    n, k = idx.shape
    out_i = np.empty((n, k - 1), dtype=np.int64)
    out_d = np.empty((n, k - 1), dtype=np.float64)
    rows = np.arange(n)
    first_is_self = idx[:, 0] == rows
    out_i[first_is_self] = idx[first_is_self, 1:]
    out_d[first_is_self] = dist[first_is_self, 1:]
    for r in np.flatnonzero(~first_is_self):
        sel = np.flatnonzero(idx[r] != r)[: k - 1]
        out_i[r] = idx[r, sel]
        out_d[r] = dist[r, sel]
    return out_i, np.maximum(out_d, 0.0)


def knn_to_csr(indices: np.ndarray, values: np.ndarray, n: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(n), indices.shape[1])
    mat = sp.csr_matrix((values.ravel().astype(np.float32), (rows, indices.ravel())), shape=(n, n))
    mat.sum_duplicates()
    return mat


def symmetrize_max(mat: sp.spmatrix) -> sp.csr_matrix:
    mat = sp.csr_matrix(mat)
    return sp.csr_matrix(mat.maximum(mat.T))


def gauss_weights(indices: np.ndarray, distances: np.ndarray, *, sigma_neighbor: int | None = None) -> sp.csr_matrix:
    """Adaptive Gaussian kernel of AttentionAE-sc on the kNN edges only (sparse, symmetric).

    ``sigma_i`` is half the distance to the cell's ``sigma_neighbor``-th nearest neighbour (default: the furthest
    of its ``k``) and ``W_ij = sqrt(2 s_i s_j / (s_i^2 + s_j^2)) exp(-d_ij^2 / (s_i^2 + s_j^2))``. With more
    neighbours than ``sigma_neighbor`` the sparse kernel approaches the dense one (far pairs weigh ~0).
    """
    n = indices.shape[0]
    col = distances.shape[1] - 1 if sigma_neighbor is None else min(sigma_neighbor, distances.shape[1]) - 1
    sigma = np.maximum(distances[:, col] / 2.0, 1e-12)
    si = sigma[:, None]
    sj = sigma[indices]
    denom = si**2 + sj**2
    w = np.sqrt(2 * si * sj / denom) * np.exp(-(distances**2) / denom)
    w[w < 1e-14] = 0.0
    mat = knn_to_csr(indices, w, n)
    mat = symmetrize_max(mat)
    mat.eliminate_zeros()
    return mat


def binary_adjacency(conn: sp.spmatrix) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency with the pattern of ``conn`` (diagonal removed)."""
    a = sp.csr_matrix(conn, dtype=np.float32, copy=True)
    a.setdiag(0)
    a.eliminate_zeros()
    a.data[:] = 1.0
    return symmetrize_max(a)


def normalize_adjacency(adj: sp.spmatrix, mode: str = "sym", *, self_loops: bool = True) -> sp.csr_matrix:
    """``D^-1/2 (A+I) D^-1/2`` (``mode="sym"``) or ``D^-1 (A+I)`` (``mode="row"``), sparse."""
    a = sp.csr_matrix(adj, dtype=np.float32, copy=True)
    if self_loops:
        a.setdiag(1.0)
    deg = np.asarray(a.sum(axis=1)).ravel()
    deg[deg == 0] = 1.0
    if mode == "sym":
        d = sp.diags(1.0 / np.sqrt(deg))
        out = d @ a @ d
    elif mode == "row":
        out = sp.diags(1.0 / deg) @ a
    else:
        raise ValueError(f"mode must be 'sym' or 'row', got {mode!r}.")
    return sp.csr_matrix(out, dtype=np.float32)


def to_torch_sparse(mat: sp.spmatrix, device: torch.device | str = "cpu") -> torch.Tensor:
    coo = sp.coo_matrix(mat)
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    val = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(idx, val, coo.shape, device=device, check_invariants=False).coalesce()


def neighbor_table(adj: sp.spmatrix, max_neighbors: int, *, include_self: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Padded neighbour lists: ``(index, mask)`` of shape ``n x K``; a row keeps its strongest edges.

    Column 0 is the cell itself when ``include_self``. Padding entries point at the cell itself and are masked out.
    ``K`` is the largest degree (at most ``max_neighbors``) plus the self column.
    """
    a = sp.csr_matrix(adj, dtype=np.float32, copy=True)
    a.setdiag(0)
    a.eliminate_zeros()
    n = a.shape[0]
    lens = np.diff(a.indptr)
    width_nb = int(min(lens.max() if n else 0, max_neighbors))
    off = int(include_self)
    width = width_nb + off
    index = np.repeat(np.arange(n)[:, None], max(width, 1), axis=1)
    mask = np.zeros(index.shape, dtype=bool)
    if include_self:
        mask[:, 0] = True
    if a.nnz and width_nb > 0:
        rows = np.repeat(np.arange(n), lens)
        order = np.lexsort((-a.data, rows))  # by row, strongest first
        pos = np.arange(a.nnz) - a.indptr[rows]
        keep = pos < width_nb
        cols = a.indices[order]
        index[rows[keep], pos[keep] + off] = cols[keep]
        mask[rows[keep], pos[keep] + off] = True
    return index, mask


def sample_edges(
    adj: sp.csr_matrix, n_pos: int, rng: np.random.Generator, *, neg_ratio: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample positive edges of ``adj`` and as many (times ``neg_ratio``) random pairs as negatives.

    Returns ``(rows, cols, target)`` with target 1 for sampled edges, 0 for sampled non-edges.
    Random pairs that happen to be edges are labelled 1.
    """
    coo = sp.coo_matrix(adj)
    n = adj.shape[0]
    m = coo.nnz
    if m:
        pick = rng.integers(0, m, size=min(n_pos, m))
        pr, pc = coo.row[pick], coo.col[pick]
    else:
        pr = pc = np.zeros(0, dtype=np.int64)
    n_neg = max(1, int(round(max(len(pr), 1) * neg_ratio)))
    nr = rng.integers(0, n, size=n_neg)
    nc = rng.integers(0, n, size=n_neg)
    a = sp.csr_matrix(adj)
    neg_t = np.asarray(a[nr, nc]).ravel() > 0
    rows = np.concatenate([pr, nr]).astype(np.int64)
    cols = np.concatenate([pc, nc]).astype(np.int64)
    target = np.concatenate([np.ones(len(pr)), neg_t.astype(float)]).astype(np.float32)
    return rows, cols, target


def batch_balanced_knn(
    rep: np.ndarray, batches: np.ndarray, n_neighbors: int, *, metric: str, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(idx, dist)`` of a batch-balanced kNN, as bbknn builds it.

    Each cell's ``n_neighbors // n_batches`` (at least 1) nearest cells in every batch (its own batch without
    itself), sorted by distance; rows of ``rep`` are cells, ``batches`` their batch codes ``0..n_batches-1``.
    """
    n_batches = int(batches.max()) + 1
    per = max(1, n_neighbors // n_batches)
    idx = np.empty((rep.shape[0], per * n_batches), dtype=np.int64)
    dist = np.empty(idx.shape, dtype=np.float32)
    for b in range(n_batches):
        members = np.flatnonzero(batches == b)
        if members.size <= per:
            raise ValueError(
                f"Batch {b} has {members.size} cells, too few for {per} neighbours per batch; lower n_neighbors or "
                "merge small batches."
            )
        # one extra neighbour, so that a cell of this batch can drop itself
        i, d = knn_query(rep[members], rep, per + 1, metric=metric, random_state=random_state)
        i = members[i]
        is_self = i == np.arange(rep.shape[0])[:, None]
        # drop the cell itself where found, else the furthest of the per + 1
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), per)
        keep = np.ones(i.shape, dtype=bool)
        keep[np.arange(i.shape[0]), drop] = False
        cols = slice(b * per, (b + 1) * per)
        idx[:, cols] = i[keep].reshape(-1, per)
        dist[:, cols] = d[keep].reshape(-1, per)
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def prune_knn(distances: sp.spmatrix, n_neighbors: int = 10) -> sp.csr_matrix:
    """ScCAGN's pruned kNN graph from a kNN distance matrix (sparse, O(n k)).

    Each cell keeps its ``n_neighbors`` nearest neighbours whose distance is at most the mean + std of those
    ``n_neighbors`` distances; the binary result is symmetrised by the maximum.
    """
    d = sp.csr_matrix(distances, dtype=np.float32)
    n = d.shape[0]
    rows, cols = [], []
    for i in range(n):
        s, e = d.indptr[i], d.indptr[i + 1]
        idx, dist = d.indices[s:e], d.data[s:e]
        sel = idx != i
        idx, dist = idx[sel], dist[sel]
        if idx.size == 0:
            continue
        order = np.argsort(dist, kind="stable")[:n_neighbors]
        idx, dist = idx[order], dist[order]
        keep = dist <= dist.mean() + dist.std() + 1e-12
        rows.append(np.full(int(keep.sum()), i))
        cols.append(idx[keep])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    a = sp.csr_matrix((np.ones(r.size, dtype=np.float32), (r, c)), shape=(n, n))
    return symmetrize_max(a)


def edge_weights(idx: np.ndarray, dist: np.ndarray, method: str, *, metric: str, random_state: int) -> sp.csr_matrix:
    """Symmetric connectivities (CSR float32, no self loops) of a kNN table for the weights ``method``.

    ``idx`` and ``dist`` are ``cells x k`` neighbour indices and distances, the cell itself excluded.
    """
    n = idx.shape[0]
    if method == "gauss":
        conn = gauss_weights(idx, dist)
    elif method == "knn":
        conn = binary_adjacency(knn_to_csr(idx, np.ones_like(dist), n))
    else:
        from umap.umap_ import fuzzy_simplicial_set

        knn_i = np.hstack([np.arange(n)[:, None], idx])
        knn_d = np.hstack([np.zeros((n, 1)), dist]).astype(np.float32)
        conn, _, _ = fuzzy_simplicial_set(
            sp.coo_matrix((n, 1)),
            idx.shape[1] + 1,
            random_state,
            metric,
            knn_indices=knn_i,
            knn_dists=knn_d,
            set_op_mix_ratio=1.0,
            local_connectivity=1.0,
        )
        conn = sp.csr_matrix(conn, dtype=np.float32)
        conn.setdiag(0)
        conn.eliminate_zeros()
    return sp.csr_matrix(conn, dtype=np.float32)


def knn_table(distances: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``(idx, dist)``, ``cells x k``, from a kNN distance matrix (``obsp[...distances]``), nearest first.

    ``k`` is the smallest number of stored neighbours of any cell (scanpy and :func:`build_graph` store the same
    number for every cell).
    """
    d = sp.csr_matrix(distances)
    d.setdiag(0)
    d.eliminate_zeros()
    counts = np.diff(d.indptr)
    k = int(counts.min()) if counts.size else 0
    if k < 1:
        raise ValueError("The stored kNN distances have a cell without neighbours; rebuild the graph.")
    if np.all(counts == k):  # the usual case: every cell has k neighbours
        data, cols = d.data.reshape(-1, k), d.indices.reshape(-1, k)
        order = np.argsort(data, axis=1, kind="stable")
        return np.take_along_axis(cols, order, 1).astype(np.int64), np.take_along_axis(data, order, 1).astype(
            np.float32
        )
    idx = np.empty((d.shape[0], k), dtype=np.int64)
    dist = np.empty((d.shape[0], k), dtype=np.float32)
    for i in range(d.shape[0]):
        row = slice(d.indptr[i], d.indptr[i + 1])
        order = np.argsort(d.data[row], kind="stable")[:k]
        idx[i], dist[i] = d.indices[row][order], d.data[row][order]
    return idx, dist
