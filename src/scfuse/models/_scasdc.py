"""scASDC: a ZINB autoencoder and a GCN fused layer by layer through multi-head self-attention (Min et al., 2024)."""

from __future__ import annotations

import torch

from scfuse.module import ScASDCModule
from scfuse.nn import (
    soft_assign,
    target_distribution,
)

from ._config import ScASDCConfig
from ._data import CellData
from ._registry import register
from ._two_stage import TwoStageModel


@register
class ScASDC(TwoStageModel):
    """scASDC :cite:p:`Min2024scasdc`: attention-enhanced structural deep clustering.

    Fuses a ZINB autoencoder with a graph convolutional network at every encoder and decoder layer. The
    autoencoder (``g -> 1000 -> 1000 -> 4000 -> 10``, Linear-BatchNorm-ReLU, symmetric decoder) reconstructs the
    z-scored log-normalised highly variable genes (MSE) and, through three ZINB heads, the raw counts of those
    genes with size factors. The GCN encoder runs over the row-normalised binary symmetrised kNN graph
    ``D^-1 (A+I)``; the input of each of its layers is the fused mix ``alpha H + (1 - alpha) Z`` (``alpha=0.5``) of
    the GCN layer ``H`` and the autoencoder layer ``Z`` of the same size, passed through 8-head self-attention
    over the cell's graph neighbours; a linear GCN layer and a softmax give the cluster head. A GCN decoder fused
    with the autoencoder decoder reconstructs the input.

    Training: (1) the autoencoder is pretrained with ``MSE + 0.5 ZINB`` (Adam, ``learning_rate``, default 1e-3);
    (2) Leiden (``n_clusters=None``) or k-means/average linkage (given k) on the pretrained embedding, read on its
    direction (``assign_on``), initialise the centres;
    (3) all parameters are trained (Adam; ``cluster_learning_rate`` 1e-4 as in the authors' code for the
    autoencoder and the centres, ``gcn_learning_rate`` 1e-3 for the freshly initialised GCN branch) on::

        0.1 KL(P||Q) + 0.01 KL(P||pred) + 1.0 MSE(x_bar, x) + 0.01 L_A + 0.01 MSE(x_hat, x) + 0.5 ZINB

    (the weights of the authors' code; all exposed as keyword arguments). ``Q`` is the Student-t assignment of
    the autoencoder embedding, ``P`` its DEC target recomputed each epoch from a no-grad pass and detached,
    ``pred`` the GCN head. Labels are the argmax of the GCN head; the embedding is the 10-d autoencoder ``z``.

    What scfuse changed from the authors' code, and why, is on the method's documentation page (``docs/methods/scasdc.md``).

    """

    method_name = "scasdc"
    paper = (
        "Min W, Wang Z, Zhu F, Xu T, Wang S. scASDC: Attention Enhanced Structural Deep Clustering for "
        "Single-cell RNA-seq Data. arXiv:2408.05258 (2024)."
    )
    n_top_genes = 2000
    input_transform = "zscore"
    adjacency = "row"
    graph_method = "knn"
    default_batch_size = 256
    default_learning_rate = 1e-3
    default_pretrain_steps = 100
    default_pretrain_epoch_range = (6, 40)
    default_cluster_steps = 60
    default_cluster_epoch_range = (6, 30)
    module_class = ScASDCModule
    module_hparams = ("hidden", "n_latent", "n_heads", "head_dims", "alpha", "head_decoder_grad")
    config_class = ScASDCConfig

    loss_weights = {
        "pretrain": {"zinb": "pretrain_zinb_weight"},
        "cluster": {
            "kl": "kl_weight",
            "head": "head_weight",
            "reconstruction": "ae_weight",
            "graph": "graph_weight",
            "gcn_reconstruction": "gcn_recon_weight",
            "zinb": "zinb_weight",
        },
    }
    pair_phases = ("cluster",)

    def _cluster_learning_rate(self, lr: float) -> float:
        return float(self.hparams["cluster_learning_rate"])

    def _cluster_optimizer(self, lr: float) -> torch.optim.Optimizer:
        # the GCN branch starts untrained at this stage: it gets its own (larger) rate, the pretrained
        # autoencoder and the centres keep ``cluster_learning_rate``
        m = self.module
        names = ("gcn1", "att1", "gcn2", "att2", "gcn_head", "gdec1", "gdec2", "gdec3")
        gcn = [p for name in names for p in getattr(m, name).parameters()]
        ids = {id(p) for p in gcn}
        rest = [p for p in m.parameters() if id(p) not in ids]
        gcn_lr = self.hparams["gcn_learning_rate"]
        return torch.optim.Adam([{"params": rest, "lr": lr}, {"params": gcn, "lr": lr if gcn_lr is None else gcn_lr}])

    def _forward_all(self, data: CellData) -> dict[str, torch.Tensor]:
        m = self.module
        batch = data.full_batch(self.device)
        ae = m.autoencode(batch.x, decode=False)
        out = {"latent": ae["z"]}
        if m.has_head and getattr(m, "centers", None) is not None:
            # the DEC target comes from Q on the autoencoder embedding; the labels from the GCN head
            out["q_ae"] = soft_assign(m.assign_space(ae["z"]), m.centers)
            out["proba"] = torch.softmax(m.graph_encode(batch.x, ae, batch.graph), dim=1)
        return out

    def _targets(self, q: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"p": target_distribution(out["q_ae"])}
