from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
import torch
from helpers import (
    FAST,
    assert_cluster_outputs,
    assert_same_seed_same_result,
    assert_unchanged,
    cluster_simulated_groups,
    record_calls,
    snapshot,
)

import scfuse
from scfuse._utils._validate import TrainingError


def test_fields_written(clustered_base):
    adata, model = clustered_base
    key = "attentionae"
    k = assert_cluster_outputs(adata, key, 16)
    labels = adata.obs[key]
    assert labels.value_counts().min() > 0  # no empty category
    sizes = labels.value_counts().reindex(labels.cat.categories).to_numpy()
    assert np.all(np.diff(sizes) <= 0)  # '0' is the largest cluster
    rec = adata.uns[key]
    assert set(rec) >= {"params", "history", "n_clusters", "converged"}
    p = rec["params"]
    assert p["method"] == key and p["random_state"] == 0 and p["device"] == "cpu"
    assert p["n_clusters_estimated"] is True and p["n_clusters"] == k
    assert p["resolution"] == "scan" and p["resolution_chosen"] in p["resolution_scan"]  # attentionae's default
    assert p["pretrain_epochs"] == 3 and p["max_epochs"] == 2
    assert len(rec["history"]["pretrain_loss"]) == 3
    assert np.all(np.isfinite(rec["history"]["pretrain_loss"]))
    assert 1 <= len(rec["history"]["cluster_delta_label"]) <= 2


def test_h5ad_roundtrip(clustered_base, tmp_path):
    import anndata as ad

    adata, _ = clustered_base
    f = tmp_path / "out.h5ad"
    adata.write_h5ad(f)
    back = ad.read_h5ad(f)
    assert back.uns["attentionae"]["params"]["method"] == "attentionae"
    np.testing.assert_array_equal(back.obs["attentionae"], adata.obs["attentionae"])


def test_same_seed_same_result(sim):
    a, _, _ = assert_same_seed_same_result(sim, "attentionae", **FAST)
    assert a.uns["attentionae"]["params"]["random_state"] == 3


def test_n_threads_setting_pins_and_restores_torch_threads(sim, monkeypatch):
    with pytest.raises(ValueError, match="n_threads"):
        scfuse.settings.n_threads = 0
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the count the pinned run must not use
    seen = []
    from scfuse.models import _base

    orig = _base.initial_clusters
    monkeypatch.setattr(
        _base, "initial_clusters", lambda *a, **k: seen.append(torch.get_num_threads()) or orig(*a, **k)
    )
    monkeypatch.setattr(scfuse.settings, "_n_threads", 1)
    try:
        scfuse.tl.cluster(sim, **FAST)
        assert torch.get_num_threads() == 2  # the caller's count is back
    finally:
        torch.set_num_threads(before)
    assert seen == [1]  # training ran on the pinned count
    assert sim.uns["attentionae"]["params"]["torch_threads"] == 1  # and recorded it


def test_copy_and_key_added(sim):
    snap = snapshot(sim)
    out = scfuse.tl.cluster(sim, copy=True, key_added="fused", **FAST)
    assert_unchanged(sim, snap)
    assert "fused" in out.obs and "X_fused" in out.obsm and "fused_proba" in out.obsm and "fused" in out.uns
    assert "attentionae" not in out.obs


def test_n_fits_keeps_the_most_typical_fit(sim, monkeypatch):
    from scfuse._utils import _estimate_k as ek

    seen = []
    original = ek.agreement

    def spy(partitions):
        seen.append([np.asarray(p).copy() for p in partitions])
        return original(partitions)

    monkeypatch.setattr(ek, "agreement", spy)
    a = sim.copy()
    scfuse.tl.cluster(a, random_state=5, n_fits=3, **FAST)
    p = a.uns["attentionae"]["params"]
    assert p["n_fits"] == 3 and list(p["fit_seeds"]) == [5, 6, 7]
    (labels,) = seen  # one agreement over the three fits' labels
    agree = original(labels)
    np.testing.assert_allclose(p["fit_agreement"], np.round(agree, 4))
    assert p["fit_chosen"] == int(np.argmax(agree)) and p["random_state"] == 5 + p["fit_chosen"]
    # each value is the fit's mean ARI to the two others
    from sklearn.metrics import adjusted_rand_score

    assert agree[0] == pytest.approx(
        (adjusted_rand_score(labels[0], labels[1]) + adjusted_rand_score(labels[0], labels[2])) / 2
    )
    # the kept fit is the single fit with its seed: same labels and embedding
    b = sim.copy()
    scfuse.tl.cluster(b, random_state=p["random_state"], **FAST)
    np.testing.assert_array_equal(a.obs["attentionae"], b.obs["attentionae"])
    np.testing.assert_array_equal(a.obsm["X_attentionae"], b.obsm["X_attentionae"])
    assert adjusted_rand_score(labels[p["fit_chosen"]], b.obs["attentionae"]) == 1.0
    assert "n_fits" not in b.uns["attentionae"]["params"]


