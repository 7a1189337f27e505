"""Pretrain, initialise clusters without labels, then train with a self-supervised DEC target."""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
import torch
from scanpy import logging as logg

from scfuse._utils._graph import sample_edges
from scfuse._utils._validate import TrainingError
from scfuse.nn import soft_assign, target_distribution

from ._base import FusionModel
from ._config import TwoStageConfig
from ._data import Batch, CellData
from ._trainer import Phase, optimizer_step


class TwoStageModel(FusionModel):
    """Schedule shared by the DEC-style methods, in named steps a method overrides by name.

    1. ``_pretrain``: the module's ``loss(batch, targets, "pretrain")`` on graph-local mini-batches.
    2. ``_start_clusters``: Leiden (``n_clusters=None``) or the given-k start on the pretrained embedding gives
       k and centres.
    3. ``_cluster_stage``: every epoch a no-grad pass over all cells gives ``Q``, the targets (``P``, detached,
       from ``_targets``) and the labels; the stage stops when fewer than ``tol`` of the labels change (after
       ``min_cluster_epochs``), else runs steps of the module's ``loss(batch, targets, "cluster")``.
    4. ``_guard_collapse``: a stage that ends with most of its clusters empty is undone, with a warning.

    The module's ``loss`` returns named loss terms; ``loss_weights`` names the hyper-parameter that weights
    each term (a term without one counts once), and the history records every weighted term per epoch. A method
    provides the module, ``loss_weights``, ``_forward_all`` and, where it needs them, the optimiser
    hooks and ``_extra_terms`` (extra optimiser steps inside a training step, e.g. a discriminator's).
    """

    config_class = TwoStageConfig
    #: ``{phase: {term: hyper-parameter name}}``: the weight of each loss term the module returns
    loss_weights: ClassVar[dict[str, dict[str, str]]] = {}
    #: phases whose loss reads sampled pairs of the batch's graph (``targets["pairs"]``, graph reconstruction)
    pair_phases: ClassVar[tuple[str, ...]] = ()
    #: at most this many mini-batches re-estimate the batch norms' statistics after pretraining
    BN_SETTLE_BATCHES: ClassVar[int] = 100
    #: a clustering stage that ends with fewer than this share of its clusters holding cells is undone
    MIN_KEPT_CLUSTERS: ClassVar[float] = 0.5
    _norms_settled: bool = False

    # -- hooks
    def _forward_all(self, data: CellData) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Eval-mode pass over all cells (run under no-grad).

        Returns at least ``{"latent": z}``, and ``"proba"`` if the method has its own assignment head; other
        entries are passed to ``_targets``.
        """
        raise NotImplementedError

    def _targets(self, q: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-cell targets of the clustering stage from ``Q`` of all cells (and the pass ``out``)."""
        return {"p": target_distribution(q)}

    def _extra_terms(self, terms: dict[str, torch.Tensor], phase: str) -> dict[str, torch.Tensor]:
        """Loss terms that need an extra optimiser step first (none by default)."""
        return {}

    def _cluster_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.module.parameters())

    def _pretrain_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.module.parameters(), lr=lr)

    def _cluster_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self._cluster_parameters(), lr=lr)

    def _cluster_learning_rate(self, lr: float) -> float:
        return lr

    def _after_init(self, z0: np.ndarray, labels: np.ndarray) -> None:
        """Hook run after the clusters are initialised (e.g. to initialise a second head)."""

    def _new_module(self) -> None:
        """A freshly initialised module for training (:attr:`module`)."""
        self.module = self._build_module(**self._module_config()).to(self.device)

    # -- one training step
    def _pairs(self, batch: Batch, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Sampled pairs of batch cells ``(rows, cols, target)``.

        Every edge of the batch's subgraph (target 1) plus as many random pairs (target 0), so graph
        reconstruction never needs the ``n x n`` adjacency.
        """
        r, c, t = sample_edges(batch.adj_binary, max(batch.adj_binary.nnz, 1), self.rng if rng is None else rng)
        dev = self.device
        return torch.from_numpy(r).to(dev), torch.from_numpy(c).to(dev), torch.from_numpy(t).to(dev)

    def _loss(self, batch: Batch, targets: dict[str, torch.Tensor], phase: str) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one mini-batch, their sum under ``"loss"``."""
        if phase in self.pair_phases:
            targets = {**targets, "pairs": self._pairs(batch)}
        terms = self.module.loss(batch, targets, phase)
        terms.update(self._extra_terms(terms, phase))
        weights = self.loss_weights.get(phase, {})
        out: dict[str, torch.Tensor] = {}
        for name, value in terms.items():
            if not name.startswith("_"):  # "_" entries are outputs for _extra_terms, not loss terms
                out[name] = value * self.hparams[weights[name]] if name in weights else value
        total = None
        for value in out.values():
            total = value if total is None else total + value
        return {"loss": total, **out}

    def _trained_batch_norms(self) -> list[torch.nn.BatchNorm1d]:
        """The batch norms whose weights the clustering stage trains (those the embedding passes through)."""
        trained = {id(p) for p in self._cluster_parameters()}
        return [m for m in self.module.modules() if isinstance(m, torch.nn.BatchNorm1d) and id(m.weight) in trained]

    def _train_mode(self, phase: str) -> None:
        """Training mode; in the clustering stage after :meth:`_settle_batch_norms`, its batch norms stay fixed.

        The labels, the targets ``P`` and the centres live in the eval-mode embedding, which reads the batch
        norms' running statistics: updated by the stage's graph-local mini-batches, they would move the whole
        embedding under fixed centres. Fixed, the stage trains the function its labels are read from.
        """
        self.module.train()
        if phase == "cluster" and self._norms_settled:
            for layer in self._trained_batch_norms():
                layer.eval()

    @torch.no_grad()
    def _settle_batch_norms(self, batch_size: int) -> None:
        """At scale, re-estimate the running statistics of :meth:`_trained_batch_norms` after pretraining.

        Only when pretraining ran the step budget of large data (fewer than whole epochs, see
        :meth:`default_schedule`): the running averages training leaves then come from a few hundred steps and
        still lean on their initial values (scDEFER's momentum 0.01 leaves them 22 % of the weight after its 150
        steps), so the eval-mode embedding is not the function that was trained, and it keeps moving as the
        averages catch up: scDEFER's clusters collapsed at 12,000-100,000 cells. The statistics become the plain
        average over ``BN_SETTLE_BATCHES`` training-mode mini-batches (weights unchanged; the mini-batches come
        from their own generator, so the training's random streams are untouched), and the clustering stage
        keeps them (:meth:`_train_mode`). With whole epochs (below ``fixed_budget_cells`` cells, or given
        ``pretrain_epochs``) the averages have seen every cell many times and nothing changes.
        """
        layers = self._trained_batch_norms()
        self._norms_settled = bool(layers) and self._epoch_steps.get("pretrain") is not None
        if not self._norms_settled:
            return
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average
        rng = np.random.default_rng([0 if self.random_state is None else self.random_state, 1])
        nps = self.hparams.get("neighbors_per_seed", 3)
        epochs = itertools.chain.from_iterable(
            self.data.epoch_batches(batch_size, rng, neighbors_per_seed=nps) for _ in itertools.count()
        )
        self.module.train()
        for idx in itertools.islice(epochs, self.BN_SETTLE_BATCHES):
            batch = self.data.batch(idx, self.device)
            targets = {"pairs": self._pairs(batch, rng)} if "pretrain" in self.pair_phases else {}
            self.module.loss(batch, targets, "pretrain")
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum

    def _epoch(self, phase: str, batch_size: int, opt, epoch: int, targets_all=None) -> dict[str, float]:
        """One epoch of optimiser steps; returns the mean of the loss and of each term."""
        self._train_mode(phase)
        clip = self.hparams.get("grad_clip")
        name = "pretraining" if phase == "pretrain" else "clustering"
        sums: dict[str, float] = {}
        count = 0
        for idx in self._phase_batches(batch_size, phase):
            batch = self.data.batch(idx, self.device)
            t = {}
            if targets_all is not None:
                rows = torch.from_numpy(batch.index).to(self.device)
                t = {k: v[rows] for k, v in targets_all.items()}
            terms = self._loss(batch, t, phase)
            sums["loss"] = sums.get("loss", 0.0) + optimizer_step(
                terms.pop("loss"), opt, clip=clip, phase=name, epoch=epoch
            )
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
        return {k: v / max(count, 1) for k, v in sums.items()} if count else {"loss": 0.0}

    # -- named steps
    def _pretrain(self, epochs: int, batch_size: int, learning_rate: float, history: dict | None = None) -> None:
        """Build a fresh module and pretrain it for ``epochs`` epochs."""
        self._new_module()
        opt = self._pretrain_optimizer(learning_rate)
        history = self.history if history is None else history
        phase = Phase("Pretraining", epochs, progress_bar=self.progress, history=history, prefix="pretrain")
        phase.run(lambda epoch: self._epoch("pretrain", batch_size, opt, epoch))

    def _pretrained_embedding(self) -> np.ndarray:
        """The embedding the clusters start from (on the latent's direction with ``assign_on="direction"``)."""
        self.module.eval()
        with torch.no_grad():
            z0 = self._forward_all(self.data)["latent"].cpu().numpy()
        if not np.all(np.isfinite(z0)):
            raise TrainingError("The pretrained embedding holds NaN or infinite values; adata was not modified.")
        if getattr(self.config, "assign_on", "latent") == "direction":  # DirectionConfig
            # cluster on the direction of the latent, at its median norm (a latent whose median norm is 0 stays)
            norms = np.linalg.norm(z0, axis=1)
            scale = float(np.median(norms))
            if scale > 0:
                z0 = (z0 / np.maximum(norms, 1e-12)[:, None] * scale).astype(np.float32)
                self.module.direction_scale.fill_(scale)
        return z0

    def _start_clusters(self, z0: np.ndarray) -> np.ndarray:
        """k, the start partition and its centres (set on the module); returns the start labels."""
        labels, centers = self._init_clusters(z0)
        self.module.set_centers(torch.from_numpy(centers).to(self.device))
        self._after_init(z0, labels)
        return labels

    @torch.no_grad()
    def _all_cells(self) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
        """One eval-mode pass: the numpy outputs (labels included) and the targets of the clustering stage."""
        self.module.eval()
        out = self._forward_all(self.data)
        res = self._numpy_outputs(out)
        q = torch.from_numpy(res["proba"]).to(self.device)
        return res, self._targets(q, out)

    def _cluster_stage(self, max_epochs: int, batch_size: int, learning_rate: float, tol: float, labels) -> None:
        """Self-training on the targets until fewer than ``tol`` of the labels change (or ``max_epochs``)."""
        opt = self._cluster_optimizer(self._cluster_learning_rate(learning_rate))
        state = {"labels": labels}
        min_epochs = self.hparams["min_cluster_epochs"]

        def cluster_epoch(epoch: int) -> dict:
            res, targets = self._all_cells()
            delta = float(np.mean(res["labels"] != state["labels"]))
            state["labels"] = res["labels"]
            n_used = float(np.unique(res["labels"]).size)  # clusters holding cells before this epoch's steps
            if epoch >= min_epochs and delta < tol:
                self.converged = True
                return {"delta_label": delta, "n_clusters": n_used, "stop": True}
            out = self._epoch("cluster", batch_size, opt, epoch, targets)
            return {**out, "delta_label": delta, "n_clusters": n_used}

        self.converged = False
        phase = Phase("Clustering", max_epochs, progress_bar=self.progress, history=self.history, prefix="cluster")
        phase.run(cluster_epoch)
        self.train_params["cluster_epochs_trained"] = phase.epochs_run
        if not self.converged and max_epochs > 0:
            logg.info(
                f"    the clustering stage reached max_epochs={max_epochs} before the label change fell under tol"
            )

    def _guard_collapse(self, start_state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Undo a stage that left fewer than :attr:`MIN_KEPT_CLUSTERS` of its clusters (or one) holding cells.

        The stage sharpens the k clusters of its start; ending with most of them empty, it has lost that partition.
        The module returns to its start state and the cells go to the start's centres by the Student-t assignment
        (also for methods with a head of their own, untrained at the start). Returns the final no-grad pass.
        """
        raw = self._infer(self.data)
        n_used = int(np.unique(raw["labels"]).size)
        self.train_params["n_clusters_after_stage"] = n_used
        self.train_params["cluster_stage_undone"] = False
        if n_used >= max(2.0, self.MIN_KEPT_CLUSTERS * self.n_clusters):
            return raw
        logg.warning(
            f"{self.method_name}: the clustering stage left {n_used} of its {self.n_clusters} clusters holding "
            "cells; it was undone, and the cells are assigned to the clusters it started from."
        )
        self.module.load_state_dict(start_state)
        self.train_params["cluster_stage_undone"] = True
        return self._infer(self.data)

    def _fit(self, *, max_epochs, pretrain_epochs, batch_size, learning_rate, tol) -> dict[str, np.ndarray]:
        self._pretrain(pretrain_epochs, batch_size, learning_rate)
        self.train_params["pretrain_epochs_trained"] = pretrain_epochs
        self._settle_batch_norms(batch_size)
        self.train_params["batch_norms_settled"] = self._norms_settled
        labels = self._start_clusters(self._pretrained_embedding())
        start_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self._cluster_stage(max_epochs, batch_size, learning_rate, tol, labels)
        raw = self._guard_collapse(start_state)
        self.centers = self.module.centers.detach().cpu().numpy()
        return raw

    # -- inference
    def _numpy_outputs(self, out: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        z = out["latent"]
        q = None if self.train_params.get("cluster_stage_undone") else out.get("proba")  # see _guard_collapse
        if q is None:
            q = soft_assign(self.module.assign_space(z), self.module.centers)
        res = {"latent": z.cpu().numpy(), "proba": q.cpu().numpy()}
        res["labels"] = res["proba"].argmax(axis=1)
        return res

    @torch.no_grad()
    def _infer(self, data: CellData) -> dict[str, np.ndarray]:
        self.module.eval()
        return self._numpy_outputs(self._forward_all(data))
