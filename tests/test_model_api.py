from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import FAST

import scfuse
from scfuse.models import AttentionAE, FusionModel


def test_model_train_embed_predict(sim):
    model = AttentionAE(sim, random_state=0)
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict()
    model.train(pretrain_epochs=2, max_epochs=1, progress_bar=False)
    z = model.get_latent_representation()
    assert z.shape == (sim.n_obs, 16)
    labels = model.predict()
    proba = model.predict(soft=True)
    assert labels.shape == (sim.n_obs,) and proba.shape[0] == sim.n_obs
    np.testing.assert_array_equal(labels, proba.argmax(1))
    assert "AttentionAE" in repr(model)


def test_save_load_roundtrip(sim, tmp_path):
    _, model = scfuse.tl.cluster(sim, return_model=True, **FAST)
    model.save(tmp_path / "m")
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)
    loaded = FusionModel.load(tmp_path / "m", sim)
    assert isinstance(loaded, AttentionAE)
    np.testing.assert_allclose(loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-5)
    np.testing.assert_array_equal(loaded.predict(), model.predict())
    no_data = AttentionAE.load(tmp_path / "m")
    with pytest.raises(ValueError, match="pass adata"):
        no_data.predict()
    with pytest.raises(ValueError, match="training data"):
        no_data.predict(sim)  # new cells are joined to the training cells, which it does not hold
    np.testing.assert_array_equal(no_data.predict(sim, graph="own"), model.predict())
    np.testing.assert_array_equal(loaded.predict(sim), model.predict(sim))


def test_load_errors(sim, tmp_path):
    with pytest.raises(FileNotFoundError):
        FusionModel.load(tmp_path / "nothing")
    _, model = scfuse.tl.cluster(sim, return_model=True, **FAST)
    model.save(tmp_path / "m")
    other = sim[:, ::-1].copy()  # same genes, another order
    with pytest.raises(ValueError, match="var_names differ"):
        FusionModel.load(tmp_path / "m", other)
    fewer = sim[:, :50].copy()
    with pytest.raises(ValueError, match="var_names differ"):
        FusionModel.load(tmp_path / "m", fewer)


def test_predict_aligns_genes_by_name(sim, monkeypatch):
    """New cells' genes are matched by name: another order gives the same result, extra genes are dropped,
    missing ones are zero with a warning giving the share of the model's genes."""
    from scfuse.models import _mapping

    _, model = scfuse.tl.cluster(sim, return_model=True, **FAST)
    expected = model.get_latent_representation(sim)
    shuffled = sim[:, np.random.default_rng(0).permutation(sim.n_vars)].copy()
    np.testing.assert_allclose(model.get_latent_representation(shuffled), expected, atol=1e-5)
    import anndata as ad
    import scipy.sparse as sp

    counts = sp.hstack([sim.layers["counts"], sim.layers["counts"][:, :5]]).tocsr()
    more = ad.AnnData(counts, obs=sim.obs[[]].copy(), layers={"counts": counts.copy()})
    more.var_names = list(sim.var_names) + [f"new{i}" for i in range(5)]
    more.uns["scfuse"] = sim.uns["scfuse"]
    for name in ("scfuse_connectivities", "scfuse_distances"):
        more.obsp[name] = sim.obsp[name]
    np.testing.assert_allclose(model.get_latent_representation(more), expected, atol=1e-5)
    said = []
    monkeypatch.setattr(_mapping.logg, "warning", lambda msg, *a, **k: said.append(msg))
    used = np.flatnonzero(model.genes_used)
    fewer = sim[:, [i for i in range(sim.n_vars) if i != used[0]]].copy()
    assert model.predict(fewer).shape == (sim.n_obs,)
    assert len(said) == 1 and f"{1 / used.size:.1%}" in said[0]
    unknown = sim.copy()
    unknown.var_names = [f"other{i}" for i in range(sim.n_vars)]
    with pytest.raises(ValueError, match="None of the genes"):
        model.predict(unknown)


def test_transfer_new_cells(sim):
    _, model = scfuse.tl.cluster(sim, return_model=True, **FAST)
    query = scfuse.datasets.simulate(300, 100, 3, random_state=0)[:120].copy()
    scfuse.pp.build_graph(query, n_neighbors=10)
    out = scfuse.tl.transfer(query, model, copy=True)
    k = sim.uns["attentionae"]["n_clusters"]
    assert out.obsm["X_attentionae"].shape == (120, 16)
    assert out.obsm["attentionae_proba"].shape == (120, k)
    assert set(out.obs["attentionae"].cat.categories) == {str(i) for i in range(k)}
    assert "attentionae" not in query.obs  # copy=True
    conf = out.obs["attentionae_confidence"].to_numpy()
    np.testing.assert_allclose(conf, out.obsm["attentionae_proba"].max(axis=1))
    assert conf.min() >= 1 / k - 1e-6 and conf.max() <= 1 + 1e-6