def test_agreement_of_partitions():
    from scfuse._utils._estimate_k import agreement

    a, b = np.array([0, 0, 1, 1, 2, 2]), np.array([1, 1, 0, 0, 2, 2])  # b is a relabelled a
    c = np.array([0, 1, 0, 1, 0, 1])
    out = agreement([a, b, c])
    assert out[0] == out[1] > out[2]  # the outlier c has the lowest agreement
    np.testing.assert_allclose(out[0], (1.0 + out[2]) / 2)
    with pytest.raises(ValueError, match="two partitions"):
        agreement([a])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_error_bad_n_fits(sim, bad):
    snap = snapshot(sim)
    with pytest.raises(ValueError, match="n_fits"):
        scfuse.tl.cluster(sim, n_fits=bad, **FAST)
    assert_unchanged(sim, snap)


def test_given_n_clusters(sim):
    scfuse.tl.cluster(sim, n_clusters=3, **FAST)
    p = sim.uns["attentionae"]["params"]
    assert p["n_clusters_init"] == 3 and p["n_clusters_estimated"] is False
    assert sim.obs["attentionae"].nunique() <= 3
    # attentionae's default start for a given k: the Leiden communities, split or merged to k
    assert p["model_kwargs"]["given_k_start"] == "leiden"
    assert p["init_method"] in {"leiden", "leiden_split", "leiden_merged"} and p["n_clusters_leiden"] >= 1


def test_warns_when_fewer_clusters_than_given(sim, monkeypatch):
    from scfuse.models._base import FusionModel
    from scfuse.tl import _cluster

    said = []
    monkeypatch.setattr(_cluster.logg, "warning", lambda msg, *a, **k: said.append(msg))
    scfuse.tl.cluster(sim, n_clusters=3, **FAST)
    assert len(said) == int(sim.obs["attentionae"].nunique() < 3)  # a warning only when a cluster came back empty
    said.clear()
    # the clustering stage empties a cluster: only two columns of the assignments keep cells
    monkeypatch.setattr(FusionModel, "_final_clusters", lambda self, proba: np.array([0, 1]))
    scfuse.tl.cluster(sim, n_clusters=3, key_added="two", **FAST)
    assert sim.obs["two"].nunique() == 2 and sim.uns["two"]["params"]["n_clusters_init"] == 3
    assert len(said) == 1 and "n_clusters=3 was given but 2 clusters hold cells" in said[0]
    said.clear()
    scfuse.tl.cluster(sim, key_added="est", **FAST)  # k estimated: nothing was asked for, no warning
    assert said == []


@pytest.mark.parametrize("n_clusters", [None, 3])
def test_collapsed_clustering_stage_is_undone(sim, monkeypatch, n_clusters):
    """A clustering stage that leaves fewer than half of its clusters holding cells is undone, k given or not."""
    from scfuse.models import _two_stage

    reference = sim.copy()  # the same fit with no clustering epoch: the state the stage starts from
    scfuse.tl.cluster(reference, n_clusters=n_clusters, pretrain_epochs=3, max_epochs=0, progress_bar=False)
    k0 = reference.uns["attentionae"]["params"]["n_clusters_init"]
    assert k0 >= 2 and reference.uns["attentionae"]["params"]["cluster_stage_undone"] is False

    said = []
    monkeypatch.setattr(_two_stage.logg, "warning", lambda msg, *a, **k: said.append(msg))
    epoch = _two_stage.TwoStageModel._epoch

    def collapsing_epoch(self, phase, *args, **kwargs):  # every clustering epoch ends with all centres on one
        out = epoch(self, phase, *args, **kwargs)
        if phase == "cluster":
            with torch.no_grad():
                self.module.centers.copy_(self.module.centers[:1].expand_as(self.module.centers))
        return out

    monkeypatch.setattr(_two_stage.TwoStageModel, "_epoch", collapsing_epoch)
    scfuse.tl.cluster(sim, n_clusters=n_clusters, pretrain_epochs=3, max_epochs=2, progress_bar=False)
    p = sim.uns["attentionae"]["params"]
    assert p["cluster_stage_undone"] is True and p["n_clusters_after_stage"] == 1
    assert sim.uns["attentionae"]["history"]["cluster_n_clusters"][-1] == 1  # seen in the stage's last epoch
    assert len(said) == 1 and f"left 1 of its {k0} clusters holding cells; it was undone" in said[0]
    # labels, soft assignments and embedding are those of the state the stage started from
    np.testing.assert_array_equal(sim.obs["attentionae"], reference.obs["attentionae"])
    np.testing.assert_array_equal(sim.obsm["X_attentionae"], reference.obsm["X_attentionae"])
    np.testing.assert_array_equal(sim.obsm["attentionae_proba"], reference.obsm["attentionae_proba"])
    assert sim.uns["attentionae"]["n_clusters"] >= 2


