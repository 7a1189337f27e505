from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
from helpers import assert_unchanged, snapshot

import scfuse


@pytest.mark.parametrize("method", ["gauss", "knn", "umap"])
def test_build_graph_layout(sim, method):
    x_before = sim.X.copy()
    scfuse.pp.build_graph(sim, n_neighbors=8, method=method, key_added="g")
    conn, dist = sim.obsp["g_connectivities"], sim.obsp["g_distances"]
    assert sp.issparse(conn) and sp.issparse(dist)
    assert conn.shape == dist.shape == (sim.n_obs, sim.n_obs)
    assert (conn != conn.T).nnz == 0  # symmetric
    assert conn.diagonal().sum() == 0
    assert np.all(np.diff(dist.indptr) == 8)  # each cell's 8 nearest others
    assert conn.nnz <= 2 * 8 * sim.n_obs  # sparse, O(n k)
    uns = sim.uns["g"]
    assert uns["connectivities_key"] == "g_connectivities" and uns["distances_key"] == "g_distances"
    assert uns["params"]["n_neighbors"] == 8 and uns["params"]["method"] == method
    assert None not in uns["params"].values()
    if method == "knn":
        assert set(np.unique(conn.data)) == {1.0}
    else:
        assert conn.data.min() > 0 and conn.data.max() <= 1.0 + 1e-6
    assert (sim.X != x_before).nnz == 0  # X untouched
    assert "X_g_pca" in sim.obsm


def test_graph_readable_by_scanpy(sim):
    scfuse.pp.build_graph(sim, key_added="scfuse")
    sc.tl.umap(sim, neighbors_key="scfuse", random_state=0)
    assert sim.obsm["X_umap"].shape == (sim.n_obs, 2)
    sc.tl.leiden(sim, neighbors_key="scfuse", flavor="igraph", n_iterations=2, directed=False, key_added="lei")
    assert sim.obs["lei"].nunique() >= 2
    assert "neighbors" not in sim.uns  # scanpy's default graph is not overwritten


def test_build_graph_copy_and_use_rep(sim):
    snap = snapshot(sim)
    out = scfuse.pp.build_graph(sim, copy=True, key_added="c")
    assert_unchanged(sim, snap)
    assert "c" in out.uns
    sim.obsm["rep"] = np.random.default_rng(0).normal(size=(sim.n_obs, 5))
    scfuse.pp.build_graph(sim, use_rep="rep", key_added="r", method="knn", metric="euclidean")
    assert sim.uns["r"]["params"]["use_rep"] == "rep"
    assert "X_r_pca" not in sim.obsm


