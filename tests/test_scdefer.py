"""scDEFER: fields, determinism, learning on simulated groups, no n x n tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import (
    FAST,
    assert_cluster_outputs,
    assert_no_n_by_n,
    assert_same_seed_same_result,
    assert_save_load_same,
    cluster_simulated_groups,
)

import scfuse

METHOD = "scdefer"
SMALL = {"hidden": (64, 32)}  # a narrow encoder keeps the tests fast; the maths is the default's


@pytest.fixture(scope="module")
def clustered(sim_knn):
    adata = sim_knn.copy()
    _, model = scfuse.tl.cluster(adata, METHOD, return_model=True, **FAST, **SMALL)
    return adata, model


def test_fields_written(clustered):
    adata, model = clustered
    assert_cluster_outputs(adata, METHOD, 24)
    p = adata.uns[METHOD]["params"]
    assert p["method"] == METHOD and p["n_clusters_estimated"] is True
    assert len(adata.uns[METHOD]["history"]["pretrain_loss"]) == 3
    assert np.all(np.isfinite(adata.uns[METHOD]["history"]["pretrain_loss"]))
    assert model.train_params["learning_rate"] == 1e-3 and model.hparams["cluster_learning_rate"] == 1e-4
    assert {"tag1", "tag2", "tag3", "mlp1", "mlp2", "mlp3"} <= set(dict(model.module.named_children()))


def test_paper_learning_rate_is_reachable(sim_knn):
    _, model = scfuse.tl.cluster(sim_knn.copy(), METHOD, return_model=True, cluster_learning_rate=1e-7, **FAST, **SMALL)
    assert model.hparams["cluster_learning_rate"] == 1e-7


def test_tagconv_matches_dense_polynomial():
    from scfuse.nn import TAGConv

    torch.manual_seed(0)
    a = (torch.rand(7, 7) < 0.4).float()
    a = ((a + a.T) > 0).float()
    x = torch.randn(7, 5)
    conv = TAGConv(5, 3, hops=3, activation=None)
    ref = sum(torch.linalg.matrix_power(a, m) @ x @ conv.lins[m].weight.T for m in range(4)) + conv.bias
    torch.testing.assert_close(conv(x, a.to_sparse()), ref, rtol=1e-4, atol=1e-5)


def test_save_load_predict(clustered, sim_knn, tmp_path):
    assert_save_load_same(clustered[1], sim_knn, tmp_path / "m")


def test_same_seed_same_result(sim_knn):
    assert_same_seed_same_result(sim_knn, METHOD, n_clusters=3, **FAST, **SMALL)


def test_learning_on_simulated_groups():
    """A working model separates well-separated simulated groups (fails for a broken model)."""
    adata, ari = cluster_simulated_groups(METHOD, pretrain_epochs=30, max_epochs=10, hidden=(256, 64))
    assert ari > 0.8
    # scdefer's start for a given k: the partition whose centres assign the cells best, scores recorded
    p = adata.uns[METHOD]["params"]
    assert p["model_kwargs"]["given_k_start"] == "centres"
    scores = {k: v for k, v in p.items() if k.startswith("assigned_silhouette_")}
    assert len(scores) == 4 and all(-1.0 <= v <= 1.0 for v in scores.values())
    chosen = "leiden" if p["init_method"].startswith("leiden") else p["init_method"]
    assert scores[f"assigned_silhouette_{chosen}"] == max(scores.values())


def test_no_n_by_n_tensor():
    """Training and inference on 2000 cells (n > batch size) never materialise a cells x cells tensor."""
    assert_no_n_by_n(METHOD, 2000, **SMALL)


def test_direction_assignment(clustered, sim_knn, tmp_path):
    """The default ``assign_on="direction"``: the Student-t reads the latent's direction at its median norm."""
    from scfuse.nn import soft_assign

    adata, model = clustered
    s = float(model.module.direction_scale)
    assert model.hparams["assign_on"] == "direction" and s > 0
    z = torch.from_numpy(adata.obsm["X_" + METHOD])
    q = soft_assign(torch.nn.functional.normalize(z, dim=1) * s, torch.from_numpy(model.centers)).numpy()
    np.testing.assert_allclose(adata.obsm[METHOD + "_proba"], q, atol=1e-5)
    assert np.all(np.linalg.norm(model.centers, axis=1) <= s * (1 + 1e-4))  # means of points on the sphere
    assert_save_load_same(model, sim_knn, tmp_path / "m")


def test_latent_assignment_and_bad_value(sim_knn):
    _, model = scfuse.tl.cluster(sim_knn.copy(), METHOD, return_model=True, assign_on="latent", **FAST, **SMALL)
    assert float(model.module.direction_scale) == 0.0
    with pytest.raises(ValueError, match="assign_on"):
        scfuse.tl.cluster(sim_knn.copy(), METHOD, assign_on="cosine", **FAST, **SMALL)
    with pytest.raises(TypeError, match="assign_on"):  # scCAGN rescales its latent its own way
        scfuse.tl.cluster(sim_knn.copy(), "sccagn", assign_on="direction", **FAST)
