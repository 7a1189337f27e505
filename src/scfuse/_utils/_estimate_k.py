from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def embedding_graph(
    z: np.ndarray,
    *,
    n_neighbors: int = 15,
    n_kernel_neighbors: int | None = None,
    metric: str = "cosine",
    random_state: int = 0,
    batches: np.ndarray | None = None,
):
    """The weighted kNN graph of an embedding (an :class:`igraph.Graph`).

    Every Leiden run of the k scan and of the clustering starts works on it: build it once per embedding and pass
    it on.

    Sparse (``n * n_neighbors`` edges): kernel weights as in :func:`scfuse.pp.build_graph` with
    ``method="gauss"``; the kNN is exact up to :data:`scfuse._utils._graph.EXACT_KNN_MAX_CELLS` cells and
    approximate above. ``batches`` (batch codes of the cells): the kNN is batch-balanced, as the input graph
    of :func:`scfuse.pp.build_graph` with a ``batch_key``.
    """
    import igraph as ig

    from scfuse._utils._graph import batch_balanced_knn, gauss_weights, knn_search

    n = z.shape[0]
    if batches is None:
        idx, dist = knn_search(z.astype(np.float32), min(n_neighbors, n - 1), metric=metric, random_state=random_state)
    else:
        idx, dist = batch_balanced_knn(
            z.astype(np.float32), batches, n_neighbors, metric=metric, random_state=random_state
        )
    conn = sp.triu(gauss_weights(idx, dist, sigma_neighbor=n_kernel_neighbors), k=1).tocoo()
    g = ig.Graph(n=n, edges=np.column_stack([conn.row, conn.col]).tolist(), directed=False)
    g.es["weight"] = conn.data.astype(float).tolist()
    return g


def leiden_on_embedding(
    z: np.ndarray | None = None,
    *,
    resolution: float = 1.0,
    graph=None,
    n_neighbors: int = 15,
    n_kernel_neighbors: int | None = None,
    metric: str = "cosine",
    random_state: int = 0,
) -> np.ndarray:
    """Leiden communities of the Gaussian-kernel kNN graph of an embedding (AttentionAE-sc's initialisation).

    ``graph`` (from :func:`embedding_graph`) is used when given; otherwise it is built from ``z``. The quality
    is modularity with a resolution (leidenalg's ``RBConfigurationVertexPartition``), optimised until no move
    improves it. From :data:`FAST_LEIDEN_MIN_CELLS` cells on, igraph's own Leiden (the one
    ``sc.tl.leiden(flavor="igraph")`` runs) optimises the same quality, about ten times faster (a 1,000,000-cell
    scan would otherwise take over an hour); it finds other, equally valid partitions, so smaller data keep
    leidenalg and their results.
    """
    import leidenalg

    if graph is None:
        graph = embedding_graph(
            z, n_neighbors=n_neighbors, n_kernel_neighbors=n_kernel_neighbors, metric=metric, random_state=random_state
        )
    if graph.vcount() >= FAST_LEIDEN_MIN_CELLS:
        return _igraph_leiden(graph, resolution, random_state)
    part = leidenalg.find_partition(
        graph,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        seed=random_state,
        n_iterations=-1,
    )
    return np.asarray(part.membership, dtype=np.int64)


#: from this many cells on, :func:`leiden_on_embedding` runs igraph's Leiden instead of leidenalg's
FAST_LEIDEN_MIN_CELLS = 200_000


def _igraph_leiden(graph, resolution: float, random_state: int) -> np.ndarray:
    """Leiden by igraph (modularity with ``resolution``, until stable), seeded without touching global state."""
    import random

    import igraph as ig

    ig.set_random_number_generator(random.Random(random_state))
    try:
        part = graph.community_leiden(
            objective_function="modularity", weights="weight", resolution=resolution, n_iterations=-1
        )
    finally:
        ig.set_random_number_generator(random)
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


def score_subsample(n: int, random_state: int = 0) -> np.ndarray:
    """The cells (sorted indices) on which the k scan of :func:`choose_resolution` scores its partitions."""
    return _subsample(n, MAX_SCORE_CELLS, random_state)


#: where the k scan scores its partitions (``k_scan_view``): the data's own PCA, or the model's embedding
K_SCAN_VIEWS = ("data", "embedding")
#: principal components of the data view of :func:`data_view`
DATA_VIEW_COMPONENTS = 50