def test_accelerator_resolution():
    from scfuse._utils._device import resolve_device

    assert resolve_device("cpu").type == "cpu"
    auto = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert auto.type == expected
    with pytest.raises(ValueError, match="accelerator"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("gpu")


def test_default_schedule_has_a_fixed_step_budget_at_scale():
    sched = FusionModel.default_schedule
    assert sched(800, 256, 300, (10, 200)) == (75, None)  # small data: whole epochs, more of them
    assert sched(5_000, 256, 300, (10, 200)) == (15, None)
    assert sched(9_000, 256, 100, (6, 40)) == (6, None)  # up to fixed_budget_cells: the lower clip applies
    assert sched(50_000, 256, 300, (10, 200)) == (10, 30)  # above: 300 steps whatever n
    assert sched(1_000_000, 256, 300, (10, 200)) == (10, 30)
    assert sched(20_000, 256, 900, (10, 200)) == (12, None)  # short epochs stay whole


def test_large_default_fit_runs_the_step_budget():
    """Above fixed_budget_cells the default schedule runs steps_per_epoch mini-batches per epoch."""
    from scfuse.models import AttentionAE

    adata = scfuse.datasets.simulate(3000, 60, 3, random_state=4)
    scfuse.pp.build_graph(adata, n_neighbors=10)

    class Small(AttentionAE):
        fixed_budget_cells = 1000
        default_pretrain_steps = 6
        default_pretrain_epoch_range = (2, 5)
        default_cluster_steps = 4
        default_cluster_epoch_range = (2, 5)
        default_hparams = {**AttentionAE.default_hparams, "min_cluster_epochs": 1}

    steps = []
    model = Small(adata, n_clusters=3)
    real = model.data.batch
    model.data.batch = lambda idx, device: steps.append(len(idx)) or real(idx, device)
    model.train(batch_size=100, progress_bar=False)
    assert model.train_params["pretrain_epochs"] == 2
    assert model.train_params["steps_per_epoch"] == {"pretrain": 3, "cluster": 2}
    n_cluster_epochs = model.train_params["cluster_epochs_trained"]
    trained_cluster_epochs = n_cluster_epochs - int(model.converged)
    assert model.train_params["batch_norms_settled"] is True  # forward passes only, after pretraining
    assert len(steps) == 2 * 3 + model.BN_SETTLE_BATCHES + 2 * trained_cluster_epochs


@pytest.mark.parametrize("method", ["attentionae", "scasdc", "scdefer", "scamac", "sccagn"])
def test_no_dense_cells_by_genes(method, monkeypatch):
    """Counts stay sparse; training densifies a mini-batch and inference a chunk of rows at a time, and no tensor
    of all cells x model genes (input, counts or reconstruction) is made."""
    from helpers import dense_shapes

    from scfuse.models._preprocess import Preprocessor

    n, g = 1600, 120  # (not a hidden width of any module)
    adata = scfuse.datasets.simulate(n, g, 3, random_state=5)
    scfuse.pp.build_graph(adata, n_neighbors=10)
    monkeypatch.setattr(FusionModel, "inference_chunk_size", 400)
    rows = []
    real = Preprocessor.dense_input
    monkeypatch.setattr(Preprocessor, "dense_input", lambda self, m: rows.append(m.shape) or real(self, m))
    run = {"n_clusters": 3, "pretrain_epochs": 1, "max_epochs": 1, "progress_bar": False, "batch_size": 300}
    shapes = dense_shapes(lambda: scfuse.tl.cluster(adata, method, **run))
    assert rows and max(r[0] for r in rows) <= 400, max(rows)
    n_genes = rows[0][1]
    assert not [s for s in shapes if len(s) == 2 and s[0] == n and s[1] == n_genes], "a cells x genes tensor was made"
    assert any(s and s[0] == n for s in shapes), "no full-data pass was recorded"


def test_batch_size_capped():
    """A batch_size above the cap never makes a batch of all cells: no n x n tensor on 2,500 cells."""
    from helpers import assert_no_cell_by_cell, dense_shapes

    n = 2500
    adata = scfuse.datasets.simulate(n, 40, 3, random_state=2)
    scfuse.pp.build_graph(adata, n_neighbors=10)
    run = {"n_clusters": 3, "batch_size": 100_000, "pretrain_epochs": 1, "max_epochs": 1, "progress_bar": False}
    shapes = dense_shapes(lambda: scfuse.tl.cluster(adata, **run))
    assert_no_cell_by_cell(shapes, n)
    assert adata.uns["attentionae"]["params"]["batch_size"] == FusionModel.max_batch_size


def test_no_dense_n_by_n_tensor(monkeypatch):
    """Training and inference on more cells than a batch never create an n x n tensor."""
    from helpers import assert_no_cell_by_cell, dense_shapes

    n = 1500
    adata = scfuse.datasets.simulate(n, 60, 3, random_state=2)
    scfuse.pp.build_graph(adata, n_neighbors=10)

    shapes = dense_shapes(
        lambda: scfuse.tl.cluster(
            adata, n_clusters=3, batch_size=128, pretrain_epochs=1, max_epochs=1, progress_bar=False
        )
    )
    assert_no_cell_by_cell(shapes, n)  # batch-by-batch (128 x 128) attention masks are fine


@pytest.mark.parametrize("bias", [False, True])
def test_neighbor_attention_in_chunks_is_the_same_function(bias, monkeypatch):
    """From LOW_MEMORY_MIN_ROWS rows on, no-grad neighbour attention never projects all rows' keys and values at
    once; it gives the same output, and a model's embedding is the same either way."""
    import scfuse.nn._attention as attention

    torch.manual_seed(0)
    block = attention.NeighborAttention(32, 4, qkv_bias=bias, chunk_size=64).eval()
    query, key_value = torch.randn(500, 32), torch.randn(500, 32)
    neighbors = torch.randint(0, 500, (500, 9))
    mask = torch.rand(500, 9) > 0.3
    mask[:, 0] = True
    projected = []
    monkeypatch.setattr(block, "_project", lambda *a: projected.append(1) or type(block)._project(block, *a))
    with torch.no_grad():
        whole = block(query, key_value, neighbors=neighbors, neighbor_mask=mask)
        monkeypatch.setattr(attention, "LOW_MEMORY_MIN_ROWS", 100)
        chunked = block(query, key_value, neighbors=neighbors, neighbor_mask=mask)
    assert projected == [1]  # only the first call projected all rows
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)

    adata = scfuse.datasets.simulate(400, 80, 3, random_state=1)
    scfuse.pp.build_graph(adata, method="gauss")
    model = AttentionAE(adata)
    model.train(pretrain_epochs=1, max_epochs=1, progress_bar=False)
    monkeypatch.setattr(attention, "LOW_MEMORY_MIN_ROWS", 10**9)
    z_whole = model.get_latent_representation()
    monkeypatch.setattr(attention, "LOW_MEMORY_MIN_ROWS", 100)
    np.testing.assert_allclose(model.get_latent_representation(), z_whole, rtol=1e-4, atol=1e-5)


