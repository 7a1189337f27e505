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
RESOLUTION_GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
#: the coarsest partition whose silhouette is within this margin of the best one is kept
SILHOUETTE_MARGIN = 0.03
#: cells in the random subsample used for silhouettes and for average linkage
MAX_SCORE_CELLS = 3000


def _subsample(n: int, max_cells: int, random_state: int) -> np.ndarray:
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=min(max_cells, n), replace=False))


def _silhouette(z: np.ndarray, labels: np.ndarray, metric: str) -> float:
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(z, labels, metric=metric)) if len(np.unique(labels)) > 1 else -1.0


def choose_resolution(
    z: np.ndarray,
    *,
    grid: tuple[float, ...] = RESOLUTION_GRID,
    margin: float = SILHOUETTE_MARGIN,
    metric: str = "cosine",
    max_cells: int = MAX_SCORE_CELLS,
    random_state: int = 0,
) -> tuple[float, np.ndarray, list[dict]]:
    """Leiden at each resolution of ``grid``; keep the coarsest partition whose silhouette is within ``margin`` of
    the highest (no labels used).

    Silhouettes of neighbouring resolutions are often nearly equal while the number of communities keeps
    growing; the margin prefers the fewer, larger clusters among near-ties. The silhouette is computed on a
    fixed random subsample of at most ``max_cells`` cells, so the cost stays O(max_cells^2) whatever n. Returns
    the chosen resolution, its labels and the whole scan.
    """
    sub = _subsample(z.shape[0], max_cells, random_state)
    scan, parts = [], []
    for res in sorted(grid):
        labels = leiden_on_embedding(z, resolution=res, metric=metric, random_state=random_state)
        sil = _silhouette(z[sub], labels[sub], metric)
        scan.append({"resolution": res, "n_clusters": int(labels.max()) + 1, "silhouette": sil})
        parts.append(labels)
    best = max(s["silhouette"] for s in scan)
    i = next(i for i, s in enumerate(scan) if s["silhouette"] >= best - margin)
    return scan[i]["resolution"], parts[i], scan