def check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    """A clear error when ``value`` (the argument ``name``) is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def data_view(
    logx, *, batches: np.ndarray | None = None, n_comps: int = DATA_VIEW_COMPONENTS, random_state: int = 0
) -> np.ndarray:
    """The model-independent view in which the k scan judges partitions, of the cells it scores.

    ``logx``: log-normalised counts of the model's genes of all cells (sparse or dense); ``batches``: their batch
    codes, or ``None``. Only the rows of :func:`score_subsample` (at most :data:`MAX_SCORE_CELLS`, in that order)
    are made dense: each gene is centred (within each batch when ``batches`` is given) and scaled to unit
    variance, then projected on its first ``n_comps`` principal components (scanpy's ``scale`` and ``pca`` on the
    subsample).
    """
    from sklearn.decomposition import PCA

    sub = score_subsample(logx.shape[0], random_state)
    scored = logx[sub]
    x = scored.toarray() if hasattr(scored, "toarray") else np.array(scored)
    x = x.astype(np.float64, copy=False)
    if batches is not None:
        batches = np.asarray(batches)[sub]
        for b in np.unique(batches):
            in_batch = batches == b
            x[in_batch] -= x[in_batch].mean(axis=0)
    x -= x.mean(axis=0)
    sd = x.std(axis=0)
    sd[sd == 0] = 1.0
    x /= sd
    n_comps = max(1, min(n_comps, x.shape[0] - 1, x.shape[1]))
    return PCA(n_comps, svd_solver="randomized", random_state=random_state).fit_transform(x).astype(np.float32)


def partition_silhouette(z: np.ndarray, labels: np.ndarray, *, random_state: int = 0) -> float:
    """Cosine silhouette of a partition on a random subsample of at most :data:`MAX_SCORE_CELLS` cells.

    It is -1 for fewer than two clusters in the subsample.
    """
    sub = _subsample(z.shape[0], MAX_SCORE_CELLS, random_state)
    return _silhouette(z[sub], np.asarray(labels)[sub], "cosine")


def _silhouette(z: np.ndarray, labels: np.ndarray, metric: str) -> float:
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(z, labels, metric=metric)) if len(np.unique(labels)) > 1 else -1.0


#: the label-free rules :func:`choose_resolution` can pick a partition of the scan by
K_RULES = ("silhouette", "silhouette_max", "stability")
#: Leiden runs (seeds) per resolution whose agreement is the ``"stability"`` rule's score
STABILITY_RUNS = 5


def seed_stability(
    graph, resolution: float, labels: np.ndarray, *, n_runs: int = STABILITY_RUNS, random_state: int = 0
):
    """Mean pairwise ARI of ``n_runs`` Leiden partitions of one graph at one resolution.

    How reproducible the partition is. ``labels`` is the run with ``random_state``; the others use the following
    seeds.
    """
    runs = [labels] + [
        leiden_on_embedding(resolution=resolution, graph=graph, random_state=random_state + i) for i in range(1, n_runs)
    ]
    return float(np.mean(agreement(runs)))


def agreement(partitions: list[np.ndarray]) -> np.ndarray:
    """Each partition's mean ARI to the other partitions of the same cells (one value per partition).

    The partition with the highest value is the most typical of the set (a medoid under ARI); the mean of all
    values is the mean pairwise ARI.
    """
    from itertools import combinations

    from sklearn.metrics import adjusted_rand_score

    m = len(partitions)
    if m < 2:
        raise ValueError(f"agreement needs at least two partitions, got {m}.")
    ari = np.eye(m)
    for i, j in combinations(range(m), 2):
        ari[i, j] = ari[j, i] = adjusted_rand_score(partitions[i], partitions[j])
    return (ari.sum(axis=1) - 1.0) / (m - 1)


def choose_resolution(
    z: np.ndarray,
    *,
    grid: tuple[float, ...] = RESOLUTION_GRID,
    margin: float = SILHOUETTE_MARGIN,
    metric: str = "cosine",
    max_cells: int = MAX_SCORE_CELLS,
    random_state: int = 0,
    graph=None,
    rule: str = "silhouette",
    batches: np.ndarray | None = None,
    view: np.ndarray | None = None,
) -> tuple[float, np.ndarray, list[dict]]:
    """Leiden at each resolution of ``grid``; keep one partition by a label-free ``rule``.

    ``"silhouette"``: the coarsest partition whose silhouette is within ``margin`` of the highest. Silhouettes
    of neighbouring resolutions are often nearly equal while the number of communities keeps growing; the
    margin prefers the fewer, larger clusters among near-ties. ``"silhouette_max"``: the highest silhouette.
    ``"stability"``: the finest partition whose reproducibility over Leiden seeds (:func:`seed_stability`) is
    within ``margin`` of the most reproducible one: communities that every seed finds again are structure of
    the data, a split that moves from seed to seed is not.

    The silhouette is computed on a fixed random subsample of at most ``max_cells`` cells, so the cost stays
    O(max_cells^2) whatever n. All resolutions run on one kNN graph of ``z`` (``graph``, from
    :func:`embedding_graph`, built here when not given, batch-balanced for ``batches``). ``view``: the
    subsampled cells in another space (rows in the order of :func:`score_subsample`, e.g. :func:`data_view`);
    the silhouettes are then Euclidean silhouettes there instead of ``metric`` silhouettes on ``z``. Returns the
    chosen resolution, its labels and the whole scan.
    """
    check_choice(rule, K_RULES, "rule")
    sub = _subsample(z.shape[0], max_cells, random_state)
    scored, score_metric = z[sub], metric
    if view is not None:
        if view.shape[0] != sub.size:
            raise ValueError(f"view has {view.shape[0]} rows, the scan scores {sub.size} cells.")
        scored, score_metric = view, "euclidean"
    if graph is None:
        graph = embedding_graph(z, metric=metric, random_state=random_state, batches=batches)
    scan, parts = [], []
    for res in sorted(grid):
        labels = leiden_on_embedding(resolution=res, graph=graph, random_state=random_state)
        entry = {
            "resolution": res,
            "n_clusters": int(labels.max()) + 1,
            "silhouette": _silhouette(scored, labels[sub], score_metric),
        }
        if rule == "stability":
            entry["stability"] = (
                seed_stability(graph, res, labels, random_state=random_state) if entry["n_clusters"] > 1 else -1.0
            )
        scan.append(entry)
        parts.append(labels)
    score = "stability" if rule == "stability" else "silhouette"
    best = max(s[score] for s in scan)
    near = [i for i, s in enumerate(scan) if s[score] >= best - (0.0 if rule == "silhouette_max" else margin)]
    i = near[-1] if rule == "stability" else near[0]
    return scan[i]["resolution"], parts[i], scan


def average_linkage(
    z: np.ndarray, n_clusters: int, *, metric: str = "cosine", max_cells: int = MAX_SCORE_CELLS, random_state: int = 0
) -> np.ndarray:
    """Average-linkage clustering of a random subsample of at most ``max_cells`` cells.

    Every cell then takes the majority label of its 15 nearest subsampled cells. Memory O(max_cells^2 + n).
    """
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


def _partitions_with_k(
    z: np.ndarray, n_clusters: int, *, max_cells: int = MAX_SCORE_CELLS, random_state: int = 0
) -> dict[str, np.ndarray]:
    """The candidate partitions of :func:`partition_with_k`.

    k-means (20 restarts) and average linkage with cosine and with Euclidean distances.
    """
    from sklearn.cluster import KMeans

    candidates = {"kmeans": KMeans(n_clusters, n_init=20, random_state=random_state).fit_predict(z)}
    for dist in ("cosine", "euclidean"):
        candidates[f"average_linkage_{dist}"] = average_linkage(
            z, n_clusters, metric=dist, max_cells=max_cells, random_state=random_state
        )
    return candidates


def partition_with_k(
    z: np.ndarray, n_clusters: int, *, metric: str = "cosine", max_cells: int = MAX_SCORE_CELLS, random_state: int = 0
) -> tuple[np.ndarray, dict]:
    """``n_clusters`` clusters of an embedding without labels.

    k-means (20 restarts) and average linkage (on a subsample) with cosine and with Euclidean distances all run, and
    the partition with the highest silhouette (``metric``) is kept.
    k-means favours clusters of similar size and splits large cell types when the given k counts rare ones;
    average linkage keeps rare types apart but can isolate outliers. Which distance separates an embedding's
    types best depends on the model (some latents are organised by direction, others also by norm). The
    silhouette decides per data set.
    """
    sub = _subsample(z.shape[0], max_cells, random_state)
    candidates = _partitions_with_k(z, n_clusters, max_cells=max_cells, random_state=random_state)
    sils = {name: _silhouette(z[sub], lab[sub], metric) for name, lab in candidates.items()}
    chosen = max(sils, key=lambda name: sils[name])
    info = {"init_method": chosen, **{f"silhouette_{name}": s for name, s in sils.items()}}
    return candidates[chosen], info


def _silhouette_from_distances(d: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a precomputed distance matrix.

    As :func:`sklearn.metrics.silhouette_score`; a cell alone in its cluster scores 0.
    """
    ids, lab, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if ids.size < 2:
        return -1.0
    onehot = np.zeros((lab.size, ids.size), dtype=d.dtype)
    onehot[np.arange(lab.size), lab] = 1
    sums = d @ onehot  # summed distance of each cell to each cluster
    rows = np.arange(lab.size)
    own = counts[lab]
    a = sums[rows, lab] / np.maximum(own - 1, 1)
    mean_other = sums / counts
    mean_other[rows, lab] = np.inf
    b = mean_other.min(axis=1)
    sil = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    return float(np.where(own > 1, sil, 0.0).mean())


