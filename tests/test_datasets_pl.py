from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
from helpers import needs_data

import scfuse

matplotlib.use("agg")


def test_simulate_counts():
    a = scfuse.datasets.simulate(200, 80, 4, random_state=5)
    b = scfuse.datasets.simulate(200, 80, 4, random_state=5)
    assert a.shape == (200, 80)
    # sparse from the start: a million-cell simulation must not hold a dense cells x genes matrix
    assert sp.isspmatrix_csr(a.X) and sp.isspmatrix_csr(a.layers["counts"])
    x = a.X.toarray()
    assert np.all(x >= 0) and np.all(x == np.round(x)) and np.all(x.sum(1) > 0)
    np.testing.assert_array_equal(x, b.X.toarray())
    assert a.obs["group"].nunique() == 4
    with pytest.raises(ValueError):
        scfuse.datasets.simulate(3, 10, 5)


def test_simulate_nested_and_unequal_libraries():
    import scipy.sparse as sp

    a = scfuse.datasets.simulate(900, 150, 3, n_subgroups=3, library_sd=1.0, random_state=2)
    assert sp.issparse(a.X) and a.obs["group"].nunique() == 9 and a.obs["parent_group"].nunique() == 3
    # each subgroup lies inside its parent group
    assert (a.obs["group"].astype(str).str.split(".").str[0] == a.obs["parent_group"].astype(str)).all()
    lib = np.asarray(a.X.sum(axis=1)).ravel()
    narrow = np.asarray(scfuse.datasets.simulate(900, 150, 3, random_state=2).X.sum(axis=1)).ravel()
    spread = lambda x: np.percentile(x, 95) / np.percentile(x, 5)
    assert spread(lib) > 3 * spread(narrow)
    with pytest.raises(ValueError, match="library_sd"):
        scfuse.datasets.simulate(100, 50, 2, library_sd=-1)


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(scfuse.settings, "_data_dir", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="SCFUSE_DATA_DIR"):
        scfuse.datasets.load("pbmc_10x_4k_top2000")
    monkeypatch.setattr(scfuse.settings, "_data_dir", tmp_path)
    (tmp_path / "toy.h5ad").write_bytes(b"")
    with pytest.raises(KeyError, match="Available in .*toy"):
        scfuse.datasets.load("nope")
    with pytest.raises(FileNotFoundError):
        scfuse.datasets.read(tmp_path / "absent.h5ad")


@needs_data
def test_load_real():
    names = scfuse.datasets.available()
    assert "baron_mouse1" in names
    a = scfuse.datasets.load("baron_mouse1")
    assert a.n_obs == 822 and "counts" in a.layers and "cell_type" in a.obs


def test_plots(clustered_base):
    import matplotlib.pyplot as plt

    adata = clustered_base[0].copy()
    ax = scfuse.pl.embedding(adata, "attentionae", color="group", show=False)
    assert ax is not None
    assert adata.obsm["X_attentionae_umap"].shape == (adata.n_obs, 2)  # cached
    assert "neighbors" not in adata.uns and "X_umap" not in adata.obsm
    first = adata.obsm["X_attentionae_umap"].copy()
    scfuse.pl.embedding(adata, "attentionae", show=False)
    np.testing.assert_array_equal(adata.obsm["X_attentionae_umap"], first)  # same embedding: cached UMAP reused
    # a rerun of tl.cluster under the same key writes a new embedding: the UMAP is not stale
    adata.obsm["X_attentionae"] = adata.obsm["X_attentionae"][::-1].copy()
    scfuse.pl.embedding(adata, "attentionae", show=False)
    assert not np.array_equal(adata.obsm["X_attentionae_umap"], first)
    fig = scfuse.pl.history(adata, "attentionae", show=False, return_fig=True)
    # one panel per phase's losses (the total and each term as curves) and one for the label changes
    assert [ax.get_title() for ax in fig.axes] == [
        "pretrain loss",
        "cluster loss",
        "cluster delta label",
        "cluster n clusters",
    ]
    assert len(fig.axes[1].lines) == 4  # loss, kl, zinb, graph
    fig2 = scfuse.pl.cluster_proba(adata, "attentionae", show=False, return_fig=True)
    assert fig2 is not None
    with pytest.raises(KeyError):
        scfuse.pl.history(adata, "missing", show=False)
    with pytest.raises(KeyError):
        scfuse.pl.embedding(adata, "missing", show=False)
    plt.close("all")


def test_more_than_4096_cells_with_scanpy_neighbors():
    """scanpy 1.11 + pynndescent 0.7 crashed above ~4,000 cells; the pinned stack must not."""
    a = scfuse.datasets.simulate(4200, 40, 3, random_state=0)
    scfuse.pp.build_graph(a, method="knn", n_neighbors=10)
    sc.pp.pca(a, n_comps=10)
    sc.pp.neighbors(a, n_neighbors=10)
    assert a.obsp["connectivities"].shape == (4200, 4200)
    assert a.obsp["scfuse_connectivities"].nnz <= 2 * 10 * 4200


def test_demo_cli(tmp_path, capsys):
    from scfuse.__main__ import main

    png = tmp_path / "demo.png"
    assert main(["demo", "--n-cells", "300", "--n-genes", "120", "--n-groups", "3", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "ARI=" in out and "NMI=" in out and png.is_file() and png.stat().st_size > 1000
