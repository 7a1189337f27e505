"""Label-free initialisation: the resolution scan and the partition with a given k."""

import numpy as np
import pytest
from helpers import record_calls
from sklearn.metrics import adjusted_rand_score

from scfuse._utils._estimate_k import (
    average_linkage,
    choose_resolution,
    initial_clusters,
    nearest_centre,
    partition_with_k,
    start_by_assignment,
)


def _blobs(sizes, dim=8, spread=0.05, seed=0):
    """Well-separated Gaussian groups of the given sizes (directions far apart in cosine terms)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim)) * 3
    z = np.concatenate([c + spread * rng.normal(size=(s, dim)) for c, s in zip(centers, sizes, strict=True)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    return z.astype(np.float32), y


def test_scan_prefers_coarsest_near_tie():
    z, y = _blobs([150, 150, 150, 150])
    res, labels, scan = choose_resolution(z)
    assert [s["resolution"] for s in scan] == sorted(s["resolution"] for s in scan)
    best = max(s["silhouette"] for s in scan)
    chosen = next(s for s in scan if s["resolution"] == res)
    assert chosen["silhouette"] >= best - 0.03
    # nothing coarser was within the margin
    assert all(s["silhouette"] < best - 0.03 for s in scan if s["resolution"] < res)
    assert adjusted_rand_score(y, labels) > 0.95


def test_given_k_keeps_rare_groups_apart():
    # two large groups and three rare ones: k-means with k=5 tends to split a large group
    z, y = _blobs([600, 500, 12, 10, 8], seed=3)
    labels, info = partition_with_k(z, 5)
    candidates = {"kmeans", "average_linkage_cosine", "average_linkage_euclidean"}
    assert info["init_method"] in candidates
    assert set(info) == {"init_method"} | {f"silhouette_{c}" for c in candidates}
    assert info[f"silhouette_{info['init_method']}"] == max(info[f"silhouette_{c}"] for c in candidates)
    assert len(np.unique(labels)) == 5
    assert adjusted_rand_score(y, labels) > 0.95


def test_average_linkage_on_subsample_labels_all_cells():
    z, y = _blobs([400, 300, 300], seed=1)
    labels = average_linkage(z, 3, max_cells=200, random_state=0)
    assert labels.shape == (1000,)
    assert adjusted_rand_score(y, labels) > 0.95
    assert np.array_equal(labels, average_linkage(z, 3, max_cells=200, random_state=0))


@pytest.mark.parametrize("k", [None, 3])
def test_initial_clusters_centres_and_record(k):
    z, y = _blobs([200, 200, 200], seed=2)
    labels, centers, info = initial_clusters(z, k)
    assert centers.shape == (labels.max() + 1, z.shape[1]) and centers.dtype == np.float32
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))
    starts = {"kmeans", "average_linkage_cosine", "average_linkage_euclidean"}
    assert ("resolution_chosen" in info) if k is None else (info["init_method"] in starts)
    assert adjusted_rand_score(y, labels) > 0.95


def test_leiden_to_k_splits_off_the_most_separated_groups():
    from scfuse._utils._estimate_k import leiden_to_k

    # a coarse partition that lumps the three rare groups into the second large one
    z, y = _blobs([600, 500, 12, 10, 8], seed=3)
    coarse = np.minimum(y, 1)
    labels, how = leiden_to_k(z, coarse, 5)
    assert how == "leiden_split"
    assert np.array_equal(np.unique(labels), np.arange(5))
    assert adjusted_rand_score(y, labels) > 0.95
    # the two large groups are not cut: each keeps one label
    assert all(len(np.unique(labels[y == g])) == 1 for g in (0, 1))


def test_leiden_to_k_merges_the_closest_communities():
    from scfuse._utils._estimate_k import leiden_to_k

    z, y = _blobs([300, 300, 300], seed=4)
    fine = y * 2 + (np.arange(len(y)) % 2)  # each group cut in two halves
    labels, how = leiden_to_k(z, fine, 3)
    assert how == "leiden_merged"
    assert adjusted_rand_score(y, labels) == 1.0
    same, how = leiden_to_k(z, y, 3)
    assert how == "leiden" and adjusted_rand_score(y, same) == 1.0


def test_initial_clusters_leiden_start_gives_exactly_k():
    z, y = _blobs([400, 300, 20, 15], seed=5)
    labels, centers, info = initial_clusters(z, 4, given_k_start="leiden")
    assert info["init_method"] in {"leiden", "leiden_split", "leiden_merged"}
    assert "resolution_chosen" in info and info["n_clusters_leiden"] >= 1
    assert centers.shape == (4, z.shape[1]) and np.array_equal(np.unique(labels), np.arange(4))
    assert adjusted_rand_score(y, labels) > 0.95
    with pytest.raises(ValueError, match="given_k_start"):
        initial_clusters(z, 4, given_k_start="random")


def test_nearest_centre_matches_brute_force():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(500, 6)).astype(np.float32)
    c = rng.normal(size=(7, 6)).astype(np.float32)
    brute = ((z[:, None, :] - c[None]) ** 2).sum(-1).argmin(axis=1)
    assert np.array_equal(nearest_centre(z, c, chunk_size=64), brute)


def test_start_by_assignment_scores_what_the_centres_assign():
    z, y = _blobs([300, 200, 100], seed=2)
    # a start that cuts group 0 in two and joins groups 1 and 2: its centres keep that
    bad = np.where(y == 0, np.arange(y.size) % 2, 2)
    chosen, scores = start_by_assignment(z, {"bad": bad, "good": y})
    assert chosen == "good"
    assert set(scores) == {"assigned_silhouette_bad", "assigned_silhouette_good"}
    assert scores["assigned_silhouette_good"] > 0.9
    # the good partition's centres give back the partition itself
    centres = np.stack([z[y == c].mean(axis=0) for c in range(3)])
    assert np.array_equal(nearest_centre(z, centres), y)


def test_small_communities_fold_into_the_nearest_large_one():
    from scfuse._utils._estimate_k import _fold_small

    z, y = _blobs([200, 150, 100], seed=3)
    labels = y.copy()
    labels[np.flatnonzero(y == 0)[:3]] = 7  # a 3-cell community inside group 0
    labels[np.flatnonzero(y == 2)[:2]] = 9  # a 2-cell one inside group 2
    assert np.array_equal(_fold_small(z, labels, min_size=5), y)
    assert np.array_equal(_fold_small(z, labels, min_size=1), labels)


def test_initial_clusters_centres_start_gives_exactly_k():
    z, y = _blobs([400, 300, 20, 15], seed=5)
    labels, centers, info = initial_clusters(z, 4, given_k_start="centres")
    names = {"kmeans", "average_linkage_cosine", "average_linkage_euclidean", "leiden"}
    assert {k[len("assigned_silhouette_") :] for k in info if k.startswith("assigned_silhouette_")} == names
    assert info["init_method"] in names - {"leiden"} | {"leiden_split", "leiden_merged"}
    assert "resolution_chosen" in info and info["n_clusters_leiden"] >= 1
    assert centers.shape == (4, z.shape[1]) and np.array_equal(np.unique(labels), np.arange(4))
    assert adjusted_rand_score(y, labels) > 0.95


def test_silhouette_from_distances_matches_sklearn():
    from sklearn.metrics import pairwise_distances, silhouette_score

    from scfuse._utils._estimate_k import _silhouette_from_distances

    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 6))
    labels = rng.integers(0, 4, 300)
    labels[0] = 9  # a cluster of one cell scores 0
    d = pairwise_distances(z, metric="cosine")
    assert _silhouette_from_distances(d, labels) == pytest.approx(
        silhouette_score(z, labels, metric="cosine"), abs=1e-6
    )


def test_scan_builds_one_knn(monkeypatch):
    """The k scan searches the embedding's neighbours once, whatever the number of resolutions."""
    import scfuse._utils._graph as graph_utils

    calls = record_calls(monkeypatch, graph_utils, "knn_search")
    z, _ = _blobs([100, 100, 100])
    _, _, scan = choose_resolution(z)
    assert len(scan) > 1 and calls == [300]
    calls.clear()
    initial_clusters(z, 3, given_k_start="centres")  # the scan, then Leiden split or merged to k, on one graph
    assert calls == [300]