def _merge_to_k(z, labels, n_clusters: int, dist: np.ndarray, lab_sub: np.ndarray, n_merge_candidates: int):
    """Merge the pair of clusters that gives the highest silhouette, one merge at a time, down to ``n_clusters``.

    The candidates: the ``n_merge_candidates`` pairs with the smallest mean cosine distance.
    """
    k0 = int(labels.max()) + 1
    zz = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    out = labels.copy()
    sums = {c: zz[out == c].sum(axis=0, dtype=np.float64) for c in range(k0)}
    sizes = {c: int((out == c).sum()) for c in range(k0)}
    while len(sums) > n_clusters:
        keys = sorted(sums)
        pairs = sorted(
            (1.0 - float(sums[a] @ sums[b]) / (sizes[a] * sizes[b]), a, b)
            for i, a in enumerate(keys)
            for b in keys[i + 1 :]
        )[:n_merge_candidates]
        best = max(pairs, key=lambda t: _silhouette_from_distances(dist, np.where(lab_sub == t[2], t[1], lab_sub)))
        _, a, b = best
        out[out == b] = a
        lab_sub = np.where(lab_sub == b, a, lab_sub)
        sums[a] = sums[a] + sums.pop(b)
        sizes[a] += sizes.pop(b)
    _, out = np.unique(out, return_inverse=True)
    return out.astype(np.int64)


