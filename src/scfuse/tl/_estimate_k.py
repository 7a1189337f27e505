from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def leiden_on_embedding(
    z: np.ndarray,
    *,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    n_kernel_neighbors: int | None = None,
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
    conn = sp.triu(gauss_weights(idx, dist, sigma_neighbor=n_kernel_neighbors), k=1).tocoo()
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


#: resolutions scanned when ``resolution=None``
RESOLUTION_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def choose_resolution(
    z: np.ndarray,
    *,
    grid: tuple[float, ...] = RESOLUTION_GRID,
    metric: str = "cosine",
    max_cells: int = 3000,
    random_state: int = 0,
) -> tuple[float, np.ndarray, list[dict]]:
    """Leiden at each resolution of ``grid``; keep the partition with the highest silhouette (no labels used).

    The silhouette is computed on a fixed random subsample of at most ``max_cells`` cells, so the cost stays
    O(max_cells^2) whatever n. Returns the chosen resolution, its labels and the whole scan.
    """
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(random_state)
    sub = rng.choice(z.shape[0], size=min(max_cells, z.shape[0]), replace=False)
    scan, best = [], None
    for res in grid:
        labels = leiden_on_embedding(z, resolution=res, metric=metric, random_state=random_state)
        k = int(labels.max()) + 1
        sil = float(silhouette_score(z[sub], labels[sub], metric=metric)) if len(np.unique(labels[sub])) > 1 else -1.0
        scan.append({"resolution": res, "n_clusters": k, "silhouette": sil})
        if best is None or sil > best[0] + 1e-12:
            best = (sil, res, labels)
    return best[1], best[2], scan


def initial_clusters(
    z: np.ndarray,
    n_clusters: int | None,
    *,
    resolution: float | None = None,
    random_state: int = 0,
    min_size: int = 1,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and centres that start the clustering stage, found without any ground truth.

    ``n_clusters=None``: Leiden on the embedding decides k, at ``resolution`` or, when it is ``None``, at the
    resolution of :data:`RESOLUTION_GRID` whose partition has the highest silhouette. Communities with fewer than
    ``min_size`` cells are folded into the community of the nearest centre. An integer: k-means with that k
    (20 restarts). Also returns a record of how k was found.
    """
    from sklearn.cluster import KMeans

    info: dict = {}
    if n_clusters is None:
        if resolution is None:
            res, labels, scan = choose_resolution(z, random_state=random_state)
            info = {
                "resolution_chosen": res,
                "resolution_scan": [s["resolution"] for s in scan],
                "n_clusters_scan": [s["n_clusters"] for s in scan],
                "silhouette_scan": [s["silhouette"] for s in scan],
            }
        else:
            labels = leiden_on_embedding(z, resolution=resolution, random_state=random_state)
            info = {"resolution_chosen": resolution}
        if min_size > 1:
            labels = _fold_small(z, labels, min_size)
        if len(np.unique(labels)) < 2:
            labels = KMeans(2, n_init=20, random_state=random_state).fit_predict(z)
    else:
        labels = KMeans(n_clusters, n_init=20, random_state=random_state).fit_predict(z)
    _, labels = np.unique(labels, return_inverse=True)
    centers = np.stack([z[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    return labels, centers.astype(np.float32), info


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