def test_approximate_knn_matches_exact(monkeypatch):
    """Above the exact-search limit the kNN is approximate (pynndescent): nearly all neighbours agree."""
    import scfuse._utils._graph as graph_utils

    z, _ = _blobs([400, 400, 400], spread=0.5, seed=1)
    exact_i, exact_d = graph_utils.knn_search(z, 10)
    monkeypatch.setattr(graph_utils, "EXACT_KNN_MAX_CELLS", 100)
    approx_i, approx_d = graph_utils.knn_search(z, 10, random_state=0)
    assert approx_i.shape == exact_i.shape and not (approx_i == np.arange(len(z))[:, None]).any()
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_i, exact_i, strict=True)])
    assert recall > 0.95
    again_i, _ = graph_utils.knn_search(z, 10, random_state=0)
    np.testing.assert_array_equal(again_i, approx_i)  # same seed, same graph


def test_large_graphs_use_igraph_leiden(monkeypatch):
    """From FAST_LEIDEN_MIN_CELLS cells on, the scan's Leiden is igraph's: it finds the same groups, is seeded
    (same seed, same labels) and leaves Python's global random state alone."""
    import random

    import leidenalg

    import scfuse._utils._estimate_k as ek

    z, y = _blobs([200, 200, 200, 200], spread=0.3, seed=2)
    graph = ek.embedding_graph(z)
    small = ek.leiden_on_embedding(graph=graph, resolution=0.5)
    monkeypatch.setattr(ek, "FAST_LEIDEN_MIN_CELLS", 500)

    def refuse(*args, **kwargs):
        raise AssertionError("leidenalg ran on a large graph")

    monkeypatch.setattr(leidenalg, "find_partition", refuse)
    random.seed(123)
    before = random.random()
    random.seed(123)
    fast = ek.leiden_on_embedding(graph=graph, resolution=0.5, random_state=4)
    assert random.random() == before  # the global generator was not drawn from
    np.testing.assert_array_equal(fast, ek.leiden_on_embedding(graph=graph, resolution=0.5, random_state=4))
    assert adjusted_rand_score(y, fast) > 0.99 and adjusted_rand_score(small, fast) > 0.99
    res, labels, _ = ek.choose_resolution(z, graph=graph)  # the whole scan runs on the fast path
    assert adjusted_rand_score(y, labels) > 0.95