def _spread_pieces(z, labels, sub, current, trees, pieces, metric: str) -> np.ndarray:
    """Labels of all cells after the subsample's split communities.

    Each cell of a split community takes the piece of its nearest subsampled cell of that community.
    """
    out = labels.copy()
    if sub.size == z.shape[0]:
        out[sub] = current
    else:
        from sklearn.neighbors import KNeighborsClassifier

        for c, m in pieces.items():
            if m == 1:
                continue
            members = np.flatnonzero(labels == c)
            rows = trees[c][0]
            knn = KNeighborsClassifier(1, metric=metric).fit(z[sub[rows]], current[rows])
            out[members] = knn.predict(z[members])
    _, out = np.unique(out, return_inverse=True)
    return out


def leiden_to_k(
    z: np.ndarray,
    labels: np.ndarray,
    n_clusters: int,
    *,
    metric: str = "cosine",
    max_cells: int = MAX_SCORE_CELLS,
    n_merge_candidates: int = 10,
    random_state: int = 0,
) -> tuple[np.ndarray, str]:
    """Split or merge a partition (the Leiden communities) to exactly ``n_clusters`` clusters, without labels.

    One cluster at a time, each step keeping the candidate with the highest silhouette (``metric``, on a fixed
    random subsample of at most ``max_cells`` cells).
    Too few clusters: every community gets an average-linkage dendrogram of its subsampled cells; a
    candidate cuts one community into one piece more. Splitting a large, homogeneous cell type lowers the
    silhouette of many cells, splitting off a small, distinct group raises it, so separated sub-groups go first
    and large types stay whole. Too many: the ``n_merge_candidates`` pairs of clusters with the smallest mean
    cosine distance between their cells are the candidates for a merge. Cells outside the subsample take the
    label of their nearest subsampled cell of the same community. Memory O(max_cells^2 + n). Returns the
    labels and what was done (``"leiden"``, ``"leiden_split"`` or ``"leiden_merged"``).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import pairwise_distances

    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.astype(np.int64)
    k0 = int(labels.max()) + 1
    if k0 == n_clusters:
        return labels, "leiden"
    sub = _subsample(z.shape[0], max_cells, random_state)
    dist = pairwise_distances(z[sub], metric=metric).astype(np.float32)
    lab_sub = labels[sub]
    if k0 > n_clusters:
        return _merge_to_k(z, labels, n_clusters, dist, lab_sub, n_merge_candidates), "leiden_merged"
    trees = {}
    for c in range(k0):
        rows = np.flatnonzero(lab_sub == c)  # positions in the subsample
        if rows.size >= 2:
            condensed = dist[np.ix_(rows, rows)][np.triu_indices(rows.size, k=1)].astype(np.float64)
            trees[c] = (rows, linkage(condensed, method="average"))
    pieces = dict.fromkeys(range(k0), 1)

    def cut(c: int, m: int) -> np.ndarray:
        return fcluster(trees[c][1], m, criterion="maxclust") - 1

    def with_cut(base: np.ndarray, c: int, part: np.ndarray) -> np.ndarray:
        new = base.copy()
        rows = trees[c][0]
        new[rows[part > 0]] = k0 + n_clusters * c + part[part > 0]  # unique ids: a community has < k pieces
        return new

    current = lab_sub.copy()
    while np.unique(current).size < n_clusters:
        best = None
        for c, (rows, _) in trees.items():
            if pieces[c] >= rows.size:
                continue
            part = cut(c, pieces[c] + 1)
            if part.max() + 1 <= pieces[c]:
                continue
            cand = with_cut(current, c, part)
            score = _silhouette_from_distances(dist, cand)
            if best is None or score > best[0]:
                best = (score, c, cand)
        if best is None:
            break
        pieces[best[1]] += 1
        current = best[2]
    out = _spread_pieces(z, labels, sub, current, trees, pieces, metric)
    return out.astype(np.int64), "leiden_split"


#: the starts of the clustering stage for a given k (``given_k_start``)
GIVEN_K_STARTS = ("silhouette", "leiden", "centres")


def _centres(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    _, labels = np.unique(labels, return_inverse=True)
    return np.stack([z[labels == c].mean(axis=0) for c in range(labels.max() + 1)])


def nearest_centre(z: np.ndarray, centers: np.ndarray, *, chunk_size: int = 50_000) -> np.ndarray:
    """Index of each cell's nearest centre (Euclidean), in chunks of cells.

    The argmax of the Student-t assignment, i.e. the labels the clustering stage starts from.
    """
    c2 = (centers.astype(np.float64) ** 2).sum(axis=1)
    out = np.empty(z.shape[0], dtype=np.int64)
    for s in range(0, z.shape[0], chunk_size):
        zz = z[s : s + chunk_size].astype(np.float64)
        out[s : s + chunk_size] = (c2[None, :] - 2.0 * zz @ centers.T.astype(np.float64)).argmin(axis=1)
    return out


def start_by_assignment(
    z: np.ndarray,
    candidates: dict[str, np.ndarray],
    *,
    metric: str = "cosine",
    max_cells: int = MAX_SCORE_CELLS,
    random_state: int = 0,
) -> tuple[str, dict]:
    """Choose among candidate starts by what the clustering stage would begin with.

    Each partition becomes centres (cluster means), every cell goes to its nearest centre (the argmax of the
    Student-t assignment), and the candidate whose reassigned partition has the highest silhouette (``metric``, on a fixed random subsample of at most
    ``max_cells`` cells) is kept. A start whose centres pull cells across its own boundaries scores lower than its
    partition does. Returns the chosen name and the scores.
    """
    sub = _subsample(z.shape[0], max_cells, random_state)
    scores = {}
    for name, lab in candidates.items():
        moved = nearest_centre(z, _centres(z, lab))
        scores[name] = _silhouette(z[sub], moved[sub], metric)
    chosen = max(scores, key=lambda name: scores[name])
    return chosen, {f"assigned_silhouette_{name}": sc for name, sc in scores.items()}


def initial_clusters(
    z: np.ndarray,
    n_clusters: int | None,
    *,
    resolution: float | None = None,
    random_state: int = 0,
    min_size: int = 1,
    given_k_start: str = "silhouette",
    batches: np.ndarray | None = None,
    view: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels and centres that start the clustering stage, found without any ground truth.

    ``n_clusters=None``: Leiden on the embedding decides k, at ``resolution`` or, when it is ``None``, at the
    resolution chosen by :func:`choose_resolution` (silhouette scan over :data:`RESOLUTION_GRID`). Communities
    with fewer than ``min_size`` cells are folded into the community of the nearest centre. An integer, with
    ``given_k_start="silhouette"``: :func:`partition_with_k` (k-means or average linkage with cosine or Euclidean
    distances, by silhouette); with ``given_k_start="leiden"``: the Leiden communities found as without a k, split
    or merged to exactly that k by :func:`leiden_to_k`; with ``given_k_start="centres"``: all four of these
    partitions, the one whose centres assign the cells best by :func:`start_by_assignment`. ``batches`` (batch
    codes of the cells, or ``None``): Leiden runs on a batch-balanced kNN graph of the embedding. ``view`` (see
    :func:`choose_resolution`): where the resolution scan scores its partitions when it chooses k
    (``n_clusters=None``); the starts for a given k do not read it. Also returns a record of how the clusters were
    found.
    """
    from sklearn.cluster import KMeans

    check_choice(given_k_start, GIVEN_K_STARTS, "given_k_start")
    info: dict = {}
    if n_clusters is not None and given_k_start == "centres":
        leiden, leiden_info = _leiden_start(z, resolution, random_state, min_size, batches)
        candidates = _partitions_with_k(z, n_clusters, random_state=random_state)
        candidates["leiden"], how = leiden_to_k(z, leiden, n_clusters, random_state=random_state)
        chosen, scores = start_by_assignment(z, candidates, random_state=random_state)
        labels = candidates[chosen]
        info = {
            **leiden_info,
            "init_method": how if chosen == "leiden" else chosen,
            "n_clusters_leiden": int(np.unique(leiden).size),
            **scores,
        }
    elif n_clusters is None or given_k_start == "leiden":
        labels, info = _leiden_start(
            z, resolution, random_state, min_size, batches, view if n_clusters is None else None
        )
        if n_clusters is not None:
            k_leiden = int(np.unique(labels).size)
            labels, how = leiden_to_k(z, labels, n_clusters, random_state=random_state)
            info = {**info, "init_method": how, "n_clusters_leiden": k_leiden}
        elif len(np.unique(labels)) < 2:
            labels = KMeans(2, n_init=20, random_state=random_state).fit_predict(z)
    else:
        labels, info = partition_with_k(z, n_clusters, random_state=random_state)
    _, labels = np.unique(labels, return_inverse=True)
    return labels, _centres(z, labels).astype(np.float32), info