def test_counts_from_x_when_no_layer(sim):
    del sim.layers["counts"]
    scfuse.tl.cluster(sim, **FAST)
    assert sim.uns["attentionae"]["params"]["layer"] == "X"


def test_rank_genes_groups_on_result(clustered_base):
    adata = clustered_base[0].copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.tl.rank_genes_groups(adata, groupby="attentionae", method="wilcoxon")
    names = adata.uns["rank_genes_groups"]["names"]
    assert len(names.dtype.names) == adata.obs["attentionae"].nunique()


def test_umap_on_embedding(clustered_base):
    adata = clustered_base[0].copy()
    sc.pp.neighbors(adata, use_rep="X_attentionae", key_added="fz")
    sc.tl.umap(adata, neighbors_key="fz")
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2)


def test_learning_on_simulated_groups():
    """A working model separates well-separated simulated groups (fails for a broken model)."""
    _, ari = cluster_simulated_groups("attentionae", graph="gauss", pretrain_epochs=30, max_epochs=10)
    assert ari > 0.8


def test_show_methods():
    table = scfuse.tl.show_methods()
    assert "attentionae" in table.index
    assert table.loc["attentionae", "zinb_counts"]


# ---------------------------------------------------------------- bad input: clear error, adata unchanged
def _expect_error(adata, exc, match, **kwargs):
    snap = snapshot(adata)
    with pytest.raises(exc, match=match):
        scfuse.tl.cluster(adata, **{**FAST, **kwargs})
    assert_unchanged(adata, snap)


def test_error_unknown_method(sim):
    _expect_error(sim, ValueError, "Known methods: .*attentionae", method="louvain")


def test_error_unknown_kwarg(sim):
    _expect_error(sim, TypeError, "Valid model arguments", n_latnet=5)


def test_error_bad_given_k_start(sim):
    _expect_error(sim, ValueError, "given_k_start", n_clusters=3, given_k_start="random")


def test_error_bad_k_scan_view(sim):
    _expect_error(sim, ValueError, "k_scan_view", k_scan_view="labels")


def test_k_scan_view(sim, monkeypatch):
    """The k scan scores its partitions on the embedding by default; with "data" on the data view, computed once
    per fit, and not at all for a given k."""
    import scfuse._utils._estimate_k as ek
    from scfuse.models import _base

    views = record_calls(monkeypatch, _base, "data_view")
    a = scfuse.tl.cluster(sim, copy=True, **FAST)
    assert views == [] and a.uns["attentionae"]["params"]["model_kwargs"]["k_scan_view"] == "embedding"
    b = scfuse.tl.cluster(sim, copy=True, k_scan_view="data", **FAST)
    assert b.uns["attentionae"]["params"]["model_kwargs"]["k_scan_view"] == "data"
    assert views == [sim.n_obs]  # one view per fit
    scan = b.uns["attentionae"]["params"]["silhouette_scan"]
    assert len(scan) == len(ek.RESOLUTION_GRID)
    assert not np.allclose(scan, a.uns["attentionae"]["params"]["silhouette_scan"])
    views.clear()
    scfuse.tl.cluster(sim, copy=True, k_scan_view="data", n_clusters=3, **FAST)
    assert views == []


def test_error_normalised_counts(sim):
    sim.X = sim.X.copy()
    sc.pp.normalize_total(sim)
    del sim.layers["counts"]
    _expect_error(sim, KeyError, "layers\\['counts'\\]")  # says how to keep counts
    _expect_error(sim, ValueError, "non-integer", layer=None)


def test_error_negative_values(sim):
    bad = sim.layers["counts"].toarray()
    bad[0, 0] = -1
    sim.layers["counts"] = sp.csr_matrix(bad)
    _expect_error(sim, ValueError, "negative")