def test_stability_rule():
    """The stability rule keeps a partition that Leiden finds again with other seeds; a bad rule name raises."""
    z, y = _blobs([200, 200, 200, 200], spread=0.3, seed=2)
    res, labels, scan = choose_resolution(z, rule="stability")
    assert all("stability" in s for s in scan)
    chosen = next(s for s in scan if s["resolution"] == res)
    assert chosen["stability"] >= max(s["stability"] for s in scan) - 0.03
    assert adjusted_rand_score(y, labels) > 0.9
    with pytest.raises(ValueError, match="rule"):
        choose_resolution(z, rule="labels")


def test_scan_scores_partitions_in_the_view():
    """With a view, the scan's silhouettes are Euclidean silhouettes of the subsampled cells there, not on z."""
    from sklearn.metrics import silhouette_score

    import scfuse._utils._estimate_k as ek

    z, y = _blobs([150, 150, 150, 150], spread=0.3, seed=3)
    sub = ek.score_subsample(z.shape[0], 0)
    view = np.random.default_rng(1).normal(size=(sub.size, 5)).astype(np.float32) + 4.0 * y[sub, None]
    _, _, scan = choose_resolution(z, view=view)
    graph = ek.embedding_graph(z)
    for s in scan:
        labels = ek.leiden_on_embedding(graph=graph, resolution=s["resolution"])
        expected = silhouette_score(view, labels[sub]) if len(np.unique(labels[sub])) > 1 else -1.0
        assert s["silhouette"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="view has 3 rows"):
        choose_resolution(z, view=view[:3])


def test_data_view_centres_batches_and_is_seeded():
    """The data view is a PCA of the z-scored rows; per-batch centring removes a batch shift, not the groups."""
    import scipy.sparse as sp
    from sklearn.metrics import silhouette_score

    import scfuse._utils._estimate_k as ek

    rng = np.random.default_rng(0)
    groups, batches = np.repeat([0, 1], 200), np.tile([0, 1], 200)
    x = rng.normal(size=(400, 30)) + 2.0 * groups[:, None] * (np.arange(30) < 5) + 6.0 * batches[:, None]
    x = sp.csr_matrix(x.astype(np.float32))
    plain = ek.data_view(x, n_comps=10)
    assert plain.shape == (400, 10) and plain.dtype == np.float32
    np.testing.assert_array_equal(plain, ek.data_view(x, n_comps=10))
    big = sp.csr_matrix(rng.normal(size=(ek.MAX_SCORE_CELLS + 500, 30)).astype(np.float32))
    assert ek.data_view(big, n_comps=10).shape == (ek.MAX_SCORE_CELLS, 10)  # only the scored cells
    assert silhouette_score(plain, batches) > silhouette_score(plain, groups)  # the shift dominates
    centred = ek.data_view(x, batches=batches, n_comps=10)
    assert silhouette_score(centred, groups) > 0.15 > 0.01 > silhouette_score(centred, batches)