def _leiden_start(
    z: np.ndarray,
    resolution: float | None,
    random_state: int,
    min_size: int,
    batches: np.ndarray | None = None,
    view: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Leiden communities of the embedding at ``resolution`` (``None``: :func:`choose_resolution`).

    Communities under ``min_size`` cells are folded into the nearest one. Also returns a record of the scan.
    """
    if resolution is None:
        res, labels, scan = choose_resolution(z, random_state=random_state, batches=batches, view=view)
        info = {
            "resolution_chosen": res,
            "resolution_scan": [s["resolution"] for s in scan],
            "n_clusters_scan": [s["n_clusters"] for s in scan],
            "silhouette_scan": [s["silhouette"] for s in scan],
        }
    else:
        graph = embedding_graph(z, random_state=random_state, batches=batches)
        labels = leiden_on_embedding(resolution=resolution, graph=graph, random_state=random_state)
        info = {"resolution_chosen": resolution}
    if min_size > 1:
        labels = _fold_small(z, labels, min_size)
    return labels, info


def _fold_small(z: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    labels = labels.copy()
    while True:
        ids, counts = np.unique(labels, return_counts=True)
        small = ids[counts < min_size]
        big = ids[counts >= min_size]
        if small.size == 0 or big.size < 2:
            return labels
        kept = np.isin(labels, big)
        centers = _centres(z[kept], labels[kept])  # in the order of ``big`` (sorted ids)
        rows = ~kept
        labels[rows] = big[nearest_centre(z[rows], centers)]
