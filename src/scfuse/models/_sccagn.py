"""scCAGN: an adversarial autoencoder and a GCN fused by cross-attention, with dual-constraint clustering."""

from __future__ import annotations

import numpy as np
import torch
from scanpy import logging as logg

from scfuse._utils._estimate_k import initial_clusters
from scfuse._utils._graph import prune_knn
from scfuse.module import ScCAGNModule
from scfuse.nn import target_distribution

from ._config import ScCAGNConfig
from ._data import CellData
from ._registry import register
from ._two_stage import TwoStageModel


@register
class ScCAGN(TwoStageModel):
    """scCAGN :cite:p:`Tang2025sccagn`.

    Fuses an adversarial autoencoder with a graph convolutional network (GCN) over a pruned kNN graph through
    cross-attention, and clusters with a dual constraint on the autoencoder latent and on a GCN softmax head.

    * Input: 2000 highly variable genes of the log-normalised counts, min-max scaled per gene, then L2-normalised
      per cell (the authors' h5 route). No counts model.
    * Graph: the kNN graph of :func:`scfuse.pp.build_graph` (``method="knn"``) is pruned in the model's data
      set-up: from ``obsp[distances]``, each cell keeps its ``n_neighbors`` (10) nearest neighbours whose distance is
      at most the mean + std of those distances; binary, symmetrised, ``D^-1 (A + I)``.
    * Network: GCN ``g -> 100 -> 200 -> 8`` (ReLU); encoder ``g -> 100 -> 200 -> 200 -> 8`` with the GCN layers added
      to its inputs (``phi=None``: plain sums as in the code; a float ``phi`` gives ``(1-phi) AE + phi GCN``);
      4-head cross-attention (query = latent ``z``, key/value = GCN latent) among each cell's graph neighbours;
      decoder ``8 -> 200 -> 200 -> 100 -> g`` with the GCN layers injected; GCN head ``8 -> k`` with softmax.
    * Adversarial autoencoder: a discriminator (``8 -> 64 -> 64 -> 1``, LeakyReLU + batch norm) learns prior
      samples ``N(0, I)`` = real and the live codes ``z`` = fake (Adam, ``disc_lr`` 2e-4) at every step of
      pretraining and clustering; the encoder term ``adversarial_weight * BCE(D(z), real)`` (discriminator in eval
      mode, gradient into the encoder and the GCN) is added when ``adversarial_weight > 0``. **Default 0**: see
      below.
    * Pretraining: ``0.5 MSE(x_bar, x)`` (+ the adversarial term) on graph-local mini-batches of the fused network
      (Adamax, ``learning_rate`` 1e-3) for about 2400 mini-batch steps (10-100 epochs: 100 on up to about
      6,000 cells); ``n_restarts`` (2) fresh networks, the one with the best silhouette of
      the initial clustering (Leiden, or k-means/average linkage for a given ``n_clusters``) on its latent (at
      most 2000 sampled cells) is kept: no labels.
    * Clustering: Student-t ``Q`` on ``z / s``, where the constant ``s`` (``extras["latent_scale"]``) makes the mean
      distance of a cell to its initial centre 1 (the per-cell L2-normalised input gives ``z`` a scale of
      0.003-0.005 on the benchmark data, where the kernel is flat and the stage collapsed to one cluster); the
      network under ``z`` then trains at ``learning_rate * s``, the centres and GCN head at ``learning_rate``;
      sharpened target (``tau`` = 0.5) ``p_ij ∝ q_ij^4 / sum_i q_ij^2``; loss ``1e-4 KL(P||Q) + 1e-3 KL(P||pred)
      + 0.5 MSE`` (+ adversarial), the code's weights; Adamax; stops when fewer than ``tol`` labels change.
      Labels = argmax Q; embedding = ``z / s``.
    * ``uns[key]["extras"]``: ``discriminator_accuracy`` (eval mode, all codes vs as many prior samples, at the
      end), ``discriminator_accuracy_pretrain`` / ``_train`` (mean batch accuracy while training) and
      ``pretrain_scores`` (silhouette per restart), ``latent_scale``.

    What scfuse changed from the authors' code, and why, is on the method's documentation page (``docs/methods/sccagn.md``).

    Paper: Tang B, Feng Y, Gao X. A hybrid adversarial autoencoder-graph network model with dynamic fusion for
    robust scRNA-seq clustering. BMC Genomics 26(1): 749 (2025). doi:10.1186/s12864-025-11941-y
    """

    method_name = "sccagn"
    paper = (
        "Tang B, Feng Y, Gao X. A hybrid adversarial autoencoder-graph network model with dynamic fusion for robust "
        "scRNA-seq clustering. BMC Genomics 26(1): 749 (2025)."
    )
    n_top_genes = 2000
    input_transform = "minmax_l2"
    uses_counts = False
    uses_graph = True
    adjacency = "row"
    graph_method = "knn"
    default_batch_size = 256
    default_learning_rate = 1e-3
    default_pretrain_steps = 2400
    default_pretrain_epoch_range = (10, 100)
    default_cluster_steps = 300
    default_cluster_epoch_range = (5, 30)
    module_class = ScCAGNModule
    module_hparams = ("hidden", "n_latent", "n_heads", "phi", "attention_residual", "disc_hidden", "pretrain_fused")
    config_class = ScCAGNConfig

    def _method_graph(self, adata, graph):
        """The pruned kNN graph from the distances stored beside the graph (the graph itself when there are none)."""
        if not self.hparams["prune"]:
            return graph
        key = self.neighbors_key or "neighbors"
        dkey = adata.uns[key].get("distances_key") if self.obsp is None and key in adata.uns else None
        dist = adata.obsp[dkey] if dkey is not None and dkey in adata.obsp else None
        if dist is None or dist.shape != graph.shape:
            logg.warning("sccagn: no kNN distances found next to the graph; using the graph without pruning.")
            return graph
        return prune_knn(dist, self.hparams["n_neighbors"])

    # ------------------------------------------------------------------ module
    loss_weights = {
        "pretrain": {"reconstruction": "reconstruction_weight", "adversarial": "adversarial_weight"},
        "cluster": {
            "kl": "kl_weight",
            "kl_pred": "kl_pred_weight",
            "reconstruction": "reconstruction_weight",
            "adversarial": "adversarial_weight",
        },
    }

    def _extra_terms(self, terms: dict[str, torch.Tensor], phase: str) -> dict[str, torch.Tensor]:
        """One discriminator step on the detached codes, then the encoder's adversarial term (with gradient).

        The discriminator always trains (its accuracy is reported); the term counts when its weight is > 0.
        """
        z = terms["_codes"]
        disc = self.module.discriminator
        d_loss, acc = disc.loss(z)
        self._d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self._d_opt.step()
        self._d_acc.append(acc)
        gen = disc.generator_loss(z)
        return {"adversarial": gen} if self.hparams["adversarial_weight"] > 0 else {}

    def _targets(self, q: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # tau-sharpened target: p_ij ∝ q_ij^(1/tau^2) / sum_i q_ij^(1/tau); tau = 0.5 gives q^4 / sum_i q^2
        t = self.hparams["tau"]
        return {"p": target_distribution(q.pow(1.0 / t), power=1.0 / t)}

    def _pretrain_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adamax(self.module.model_parameters(), lr=lr)

    def _cluster_parameters(self) -> list[torch.nn.Parameter]:
        return self.module.model_parameters()

    def _cluster_optimizer(self, lr: float) -> torch.optim.Optimizer:
        # The centres and the GCN head live at the rescaled latent's scale and take ``lr``; the network under z
        # takes ``lr * latent_scale`` (at most ``lr``), so that one step moves z / s no more than it moved z before
        # the rescaling (Adamax steps are about ``lr`` whatever the gradient's size).
        scale = min(1.0, float(self.module.latent_scale))
        fast = {id(self.module.centers)} | {id(p) for p in self.module.gcn_head.parameters()}
        params = self._cluster_parameters()
        return torch.optim.Adamax(
            [
                {"params": [p for p in params if id(p) in fast], "lr": lr},
                {"params": [p for p in params if id(p) not in fast], "lr": lr * scale},
            ],
            lr=lr,
        )

    def _after_init(self, z0: np.ndarray, labels: np.ndarray) -> None:
        # Rescale the latent seen by the clustering head so that the mean distance of a cell to its initial
        # centre is 1. The input is L2-normalised per cell, so z has a scale of about 0.005; there the Student-t
        # kernel is nearly flat (max q about 1/k), the KL terms carry almost no signal, and the reconstruction
        # drifts all cells to one centre within 30 epochs. The decoder still reads the unscaled z.
        centers = self.module.centers.detach().cpu().numpy()
        within = float(np.sqrt(((z0 - centers[labels]) ** 2).sum(axis=1)).mean())
        scale = within if np.isfinite(within) and within > 0 else 1.0
        self.module.latent_scale.fill_(scale)
        with torch.no_grad():
            self.module.centers.div_(scale)
        self.extras["latent_scale"] = scale
        self.module.set_head(self.n_clusters)
        self.module.gcn_head.to(self.device)
        self._d_acc = []

    @torch.no_grad()
    def _forward_all(self, data: CellData) -> dict[str, torch.Tensor]:
        self.module.eval()
        batch = data.full_batch(self.device)
        return {"latent": self.module(batch.x, batch.graph, decode=False)["z"]}

    # ------------------------------------------------------------------ schedule
    def _new_module(self) -> None:
        super()._new_module()
        self._d_opt = torch.optim.Adam(
            self.module.discriminator.parameters(), lr=self.hparams["disc_lr"], betas=(0.5, 0.999)
        )
        self._d_acc = []

    def _restart_score(self) -> float:
        """Label-free score of a pretrained module: silhouette of the initial clustering of its latent."""
        from sklearn.metrics import silhouette_score

        z = self._forward_all(self.data)["latent"].cpu().numpy()
        if not np.all(np.isfinite(z)):
            return -np.inf
        labels = initial_clusters(
            z,
            self.n_clusters_requested,
            resolution=self.resolution,
            random_state=self.random_state,
            given_k_start=self.hparams["given_k_start"],
            batches=self.batches,
            view=self._k_scan_view(),
        )[0]
        if len(np.unique(labels)) < 2:
            return -1.0
        return float(silhouette_score(z, labels, sample_size=min(len(z), 2000), random_state=self.random_state))

    def _pretrain(self, epochs: int, batch_size: int, learning_rate: float, history: dict | None = None) -> None:
        """``n_restarts`` fresh modules pretrained; the one with the best :meth:`_restart_score` is kept."""
        n_restarts = int(self.hparams["n_restarts"]) if epochs > 0 else 1
        lr = self.hparams["pretrain_lr"] or learning_rate
        best, scores, accs = None, [], []
        for r in range(n_restarts):
            if r > 0:  # restart 0 uses the seeds set by train(); later ones derived seeds
                torch.manual_seed(self.random_state + 7919 * r)
                self.rng = np.random.default_rng([self.random_state, r])
            history = {}
            super()._pretrain(epochs, batch_size, lr, history=history)
            scores.append(self._restart_score())
            accs.append(float(np.mean(self._d_acc)) if self._d_acc else float("nan"))
            if best is None or scores[-1] > best[0]:
                best = (scores[-1], self.module, self._d_opt, history, r)
        _, self.module, self._d_opt, history, chosen = best
        if n_restarts > 1:
            logg.info(f"    pretraining restarts: silhouettes {np.round(scores, 3).tolist()}; kept restart {chosen}")
        self.history.update(history)
        self._d_acc = []
        self.train_params["pretrain_restart_chosen"] = chosen
        self.extras["pretrain_scores"] = [float(s) for s in scores]
        self.extras["discriminator_accuracy_pretrain"] = accs[chosen]

    def _fit(self, **kwargs) -> dict[str, np.ndarray]:
        raw = super()._fit(**kwargs)
        self.extras["discriminator_accuracy_train"] = float(np.mean(self._d_acc)) if self._d_acc else float("nan")
        self.extras["discriminator_accuracy"] = self._discriminator_accuracy()
        return raw

    @torch.no_grad()
    def _discriminator_accuracy(self) -> float:
        """Eval-mode accuracy of the discriminator on all codes (fake) vs as many prior samples (real)."""
        self.module.eval()
        z = self._forward_all(self.data)["latent"]
        g = torch.Generator(device="cpu").manual_seed(self.random_state)
        prior = torch.randn(z.shape, generator=g).to(self.device)
        disc = self.module.discriminator
        acc = 0.5 * (float((disc(prior) > 0).float().mean()) + float((disc(z) <= 0).float().mean()))
        return acc
