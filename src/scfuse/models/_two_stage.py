"""Pretrain, initialise clusters without labels, then train with a self-supervised DEC target."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scanpy import logging as logg

from .._utils._graph import sample_edges
from ..nn import soft_assign, target_distribution
from ._base import FusionModel
from ._data import Batch, CellData
from ._trainer import Phase, mean_loss


class TwoStageModel(FusionModel):
    """Schedule shared by the DEC-style methods.

    1. Pretraining: ``_pretrain_loss(batch)`` on graph-local mini-batches.
    2. Initialisation: Leiden (``n_clusters=None``) or k-means/average linkage (given k, by silhouette) on the
       pretrained embedding gives k and centres.
    3. Clustering: every epoch a no-grad pass over all cells gives ``Q``, the target ``P`` (detached) and the labels;
       the stage stops when fewer than ``tol`` of the labels change (after ``min_cluster_epochs``), else runs
       ``_cluster_loss(batch, p)`` steps.

    Subclasses provide the module, the two losses, :meth:`_cluster_parameters` and :meth:`_forward_all`.
    """

    default_hparams: dict[str, Any] = {"min_cluster_epochs": 5, "grad_clip": None, "neighbors_per_seed": 3}

    # -- hooks
    def _pretrain_loss(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cluster_loss(self, batch: Batch, p: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cluster_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.module.parameters())

    def _forward_all(self, data: CellData) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """No-grad, eval-mode pass over all cells; returns at least ``{"latent": z}`` (and ``"proba"`` if the
        method has its own assignment head)."""
        raise NotImplementedError

    def _pretrain_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.module.parameters(), lr=lr)

    def _cluster_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self._cluster_parameters(), lr=lr)

    # -- helpers
    def _batches(self, batch_size: int, phase: str):
        for idx in self._phase_batches(batch_size, phase):
            yield self.data.batch(idx, self.device)

    def _pair_logits(self, batch: Batch, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inner-product graph decoder on sampled pairs of batch cells: ``(h_i . h_j, target)``.

        The pairs are every edge of the batch's subgraph plus as many random pairs (target 1 for edges, 0 for
        non-edges), so the graph-reconstruction loss never needs the ``n x n`` adjacency.
        """
        r, c, t = sample_edges(batch.adj_binary, max(batch.adj_binary.nnz, 1), self.rng)
        r, c = torch.from_numpy(r).to(self.device), torch.from_numpy(c).to(self.device)
        return (h[r] * h[c]).sum(dim=1), torch.from_numpy(t).to(self.device)

    @torch.no_grad()
    def _infer(self, data: CellData) -> dict[str, np.ndarray]:
        self.module.eval()
        out = self._forward_all(data)
        z = out["latent"]
        q = out.get("proba")
        if q is None:
            q = soft_assign(self.module.assign_space(z), self.module.centers)
        res = {"latent": z.cpu().numpy(), "proba": q.cpu().numpy()}
        res["labels"] = res["proba"].argmax(axis=1)
        return res

    # -- schedule
    def _fit(self, *, max_epochs, pretrain_epochs, batch_size, learning_rate, tol) -> None:
        self.module = self._build_module(**self._module_config()).to(self.device)
        clip = self.hparams.get("grad_clip")

        opt = self._pretrain_optimizer(learning_rate)

        def pretrain_epoch(epoch: int) -> dict:
            self.module.train()
            return {
                "loss": mean_loss(
                    self._batches(batch_size, "pretrain"), self._pretrain_loss, opt, clip=clip, phase="pretraining", epoch=epoch
                )
            }

        Phase("Pretraining", pretrain_epochs, progress_bar=self.progress, history=self.history, prefix="pretrain").run(
            pretrain_epoch
        )

        self.module.eval()
        with torch.no_grad():
            z0 = self._forward_all(self.data)["latent"].cpu().numpy()
        if not np.all(np.isfinite(z0)):
            from .._utils._validate import TrainingError

            raise TrainingError("The pretrained embedding holds NaN or infinite values; adata was not modified.")
        if self.hparams.get("assign_on", "latent") == "direction":
            # cluster on the direction of the latent, at its median norm: the start (k, partition, centres) and
            # the Student-t assignment then ignore how far from the origin a cell lies
            # (a latent whose median norm is 0 stays as it is)
            norms = np.linalg.norm(z0, axis=1)
            scale = float(np.median(norms))
            if scale > 0:
                z0 = (z0 / np.maximum(norms, 1e-12)[:, None] * scale).astype(np.float32)
                self.module.direction_scale.fill_(scale)
        labels, centers = self._init_clusters(z0)
        self.module.set_centers(torch.from_numpy(centers).to(self.device))
        self._after_init(z0, labels)

        opt2 = self._cluster_optimizer(self._cluster_learning_rate(learning_rate))
        state = {"labels": labels}
        min_epochs = self.hparams["min_cluster_epochs"]

        def cluster_epoch(epoch: int) -> dict:
            res = self._infer(self.data)
            q = torch.from_numpy(res["proba"]).to(self.device)
            p_all = self._target(q)
            new = res["labels"]
            delta = float(np.mean(new != state["labels"]))
            state["labels"] = new
            if epoch >= min_epochs and delta < tol:
                self.converged = True
                return {"delta_label": delta, "stop": True}
            self.module.train()
            loss = mean_loss(
                self._batches(batch_size, "cluster"),
                lambda b: self._cluster_loss(b, p_all[torch.from_numpy(b.index).to(self.device)]),
                opt2,
                clip=clip,
                phase="clustering",
                epoch=epoch,
            )
            return {"loss": loss, "delta_label": delta}

        self.converged = False
        phase = Phase("Clustering", max_epochs, progress_bar=self.progress, history=self.history, prefix="cluster")
        phase.run(cluster_epoch)
        self.train_params["cluster_epochs_trained"] = phase.epochs_run
        self.train_params["pretrain_epochs_trained"] = pretrain_epochs
        if not self.converged and max_epochs > 0:
            logg.info(f"    the clustering stage reached max_epochs={max_epochs} before the label change fell under tol")
        self.centers = self.module.centers.detach().cpu().numpy()

    def _after_init(self, z0: np.ndarray, labels: np.ndarray) -> None:
        """Hook run after the clusters are initialised (e.g. to initialise a second head)."""

    def _cluster_learning_rate(self, lr: float) -> float:
        return lr

    def _target(self, q: torch.Tensor) -> torch.Tensor:
        return target_distribution(q)


class ClusterCenters(torch.nn.Module):
    """Mixin module part: a ``centers`` parameter filled once k is known, and the space the Student-t assignment
    reads (:meth:`assign_space`)."""

    def __init__(self) -> None:
        super().__init__()
        # 0: assign on the latent itself; > 0: on the latent's direction, at this radius
        self.register_buffer("direction_scale", torch.zeros(()))

    def assign_space(self, z: torch.Tensor) -> torch.Tensor:
        """``z``, or ``direction_scale * z / ||z||`` once a direction scale is set."""
        s = self.direction_scale
        # torch.where rather than a Python test on the buffer: no device-to-host sync per training step
        return torch.where(s > 0, torch.nn.functional.normalize(z, dim=1) * s, z)

    def set_centers(self, centers: torch.Tensor) -> None:
        self.centers = torch.nn.Parameter(centers.clone())