def test_error_nan_inf(sim):
    for v in (np.nan, np.inf):
        a = sim.copy()
        bad = a.layers["counts"].toarray()
        bad[1, 1] = v
        a.layers["counts"] = sp.csr_matrix(bad)
        _expect_error(a, ValueError, "NaN or infinite")


def test_error_empty_cells(sim):
    bad = sim.layers["counts"].tolil()
    bad[5, :] = 0
    sim.layers["counts"] = bad.tocsr()
    _expect_error(sim, ValueError, "no counts")


def test_empty_genes_are_dropped(sim):
    bad = sim.layers["counts"].tolil()
    bad[:, 7] = 0
    sim.layers["counts"] = bad.tocsr()
    _, model = scfuse.tl.cluster(sim, return_model=True, **FAST)
    assert 7 not in set(model.preprocessor.genes)


def test_error_all_genes_empty(sim):
    sim.layers["counts"] = sp.csr_matrix(sim.shape, dtype=np.float32)
    _expect_error(sim, ValueError, "no counts")


def test_error_unknown_layer_and_graph(sim):
    _expect_error(sim, KeyError, "Layer 'raw' not found", layer="raw")
    _expect_error(sim, KeyError, "build_graph", neighbors_key="missing")
    _expect_error(sim, KeyError, "obsp", obsp="missing", neighbors_key=None)


def test_error_graph_size_mismatch(sim):
    from scfuse.models._graph import get_graph

    class Stale:  # an object whose graph does not match its cells (anndata itself refuses such an obsp)
        n_obs = sim.n_obs
        uns = {"k": {"connectivities_key": "c"}}
        obsp = {"c": sp.random(10, 10, density=0.3, format="csr", random_state=0)}

    with pytest.raises(ValueError, match="shape"):
        get_graph(Stale(), "k")


def test_error_too_few_cells_and_bad_k(sim):
    _expect_error(sim, ValueError, "between 2 and", n_clusters=1)
    _expect_error(sim, ValueError, "between 2 and", n_clusters=sim.n_obs + 1)
    _expect_error(sim, TypeError, "n_clusters", n_clusters=2.5)
    _expect_error(sim, ValueError, "resolution must be", resolution="fine")
    _expect_error(sim, ValueError, "resolution must be", resolution=0)
    tiny = sim[:8].copy()
    _expect_error(tiny, ValueError, "at least 10")


def test_error_nan_loss_names_phase_and_epoch(sim, monkeypatch):
    from scfuse.models import AttentionAE

    def nan_loss(self, batch, targets, phase):
        return {"loss": torch.tensor(float("nan"), requires_grad=True)}

    monkeypatch.setattr(AttentionAE, "_loss", nan_loss)
    _expect_error(sim, TrainingError, "pretraining loss became nan at epoch 1")


def test_interrupt_leaves_adata_unchanged(sim, monkeypatch):
    from scfuse.models import AttentionAE

    calls = {"n": 0}
    original = AttentionAE._loss

    def interrupted(self, batch, targets, phase):
        calls["n"] += phase == "cluster"
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(self, batch, targets, phase)

    monkeypatch.setattr(AttentionAE, "_loss", interrupted)
    _expect_error(sim, KeyboardInterrupt, None)


# ---------------------------------------------------------------- all-or-nothing writes
class _FailingUns(dict):
    """An ``adata.uns`` whose writes fail: the last field written by ``write_results``."""

    def __setitem__(self, key, value):
        raise RuntimeError("uns write failed")


@pytest.mark.parametrize("key", ["attentionae", "fresh"])
def test_failed_write_leaves_adata_as_before(clustered_base, key):
    """A failure at the last field (uns) rolls back the fields already written: replaced values come back
    ("attentionae", written by an earlier run) and new keys are removed ("fresh")."""
    from scfuse.tl._cluster import write_results

    adata, model = clustered_base[0].copy(), clustered_base[1]
    model._results = dict(model.outputs(None), latent=model.outputs(None)["latent"] + 1.0)  # new values
    adata.uns = _FailingUns(adata.uns)
    adata.layers[f"{key}_reconstruction"] = np.zeros(adata.shape, dtype=np.float32)
    snap = snapshot(adata)
    try:
        model.extra_layers = {"reconstruction": np.ones(adata.shape, dtype=np.float32)}
        with pytest.raises(RuntimeError, match="uns write failed"):
            write_results(adata, model, key, {"method": "attentionae"})
    finally:
        del model.extra_layers
        model._results = None
    assert_unchanged(adata, snap)


