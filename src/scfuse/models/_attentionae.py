"""AttentionAE-sc: a ZINB autoencoder and a graph network fused by cross-attention (Li et al., 2023)."""

from __future__ import annotations

import torch

from scfuse.module import AttentionAEModule

from ._config import AttentionAEConfig
from ._data import CellData
from ._registry import register
from ._two_stage import TwoStageModel


@register
class AttentionAE(TwoStageModel):
    """AttentionAE-sc :cite:p:`Li2023attentionae`.

    A ZINB autoencoder on the z-scored log-normalised highly variable genes and a two-layer GCN over the
    normalised cell graph are fused by two multi-head cross-attention blocks (queries from the graph branch,
    keys/values from the autoencoder, residual). Stage 1 trains ZINB + 0.1 graph reconstruction; Leiden on the
    pretrained embedding (for a given ``n_clusters`` the same communities split or merged to k by silhouette,
    ``given_k_start="leiden"``; ``"silhouette"`` gives k-means/average linkage) starts stage 2, which trains
    ``KL(P||Q) + 0.1 ZINB + 0.01 graph`` with the decoder frozen until fewer than ``tol`` labels change.

    What scfuse changed from the authors' code, and why, is on the method's documentation page (``docs/methods/attentionae.md``).

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata, method="gauss")
    >>> scfuse.tl.cluster(adata, "attentionae", pretrain_epochs=2, max_epochs=2, progress_bar=False)
    >>> adata.obsm["X_attentionae"].shape
    (300, 16)
    """

    method_name = "attentionae"
    paper = "Li S, Guo H, Zhang S, Li Y, Li M. Attention-based deep clustering method for scRNA-seq cell type identification. PLoS Comput Biol 19(11): e1011641 (2023)."
    n_top_genes = 2500
    input_transform = "zscore"
    adjacency = "sym"
    graph_method = "gauss"
    default_batch_size = 256
    default_learning_rate = 1e-3
    module_class = AttentionAEModule
    module_hparams = ("hidden", "n_latent", "n_heads", "attention_dropout", "noise_std")
    config_class = AttentionAEConfig

    loss_weights = {
        "pretrain": {"graph": "graph_weight"},
        "cluster": {"zinb": "cluster_zinb_weight", "graph": "cluster_graph_weight"},
    }
    pair_phases = ("pretrain", "cluster")

    def _cluster_parameters(self) -> list[torch.nn.Parameter]:
        m = self.module
        frozen = {id(p) for p in list(m.decoder.parameters()) + list(m.zinb.parameters())}
        return [p for p in m.parameters() if id(p) not in frozen]

    def _forward_all(self, data: CellData) -> dict[str, torch.Tensor]:
        batch = data.full_batch(self.device)
        z, _ = self.module.encode(batch.x, batch.graph)
        return {"latent": z}