def test_settings_and_progress(capsys):
    from scfuse.models._trainer import show_progress

    assert show_progress(True) is True and show_progress(False) is False
    scfuse.settings.progress_bar = False
    assert show_progress(None) is False
    assert "seed" in repr(scfuse.settings)


# measured with these settings: attentionae 1.0, scdefer 0.957 (its soft assignments are flat: max ~0.5)
@pytest.mark.parametrize(("method", "min_same"), [("attentionae", 0.99), ("scdefer", 0.93)])
def test_new_cells_join_the_reference_graph(method, min_same):
    """New cells are joined to their nearest training cells: the training cells mapped as new cells keep their
    labels, a cell's embedding does not depend on the other new cells, and any query size works without a graph
    of its own."""
    import anndata as ad

    ref = scfuse.datasets.simulate(300, 100, 3, de_prob=0.3, random_state=0)
    scfuse.pp.build_graph(ref, n_neighbors=10, method=scfuse.models.get_model_class(method).graph_method)
    _, model = scfuse.tl.cluster(ref.copy(), method, return_model=True, **FAST)
    same = np.mean(model.predict(ref) == model.predict())
    assert same >= min_same, same
    za = model.get_latent_representation(ref[:100].copy())
    zb = model.get_latent_representation(ref[50:150].copy())
    np.testing.assert_allclose(za[50:], zb[:50], atol=1e-5)
    bare = ad.AnnData(ref.layers["counts"][:20].copy(), var=ref.var[[]].copy())
    assert model.predict(bare).shape == (20,)  # 20 cells, no graph of their own, counts in X
    with pytest.raises(KeyError):
        model.predict(bare, graph="own")  # the query's own graph is missing


