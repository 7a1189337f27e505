"""A sixth method in a few lines: a module with ``loss``, its configuration, one registration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import scfuse
from scfuse.nn import ClusterCenters, kl_batchmean, soft_assign


class ToyModule(ClusterCenters):
    """A linear autoencoder whose latent is clustered."""

    def __init__(self, n_input: int, *, n_latent: int = 4, n_clusters: int | None = None) -> None:
        super().__init__()
        self.encoder = nn.Linear(n_input, n_latent)
        self.decoder = nn.Linear(n_latent, n_input)
        if n_clusters is not None:
            self.centers = nn.Parameter(torch.zeros(n_clusters, n_latent))

    def loss(self, batch, targets: dict, phase: str) -> dict[str, torch.Tensor]:
        z = self.encoder(batch.x)
        terms = {"reconstruction": nn.functional.mse_loss(self.decoder(z), batch.x)}
        if phase == "cluster":
            terms["kl"] = kl_batchmean(targets["p"], soft_assign(z, self.centers))
        return terms


@dataclass(frozen=True)
class ToyConfig(scfuse.models.TwoStageConfig):
    n_latent: int = 4
    kl_weight: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kl_weight < 0:
            raise ValueError("kl_weight must be >= 0")


class Toy(scfuse.models.TwoStageModel):
    """Toy method: a linear autoencoder, then DEC."""

    method_name = "toy"
    uses_counts = False
    uses_graph = False
    module_class = ToyModule
    module_hparams = ("n_latent",)
    config_class = ToyConfig
    loss_weights = {"cluster": {"kl": "kl_weight"}}

    def _forward_all(self, data):
        return {"latent": data.full_batch(self.device).x.map_rows(self.module.encoder)}


@pytest.fixture
def toy():
    scfuse.models.register(Toy)
    yield Toy
    scfuse.models.unregister("toy")


def test_toy_method_runs_through_the_api(toy, tmp_path):
    adata = scfuse.datasets.simulate(n_cells=300, n_genes=100, n_groups=3, random_state=0)
    assert "toy" in scfuse.tl.show_methods().index
    _, model = scfuse.tl.cluster(
        adata, "toy", n_clusters=3, pretrain_epochs=5, max_epochs=5, progress_bar=False, return_model=True
    )
    assert adata.obsm["X_toy"].shape == (300, 4)
    assert adata.uns["toy"]["params"]["model_kwargs"]["kl_weight"] == 0.5
    history = adata.uns["toy"]["history"]
    assert {"pretrain_reconstruction", "cluster_kl", "cluster_reconstruction"} <= set(history)
    # the history's cluster loss is the sum of the weighted terms
    np.testing.assert_allclose(
        history["cluster_loss"], history["cluster_kl"] + history["cluster_reconstruction"], rtol=1e-5
    )
    model.save(tmp_path / "toy")
    back = scfuse.models.FusionModel.load(tmp_path / "toy", adata)
    assert type(back) is Toy
    np.testing.assert_array_equal(back.predict(), model.predict())
    query = adata[:50].copy()
    scfuse.tl.transfer(query, back, key_added="mapped")
    np.testing.assert_array_equal(query.obs["mapped"].astype(int).to_numpy(), model.predict()[:50])


def test_registration_is_checked(toy):
    class Other(Toy):
        pass

    with pytest.raises(ValueError, match="already registered"):
        scfuse.models.register(Other)
    with pytest.raises(ValueError, match="kl_weight"):
        Toy(scfuse.datasets.simulate(n_cells=50, n_genes=30, n_groups=2), kl_weight=-1.0)
    with pytest.raises(TypeError, match="Unknown argument"):
        Toy(scfuse.datasets.simulate(n_cells=50, n_genes=30, n_groups=2), no_such=1)
    with pytest.raises(ValueError, match="Unknown method"):
        scfuse.models.get_model_class("no-such-method")
