"""scASDC: fields, determinism, learning on simulated groups, no n x n tensor."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    FAST,
    assert_cluster_outputs,
    assert_no_n_by_n,
    assert_same_seed_same_result,
    assert_save_load_same,
    cluster_simulated_groups,
)

import scfuse

METHOD = "scasdc"
SMALL = {"hidden": (64, 64, 128)}  # a narrow autoencoder keeps the tests fast; the maths is the default's


@pytest.fixture(scope="module")
def clustered(sim_knn):
    adata = sim_knn.copy()
    _, model = scfuse.tl.cluster(adata, METHOD, return_model=True, **FAST, **SMALL)
    return adata, model


def test_fields_written(clustered):
    adata, model = clustered
    assert_cluster_outputs(adata, METHOD, 10)
    p = adata.uns[METHOD]["params"]
    assert p["method"] == METHOD and p["n_clusters_estimated"] is True
    assert len(adata.uns[METHOD]["history"]["pretrain_loss"]) == 3
    assert np.all(np.isfinite(adata.uns[METHOD]["history"]["pretrain_loss"]))
    assert model.train_params["learning_rate"] == 1e-3 and model.hparams["cluster_learning_rate"] == 1e-4
    assert {"gcn_head", "gdec1", "gdec2", "gdec3"} <= set(dict(model.module.named_children()))


def test_save_load_predict(clustered, sim_knn, tmp_path):
    assert_save_load_same(clustered[1], sim_knn, tmp_path / "m")


def test_undone_stage_assigns_by_the_start_centres_not_the_head(sim_knn, monkeypatch, tmp_path):
    """When the clustering stage is undone, labels come from the start's centres (the head is untrained then)."""
    import torch
    from sklearn.metrics import adjusted_rand_score

    from scfuse.models import _two_stage
    from scfuse.nn import soft_assign

    monkeypatch.setattr(_two_stage.TwoStageModel, "MIN_KEPT_CLUSTERS", 2.0)  # every stage counts as collapsed
    adata = sim_knn.copy()
    _, model = scfuse.tl.cluster(adata, METHOD, n_clusters=3, return_model=True, **FAST, **SMALL)
    assert adata.uns[METHOD]["params"]["cluster_stage_undone"] is True
    m = model.module
    with torch.no_grad():
        q = soft_assign(m.assign_space(torch.from_numpy(adata.obsm["X_" + METHOD])), m.centers).numpy()
    assert adjusted_rand_score(q.argmax(axis=1), adata.obs[METHOD]) == 1.0
    np.testing.assert_allclose(np.sort(q, axis=1), np.sort(adata.obsm[METHOD + "_proba"], axis=1), atol=1e-5)
    assert_save_load_same(model, sim_knn, tmp_path / "m")  # the loaded model assigns the same way


def test_same_seed_same_result(sim_knn):
    assert_same_seed_same_result(sim_knn, METHOD, n_clusters=3, **FAST, **SMALL)


def test_learning_on_simulated_groups():
    """A working model separates well-separated simulated groups (fails for a broken model)."""
    _, ari = cluster_simulated_groups(METHOD, pretrain_epochs=30, max_epochs=10, hidden=(128, 128, 256), n_heads=4)
    assert ari > 0.8


def test_no_n_by_n_tensor():
    """Training and inference on 2000 cells (n > batch size) never materialise a cells x cells tensor."""
    assert_no_n_by_n(METHOD, 2000, **SMALL)


@pytest.mark.parametrize("head_decoder_grad", [True, False])
def test_decoder_gradient_reaches_head_only_when_asked(clustered, head_decoder_grad):
    """With ``head_decoder_grad=False`` (the default) the GCN decoder's losses leave the head and the GCN encoder
    alone; the decoder still learns from them."""
    import copy

    import torch

    model = copy.deepcopy(clustered[1])
    # only the two losses of the GCN decoder
    model.hparams.update({"kl_weight": 0.0, "head_weight": 0.0, "ae_weight": 0.0, "zinb_weight": 0.0})
    m = model.module.eval()
    m.head_decoder_grad = head_decoder_grad
    batch = model.data.batch(np.arange(64), model.device)
    k = m.centers.shape[0]
    m.zero_grad()
    model._loss(batch, {"p": torch.full((64, k), 1.0 / k)}, "cluster")["loss"].backward()
    assert m.gdec1.weight.grad.abs().sum() > 0
    for layer in (m.gcn_head, m.gcn1):  # the head and the GCN encoder under it
        grad = layer.weight.grad
        if head_decoder_grad:
            assert grad is not None and grad.abs().sum() > 0
        else:
            assert grad is None or grad.abs().sum() == 0