def average_linkage(
    z: np.ndarray, n_clusters: int, *, metric: str = "cosine", max_cells: int = MAX_SCORE_CELLS, random_state: int = 0
) -> np.ndarray:
    """Average-linkage clustering of a random subsample of at most ``max_cells`` cells; every cell then takes the
    majority label of its 15 nearest subsampled cells. Memory O(max_cells^2 + n), whatever n."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.neighbors import KNeighborsClassifier

    sub = _subsample(z.shape[0], max_cells, random_state)
    lab = AgglomerativeClustering(n_clusters, linkage="average", metric=metric).fit_predict(z[sub])
    if sub.size == z.shape[0]:
        return lab.astype(np.int64)
    knn = KNeighborsClassifier(min(15, sub.size), metric=metric).fit(z[sub], lab)
    out = np.empty(z.shape[0], dtype=np.int64)
    for s in range(0, z.shape[0], 50_000):  # bounded query memory
        out[s : s + 50_000] = knn.predict(z[s : s + 50_000])
    return out


def partition_with_k(
    z: np.ndarray, n_clusters: int, *, metric: str = "cosine", max_cells: int = MAX_SCORE_CELLS, random_state: int = 0
) -> tuple[np.ndarray, dict]:
    """``n_clusters`` clusters of an embedding without labels: k-means (20 restarts) and average linkage (on a
    subsample) with cosine and with Euclidean distances all run, and the partition with the highest silhouette
    (``metric``) is kept.

    k-means favours clusters of similar size and splits large cell types when the given k counts rare ones;
    average linkage keeps rare types apart but can isolate outliers. Which distance separates an embedding's
    types best depends on the model (some latents are organised by direction, others also by norm). The
    silhouette decides per data set.
    """
    from sklearn.cluster import KMeans

    sub = _subsample(z.shape[0], max_cells, random_state)
    candidates = {"kmeans": KMeans(n_clusters, n_init=20, random_state=random_state).fit_predict(z)}
    for dist in ("cosine", "euclidean"):
        candidates[f"average_linkage_{dist}"] = average_linkage(
            z, n_clusters, metric=dist, max_cells=max_cells, random_state=random_state
        )
    sils = {name: _silhouette(z[sub], lab[sub], metric) for name, lab in candidates.items()}
    chosen = max(sils, key=lambda name: sils[name])
    info = {"init_method": chosen, **{f"silhouette_{name}": s for name, s in sils.items()}}
    return candidates[chosen], info


def leiden_to_k(
    z: np.ndarray,
    labels: np.ndarray,
    n_clusters: int,
    *,
    metric: str = "cosine",
    max_cells: int = MAX_SCORE_CELLS,
    random_state: int = 0,
) -> tuple[np.ndarray, str]:
    """Split or merge a partition (the Leiden communities) to exactly ``n_clusters`` clusters, without labels.

    Too few: every community gets an average-linkage dendrogram (``metric``; a random subsample of at most
    ``max_cells`` of its cells, the others take the label of their nearest subsampled cell); the
    ``n_clusters - k`` merges of greatest height over all the dendrograms are undone, so the most separated
    sub-groups are split off first, whichever community holds them. Too many: communities are merged by
    average linkage, the pair with the smallest mean distance between their cells first (exact for the cosine
    distance, centroid distance for the Euclidean one). Memory O(max_cells^2 + n). Returns the labels and what
    was done (``"leiden"``, ``"leiden_split"`` or ``"leiden_merged"``).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.neighbors import KNeighborsClassifier

    _, labels = np.unique(labels, return_inverse=True)
    k0 = int(labels.max()) + 1
    if k0 == n_clusters:
        return labels, "leiden"
    if k0 < n_clusters:
        trees, heights = {}, []
        for c in range(k0):
            members = np.flatnonzero(labels == c)
            if members.size < 2:
                continue
            sub = members[_subsample(members.size, max_cells, random_state + c)]
            tree = linkage(z[sub].astype(np.float64), method="average", metric=metric)
            trees[c] = (members, sub, tree)
            top = tree[::-1, 2][: n_clusters - k0]  # heights of the last merges, greatest first
            heights += [(float(h), c) for h in top]
        heights.sort(key=lambda t: -t[0])
        pieces = dict.fromkeys(range(k0), 1)
        for _, c in heights[: n_clusters - k0]:
            pieces[c] += 1
        out, nxt = labels.copy(), k0
        for c, m in pieces.items():
            if m == 1:
                continue
            members, sub, tree = trees[c]
            part = fcluster(tree, m, criterion="maxclust") - 1
            if sub.size < members.size:
                part = KNeighborsClassifier(1, metric=metric).fit(z[sub], part).predict(z[members])
            for j in range(1, int(part.max()) + 1):
                out[members[part == j]] = nxt
                nxt += 1
        _, out = np.unique(out, return_inverse=True)
        return out.astype(np.int64), "leiden_split"
    zz = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12) if metric == "cosine" else z
    groups = {c: np.flatnonzero(labels == c) for c in range(k0)}
    sums = {c: zz[g].sum(axis=0, dtype=np.float64) for c, g in groups.items()}
    while len(groups) > n_clusters:
        keys = sorted(groups)
        best = None
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                na, nb = groups[a].size, groups[b].size
                if metric == "cosine":
                    d = 1.0 - float(sums[a] @ sums[b]) / (na * nb)
                else:
                    d = float(np.linalg.norm(sums[a] / na - sums[b] / nb))
                if best is None or d < best[0]:
                    best = (d, a, b)
        _, a, b = best
        groups[a] = np.concatenate([groups[a], groups.pop(b)])
        sums[a] = sums[a] + sums.pop(b)
    out = np.empty_like(labels)
    for i, c in enumerate(sorted(groups)):
        out[groups[c]] = i
    return out, "leiden_merged"


def initial_clusters(
    z: np.ndarray,
    n_clusters: int | None,
    *,
    resolution: float | None = None,
    random_state: int = 0,
    min_size: int = 1,
    given_k_start: str = "silhouette",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and centres that start the clustering stage, found without any ground truth.

    ``n_clusters=None``: Leiden on the embedding decides k, at ``resolution`` or, when it is ``None``, at the
    resolution chosen by :func:`choose_resolution` (silhouette scan over :data:`RESOLUTION_GRID`). Communities
    with fewer than ``min_size`` cells are folded into the community of the nearest centre. An integer, with
    ``given_k_start="silhouette"``: :func:`partition_with_k` (k-means or average linkage with cosine or Euclidean
    distances, by silhouette); with ``given_k_start="leiden"``: the Leiden communities found as without a k, split
    or merged to exactly that k by :func:`leiden_to_k`. Also returns a record of how the clusters were found.
    """
    from sklearn.cluster import KMeans

    if given_k_start not in ("silhouette", "leiden"):
        raise ValueError(f'given_k_start must be "silhouette" or "leiden", got {given_k_start!r}.')
    info: dict = {}
    if n_clusters is None or given_k_start == "leiden":
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
        if n_clusters is not None:
            k_leiden = int(np.unique(labels).size)
            labels, how = leiden_to_k(z, labels, n_clusters, random_state=random_state)
            info = {**info, "init_method": how, "n_clusters_leiden": k_leiden}
        elif len(np.unique(labels)) < 2:
            labels = KMeans(2, n_init=20, random_state=random_state).fit_predict(z)
    else:
        labels, info = partition_with_k(z, n_clusters, random_state=random_state)
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
