"""sccagn: fields, extras, graph pruning, determinism, learning, O(n) memory, a live adversarial gradient."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import (
    FAST,
    assert_cluster_outputs,
    assert_no_n_by_n,
    assert_same_seed_same_result,
    cluster_simulated_groups,
)

import scfuse
from scfuse.models._sccagn import ScCAGN, prune_knn


@pytest.fixture(scope="module")
def cagn_run():
    adata = scfuse.datasets.simulate(300, 100, 3, random_state=0)
    scfuse.pp.build_graph(adata, method="knn")
    _, model = scfuse.tl.cluster(adata, "sccagn", return_model=True, **FAST)
    return adata, model


def test_fields_and_extras(cagn_run):
    adata, model = cagn_run
    assert_cluster_outputs(adata, "sccagn", 8)
    rec = adata.uns["sccagn"]
    ex = rec["extras"]
    assert 0.0 <= ex["discriminator_accuracy"] <= 1.0
    assert 0.0 <= ex["discriminator_accuracy_pretrain"] <= 1.0
    assert len(ex["pretrain_scores"]) == 2  # n_restarts
    assert rec["params"]["pretrain_epochs"] == 3
    assert len(rec["history"]["pretrain_loss"]) == 3
    # the GCN sees the pruned graph: at most 10 kept neighbours per cell before symmetrisation
    assert model.data.binary.nnz <= 2 * 10 * adata.n_obs


def test_prune_knn():
    # cell 0: neighbours at distances 1, 1, 1, 10 -> the far one is beyond mean + std and dropped
    rows = [0, 0, 0, 0]
    cols = [1, 2, 3, 4]
    d = sp.csr_matrix((np.array([1.0, 1.0, 1.0, 10.0]), (rows, cols)), shape=(5, 5))
    a = prune_knn(d, 10)
    assert a[0, 4] == 0 and a[0, 1] == 1 and a[1, 0] == 1  # symmetric
    assert (a != a.T).nnz == 0


def test_same_seed_same_result():
    base = scfuse.datasets.simulate(200, 80, 3, random_state=2)
    scfuse.pp.build_graph(base, method="knn")
    assert_same_seed_same_result(base, "sccagn", **FAST)


def test_learning_on_simulated_groups():
    adata, ari = cluster_simulated_groups("sccagn", pretrain_epochs=40, max_epochs=10)
    # measured 0.88 with this schedule (0.79 before the latent rescaling; random labels give about 0)
    assert ari > 0.6
    assert adata.obs["sccagn"].nunique() == 4
    assert adata.uns["sccagn"]["extras"]["latent_scale"] > 0


def test_adversarial_gradient_reaches_encoder():
    """The encoder's adversarial loss BCE(D(z), real) has a gradient and changes the encoder's weights."""
    adata = scfuse.datasets.simulate(200, 80, 3, random_state=0)
    scfuse.pp.build_graph(adata, method="knn")
    model = ScCAGN(adata, n_clusters=3)
    model.train(1, pretrain_epochs=1, progress_bar=False)
    module = model.module
    module.train()
    batch = model.data.batch(np.arange(64), model.device)
    z = module(batch.x, batch.graph, decode=False)["z"]
    module.zero_grad(set_to_none=True)
    module.discriminator.generator_loss(z).backward()
    for layer in (module.z_layer, module.enc1, module.gcn1):
        g = layer.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    before = module.z_layer.weight.detach().clone()
    opt = torch.optim.SGD(module.model_parameters(), lr=0.1)
    opt.step()
    assert not torch.equal(before, module.z_layer.weight)
    # the discriminator is not in the model's optimiser
    ids = {id(p) for p in module.model_parameters()}
    assert not any(id(p) in ids for p in module.discriminator.parameters())


def test_no_n_by_n_allocation():
    assert_no_n_by_n(
        "sccagn", 3000, n_genes=20, n_neighbors=10, n_clusters=None, batch_size=64, n_top_genes=20, n_restarts=1
    )


def test_bad_arguments():
    adata = scfuse.datasets.simulate(100, 50, 2, random_state=0)
    scfuse.pp.build_graph(adata, method="knn")
    with pytest.raises(ValueError, match="n_restarts"):
        scfuse.tl.cluster(adata, "sccagn", n_restarts=0, **FAST)
    with pytest.raises(ValueError, match="divisible"):
        scfuse.tl.cluster(adata, "sccagn", n_latent=6, **FAST)
    assert "sccagn" not in adata.obs