def test_backed_adata_refused_before_training(sim, tmp_path, monkeypatch):
    import anndata as ad

    from scfuse.models import FusionModel

    sim.write_h5ad(tmp_path / "sim.h5ad")
    backed = ad.read_h5ad(tmp_path / "sim.h5ad", backed="r")
    monkeypatch.setattr(FusionModel, "train", lambda *a, **k: pytest.fail("training started"))
    try:
        with pytest.raises(ValueError, match=r"backed.*adata\.to_memory\(\)"):
            scfuse.tl.cluster(backed, **FAST)
    finally:
        backed.file.close()


def test_mask_var_highly_variable_is_used(sim):
    """The user's var["highly_variable"] genes are the model's genes when present; the genes used are written to
    var; an explicit None lets the method pick; a missing named column is an error."""
    adata = sim.copy()
    hv = np.zeros(adata.n_vars, dtype=bool)
    hv[::3] = True
    adata.var["highly_variable"] = hv
    scfuse.tl.cluster(adata, n_clusters=3, **FAST)
    used = adata.var["attentionae_genes"].to_numpy()
    expressed = np.asarray((adata.layers["counts"] > 0).sum(axis=0)).ravel() > 0
    np.testing.assert_array_equal(used, hv & expressed)
    assert adata.uns["attentionae"]["params"]["mask_var"] == "highly_variable"

    scfuse.tl.cluster(adata, n_clusters=3, mask_var=None, key_added="all", n_top_genes=50, **FAST)
    assert adata.var["all_genes"].sum() == 50 and "mask_var" not in adata.uns["all"]["params"]

    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm)
    sc.pp.log1p(lognorm)
    sc.pp.highly_variable_genes(lognorm, n_top_genes=30)
    adata.var["highly_variable"] = lognorm.var["highly_variable"]
    scfuse.tl.cluster(adata, n_clusters=3, key_added="scanpy_hvg", **FAST)
    assert adata.var["scanpy_hvg_genes"].sum() == 30

    with pytest.raises(KeyError, match="not a column"):
        scfuse.tl.cluster(adata.copy(), n_clusters=3, mask_var="missing", **FAST)


@pytest.mark.parametrize("method", ["attentionae", "scasdc", "scdefer", "scamac", "sccagn"])
def test_batch_key_every_method(sim, method):
    """Every method trains with batch_key on a batch-balanced graph and records it; a graph that is not balanced
    for that key is refused before training, leaving adata as it was."""
    from scfuse._utils import _estimate_k

    sim.obs["donor"] = np.where(np.arange(sim.n_obs) % 2 == 0, "d1", "d2")
    klass = scfuse.models.get_model_class(method)
    if klass.uses_graph:
        scfuse.pp.build_graph(sim, n_neighbors=10, method=klass.graph_method, key_added="plain")
        before = snapshot(sim)
        with pytest.raises(ValueError, match=r"batch-balanced graph.*build_graph\(adata, batch_key='donor'"):
            scfuse.tl.cluster(sim, method, neighbors_key="plain", batch_key="donor", **FAST)
        assert_unchanged(sim, before)
    before = snapshot(sim)
    with pytest.raises(KeyError, match="not a column"):
        scfuse.tl.cluster(sim, method, batch_key="sample", **FAST)
    assert_unchanged(sim, before)
    scfuse.pp.build_graph(sim, n_neighbors=10, method=klass.graph_method, batch_key="donor")
    seen = []
    original = _estimate_k.embedding_graph

    def spy(z, **kwargs):
        seen.append(kwargs.get("batches"))
        return original(z, **kwargs)

    _estimate_k.embedding_graph = spy
    try:
        _, model = scfuse.tl.cluster(sim, method, batch_key="donor", return_model=True, **FAST)
    finally:
        _estimate_k.embedding_graph = original
    # a count decoder reads the one-hot batch (2 donors) in its ZINB heads
    assert model.n_covariates == (2 if klass.uses_counts else 0)
    if klass.uses_counts:
        assert model.module.zinb.n_covariates == 2
    params = sim.uns[method]["params"]
    assert params["batch_key"] == "donor"
    assert params.get("graph_batch_key") == ("donor" if klass.uses_graph else None)
    # the Leiden graph of the clustering start is batch-balanced too
    assert seen and all(b is not None and np.array_equal(b, np.arange(sim.n_obs) % 2) for b in seen)
    # (a few epochs on 300 cells: whether the batches are mixed is measured in benchmarks/batches.py)
    assert sim.obs[method].notna().all() and sim.obsm[f"X_{method}"].shape[0] == sim.n_obs