def _at_scale(klass):
    """``klass`` with the step-budget schedule of large data already at 300 cells (2 epochs of 2 mini-batches)."""
    return type(
        klass.__name__,
        (klass,),
        {
            "fixed_budget_cells": 100,
            "default_pretrain_steps": 3,
            "default_pretrain_epoch_range": (2, 5),
            "default_cluster_steps": 3,
            "default_cluster_epoch_range": (3, 5),
        },
    )


@pytest.mark.parametrize("method", ["attentionae", "scasdc", "scdefer", "sccagn"])
def test_clustering_stage_keeps_batch_norm_statistics(method, sim_knn):
    """At scale the batch norms the embedding passes through are settled after pretraining, and the clustering
    stage, whose labels, targets and centres are read in eval mode, trains them with those statistics fixed: the
    embedding moves with the weights only. (scCAGN's discriminator is not trained by that stage's optimiser and
    keeps normalising its own mini-batches.) With whole epochs nothing is settled or fixed."""
    klass = _at_scale(scfuse.models.get_model_class(method))
    model = klass(sim_knn.copy(), n_clusters=3, min_cluster_epochs=2)
    seen = {}
    start = model._start_clusters

    def snapshot_then_start(z0):
        seen["stats"] = {k: v.clone() for k, v in model.module.state_dict().items() if "running" in k}
        return start(z0)

    model._start_clusters = snapshot_then_start
    model.train(batch_size=64, progress_bar=False)
    assert model.train_params["steps_per_epoch"]["pretrain"] == 2
    assert model.train_params["batch_norms_settled"] == (method != "sccagn")
    assert model.train_params["cluster_epochs_trained"] >= 2
    after = model.module.state_dict()
    moved = sorted(k for k, v in seen["stats"].items() if not torch.equal(v, after[k]))
    trained = {id(p) for p in model._cluster_parameters()}
    norms = {n for n, m in model.module.named_modules() if isinstance(m, torch.nn.BatchNorm1d)}
    assert norms, "the method has batch norms"
    for name in norms:
        frozen = id(model.module.get_submodule(name).weight) in trained
        assert frozen == (not any(k.startswith(name + ".") for k in moved)), name
    if method == "sccagn":  # its only batch norms are the discriminator's
        assert moved and all(k.startswith("discriminator.") for k in moved)
    else:
        assert moved == [k for k in moved if k.startswith(("dec", "gdec"))]  # at most attentionae's frozen decoder
    whole = scfuse.models.get_model_class(method)(sim_knn.copy(), n_clusters=3)
    whole.train(pretrain_epochs=2, max_epochs=1, progress_bar=False)
    assert whole.train_params["batch_norms_settled"] is False


def test_batch_norm_statistics_settle_after_pretraining(sim_knn):
    """At scale, the running statistics of the batch norms the embedding passes through become the plain average of
    BN_SETTLE_BATCHES training-mode mini-batches after pretraining; weights and the training's random stream stay
    as they were."""
    model = _at_scale(scfuse.models.ScDEFER)(sim_knn.copy(), n_clusters=3)
    model.train(batch_size=64, max_epochs=0, progress_bar=False)
    assert model.train_params["batch_norms_settled"] is True
    layers = model._trained_batch_norms()
    assert len(layers) == 4  # two in the MLP branch, two in the decoder
    means = {id(layer): [] for layer in layers}
    hooks = [layer.register_forward_pre_hook(lambda m, x: means[id(m)].append(x[0].mean(0))) for layer in layers]
    weights = {k: v.clone() for k, v in model.module.state_dict().items() if "running" not in k and "num_b" not in k}
    rng_state = model.rng.bit_generator.state
    for layer in layers:
        layer.running_mean.fill_(5.0)
    model.BN_SETTLE_BATCHES = 7  # more than one epoch of 5 mini-batches
    model._settle_batch_norms(64)
    for h in hooks:
        h.remove()
    assert model.rng.bit_generator.state == rng_state
    after = model.module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in weights.items())
    for layer in layers:
        assert len(means[id(layer)]) == 7
        torch.testing.assert_close(layer.running_mean, torch.stack(means[id(layer)]).mean(0), rtol=1e-4, atol=1e-5)
        assert layer.momentum == 0.01  # scDEFER's momentum is back for later training
