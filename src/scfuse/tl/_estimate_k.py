from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def leiden_on_embedding(
    z: np.ndarray,
    *,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    metric: str = "cosine",
    random_state: int = 0,
) -> np.ndarray:
    """Leiden communities of the Gaussian-kernel kNN graph of an embedding (AttentionAE-sc's initialisation).

    The graph is sparse (``n * n_neighbors`` edges): kernel weights as in :func:`scfuse.pp.build_graph` with
    ``method="gauss"``.
    """
    import igraph as ig
    import leidenalg

    from .._utils._graph import gauss_weights, knn_search

    n = z.shape[0]
    k = min(n_neighbors, n - 1)
    idx, dist = knn_search(z.astype(np.float32), k, metric=metric)
    conn = sp.triu(gauss_weights(idx, dist), k=1).tocoo()
    g = ig.Graph(n=n, edges=np.column_stack([conn.row, conn.col]).tolist(), directed=False)
    g.es["weight"] = conn.data.astype(float).tolist()
    part = leidenalg.find_partition(
        g,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=random_state,
        n_iterations=-1,
    )
    return np.asarray(part.membership, dtype=np.int64)


def initial_clusters(
    z: np.ndarray,
    n_clusters: int | None,
    *,
    resolution: float = 1.0,
    random_state: int = 0,
    min_size: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and centres that start the clustering stage, found without any ground truth.

    ``n_clusters=None``: Leiden on the embedding decides k. Communities with fewer than ``min_size`` cells are
    folded into the community of the nearest centre. An integer: k-means with that k (20 restarts).
    """
    from sklearn.cluster import KMeans

    if n_clusters is None:
        labels = leiden_on_embedding(z, resolution=resolution, random_state=random_state)
        if min_size > 1:
            labels = _fold_small(z, labels, min_size)
        if len(np.unique(labels)) < 2:
            labels = KMeans(2, n_init=20, random_state=random_state).fit_predict(z)
    else:
        labels = KMeans(n_clusters, n_init=20, random_state=random_state).fit_predict(z)
    _, labels = np.unique(labels, return_inverse=True)
    centers = np.stack([z[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    return labels, centers.astype(np.float32)


def _fold_small(z: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    labels = labels.copy()
    while True:
        ids, counts = np.unique(labels, return_counts=True)
        small = ids[counts < min_size]
        big = ids[counts >= min_size]
        if small.size == 0 or big.size < 2:
            return labels
        centers = np.stack([z[labels == c].mean(axis=0) for c in big])
        for c in small:
            rows = labels == c
            d = ((z[rows, None, :] - centers[None]) ** 2).sum(-1)
            labels[rows] = big[d.argmin(axis=1)]