def test_build_graph_errors(sim):
    snap = snapshot(sim)
    with pytest.raises(ValueError, match="method"):
        scfuse.pp.build_graph(sim, method="dense")
    with pytest.raises(KeyError, match="use_rep"):
        scfuse.pp.build_graph(sim, use_rep="X_missing")
    with pytest.raises(ValueError, match="n_neighbors"):
        scfuse.pp.build_graph(sim[:10].copy(), n_neighbors=15)
    with pytest.raises(KeyError, match="Layer"):
        scfuse.pp.build_graph(sim, layer="nope")
    bad = sim.copy()
    bad.obsm["rep"] = np.full((sim.n_obs, 3), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        scfuse.pp.build_graph(bad, use_rep="rep")
    assert_unchanged(sim, snap)


def test_build_graph_normalised_input_is_not_changed(sim):
    sc.pp.normalize_total(sim)
    sc.pp.log1p(sim)
    before = sim.X.copy()
    scfuse.pp.build_graph(sim, layer=None)  # uses layers["counts"]
    assert (sim.X != before).nnz == 0


def test_chunked_pca_matches_dense(monkeypatch):
    """Above DENSE_PCA_MAX_CELLS the PCA is accumulated over chunks of cells; it spans the same subspace."""
    import scipy.sparse as sp

    from scfuse._utils import _matrix

    rng = np.random.default_rng(0)
    mat = sp.random(900, 60, density=0.2, format="csr", dtype=np.float32, random_state=rng) * 5
    dense = _matrix.zscore_pca(mat, 8)
    monkeypatch.setattr(_matrix, "DENSE_PCA_MAX_CELLS", 100)
    monkeypatch.setattr(_matrix, "PCA_CHUNK_CELLS", 250)
    chunked = _matrix.zscore_pca(mat, 8)
    assert chunked.shape == dense.shape == (900, 8) and chunked.dtype == np.float32
    # same components up to sign
    corr = np.abs([np.corrcoef(dense[:, j], chunked[:, j])[0, 1] for j in range(8)])
    assert corr.min() > 0.999, corr


def test_graph_weights_follow_the_method(monkeypatch):
    """A graph built with other weights than the method's is reweighted from its kNN distances, with a warning;
    adata is not changed and the record names the weights used."""

    from scfuse.models import ScDEFER, _graph

    said = []
    monkeypatch.setattr(_graph.logg, "warning", lambda msg, *a, **k: said.append(msg))
    gauss = scfuse.datasets.simulate(400, 80, 3, random_state=3)
    knn = gauss.copy()
    scfuse.pp.build_graph(gauss, n_neighbors=10, method="gauss")
    scfuse.pp.build_graph(knn, n_neighbors=10, method="knn")
    snap = snapshot(gauss)
    model = ScDEFER(gauss)
    assert len(said) == 1 and "recomputed" in said[0]
    assert_unchanged(gauss, snap)
    expected = ScDEFER(knn).data.weights
    assert (model.data.weights != expected).nnz == 0
    assert model.graph_info["graph_weights"] == "knn (recomputed from 'gauss')"
    assert ScDEFER(knn).graph_info["graph_weights"] == "knn"


def test_knn_table_round_trip():
    from scfuse._utils._graph import knn_table

    adata = scfuse.datasets.simulate(200, 50, 3, random_state=1)
    scfuse.pp.build_graph(adata, n_neighbors=7)
    idx, dist = knn_table(adata.obsp["scfuse_distances"])
    assert idx.shape == dist.shape == (200, 7)
    assert np.all(np.diff(dist, axis=1) >= 0) and not np.any(idx == np.arange(200)[:, None])


def _two_batches(adata):
    adata.obs["donor"] = np.where(np.arange(adata.n_obs) % 3 == 0, "d1", "d2")
    return adata


def test_batch_balanced_graph(sim):
    """With batch_key every cell has the same number of neighbours in every batch, itself never among them."""
    from scfuse._utils._graph import knn_table

    _two_batches(sim)
    before = snapshot(sim)
    scfuse.pp.build_graph(sim, n_neighbors=10, method="knn", batch_key="donor", key_added="bal")
    assert sim.uns["bal"]["params"]["batch_key"] == "donor"
    assert sim.uns["bal"]["params"]["neighbors_per_batch"] == 5
    idx, _ = knn_table(sim.obsp["bal_distances"])
    assert idx.shape == (sim.n_obs, 10)
    assert not np.any(idx == np.arange(sim.n_obs)[:, None])
    in_d1 = (sim.obs["donor"].to_numpy() == "d1")[idx].sum(axis=1)
    assert np.all(in_d1 == 5)  # 5 of the 10 neighbours from each donor, whatever the cell's own donor
    # without batch_key, a third of the cells (d1) does not get half of every cell's neighbours
    scfuse.pp.build_graph(sim, n_neighbors=10, method="knn", key_added="plain")
    idx, _ = knn_table(sim.obsp["plain_distances"])
    assert not np.all((sim.obs["donor"].to_numpy() == "d1")[idx].sum(axis=1) == 5)
    assert before["X"].shape == sim.X.shape and "donor" in sim.obs


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda a: None, "not a column"),
        (lambda a: a.obs.__setitem__("donor", "d1"), "single batch"),
        (lambda a: a.obs.__setitem__("donor", ["d1"] * (a.n_obs - 3) + ["d2"] * 3), "too few"),
        (lambda a: a.obs.__setitem__("donor", [None] + ["d1"] * (a.n_obs - 1)), "missing values"),
    ],
)
def test_batch_key_errors_leave_adata_unchanged(sim, setup, message):
    setup(sim)
    before = snapshot(sim)
    with pytest.raises((KeyError, ValueError), match=message):
        scfuse.pp.build_graph(sim, n_neighbors=10, batch_key="donor", key_added="bal")
    assert_unchanged(sim, before)
