"""scAMAC: a multi-scale autoencoder fused by multi-scale attention, clustered by adaptive fuzzy k-means."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scanpy import logging as logg

from scfuse._utils._estimate_k import partition_silhouette
from scfuse._utils._validate import TrainingError
from scfuse.module import ScAMACModule
from scfuse.nn import AdaptiveFuzzyKMeans

from ._base import FusionModel
from ._config import ScAMACConfig
from ._data import CellData
from ._registry import register
from ._trainer import Phase, optimizer_step


@register
class ScAMAC(FusionModel):
    """scAMAC :cite:p:`Tan2024scamac`.

    Fuses three scales of one denoising autoencoder (encoder layer, bottleneck, decoder layer) with a
    multi-scale attention block and clusters the fused embedding with an adaptive (robust) fuzzy k-means.

    Input: log-normalised counts of 3000 highly variable genes (no graph, no counts model). Schedule:
    ``pretrain_epochs`` autoencoder epochs; k and centres from the initial embedding (Leiden at resolution 0.5
    when ``n_clusters`` is None); then ``cluster_passes`` (3) passes of ``max_epochs`` rounds, each round
    ``ae_epochs`` autoencoder epochs, ``fusion_epochs`` fusion-network epochs and one centre-then-membership
    update; before each pass after the first a new start is taken from the trained embedding (from the third
    pass only when its cosine silhouette is higher). ``history["cluster_pass"]`` gives each round's pass,
    ``extras["restart_silhouettes"]`` / ``extras["restarted"]`` the restarts. The losses, layers and schedule
    are on the method's documentation page (``docs/methods/scamac.md``).

    * ``uns[key]["extras"]``: ``membership_entropy`` (mean entropy of the final memberships, nats) and
      ``membership_entropy_max`` (``log k``). ``return_reconstruction=True`` also writes the denoised
      log-normalised reconstruction to ``layers[f"{key}_reconstruction"]`` (genes outside the model are NaN).

    What scfuse changed from the authors' code, and why, is on the same page.

    Paper: Tan D, Yang C, Wang J, Su Y, Zheng C-H. scAMAC: self-supervised clustering of scRNA-seq data based on
    adaptive multi-scale autoencoder. Briefings in Bioinformatics 25(2): bbae068 (2024). doi:10.1093/bib/bbae068
    """

    method_name = "scamac"
    paper = (
        "Tan D, Yang C, Wang J, Su Y, Zheng C-H. scAMAC: self-supervised clustering of scRNA-seq data based on "
        "adaptive multi-scale autoencoder. Brief Bioinform 25(2): bbae068 (2024)."
    )
    n_top_genes = 3000
    input_transform = "log"
    min_cells = 0.05
    uses_counts = False
    uses_graph = False
    graph_method = "knn"  # unused (no graph); the harness builds one anyway
    default_batch_size = 128
    default_learning_rate = 1e-4
    default_pretrain_steps = 300
    default_pretrain_epoch_range = (1, 50)
    default_cluster_steps = 100
    default_cluster_epoch_range = (3, 50)
    default_resolution = 0.5
    module_class = ScAMACModule
    module_hparams = (
        "hidden",
        "n_latent",
        "n_heads",
        "channel_dim",
        "attention_dropout",
        "negative_slope",
        "noise",
        "identity_init",
    )
    config_class = ScAMACConfig

    def __init__(self, adata, **kwargs) -> None:
        super().__init__(adata, **kwargs)
        self.extra_layers: dict[str, np.ndarray] = {}

    @property
    def fkm(self) -> AdaptiveFuzzyKMeans:
        return AdaptiveFuzzyKMeans(gamma=self.hparams["gamma"], eps=self.hparams["eps"])

    def _chunks(self, n: int) -> list[np.ndarray]:
        """Equal-size chunks (about ``batch_size`` cells) of a fixed random order of the cells."""
        bs = self.train_params.get("batch_size", self.default_batch_size)
        order = np.random.default_rng(self.random_state).permutation(n)
        return np.array_split(order, max(1, int(np.ceil(n / bs))))

    def _epoch_batches(self, batch_size: int, phase: str) -> list[np.ndarray]:
        """Random (not graph-local) mini-batches, at most the phase's steps per epoch of the default schedule."""
        n = self.data.n
        perm = self.rng.permutation(n)
        if batch_size >= n:
            return [perm]
        return np.array_split(perm, int(np.ceil(n / batch_size)))[: self._epoch_steps.get(phase)]

    def _x(self, data: CellData, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(data.input_rows(idx)).to(self.device)

    @torch.no_grad()
    def _forward_all(self, data: CellData, *, reconstruction: bool = False) -> dict[str, torch.Tensor]:
        """Eval-mode, no-grad pass over all cells in chunks: ``Z`` (and the clean reconstruction)."""
        self.module.eval()
        n = data.n
        z = torch.empty(n, self.module.centers.shape[1], device=self.device)
        rec = torch.empty(n, data.n_features, device=self.device) if reconstruction else None
        for idx in self._chunks(n):
            t = torch.from_numpy(idx).to(self.device)
            za, zb, zc, xr = self.module.autoencode(self._x(data, idx))
            z[t] = self.module.fuse(za, zb, zc)
            if rec is not None:
                rec[t] = xr
        return {"latent": z, "reconstruction": rec}

    def _memberships(self, z: torch.Tensor, centers: torch.Tensor):
        d = self.fkm.distances(z, centers)
        return self.fkm.log_memberships(d), self.fkm.weights(d)

    def _ae_epoch(self, opt, batch_size: int, u: torch.Tensor | None, phase: str, epoch: int) -> float:
        self.module.train()
        total, count = 0.0, 0
        w = self.hparams["feedback_weight"]
        for idx in self._epoch_batches(batch_size, "pretrain" if u is None else "cluster"):
            ub = None if u is None or w <= 0 else u[torch.from_numpy(idx).to(self.device)]
            terms = self.module.loss(self._x(self.data, idx), ub)
            loss = terms["reconstruction"] + terms["agreement"]
            if "feedback" in terms:
                loss = loss + w * terms["feedback"]
            total += optimizer_step(loss, opt, phase=phase, epoch=epoch)
            count += 1
        return total / max(count, 1)

    def _fusion_epoch(self, opt, batch_size: int, u: torch.Tensor, h: torch.Tensor, epoch: int) -> float:
        self.module.train()
        total, count = 0.0, 0
        centers = self.module.centers
        for idx in self._epoch_batches(batch_size, "cluster"):
            t = torch.from_numpy(idx).to(self.device)
            with torch.no_grad():
                za, zb, zc, _ = self.module.autoencode(self._x(self.data, idx))
            z = self.module.fuse(za, zb, zc)
            loss = self.fkm.loss(z, centers, u[t], h[t])
            total += optimizer_step(loss, opt, phase="fusion", epoch=epoch)
            count += 1
        return total / max(count, 1)

    def _fit(self, *, max_epochs, pretrain_epochs, batch_size, learning_rate, tol) -> None:
        stage = _FuzzyStage(batch_size=batch_size, n_rounds=max(max_epochs, 1))
        self._pretrain(stage, pretrain_epochs, learning_rate)
        self._take(stage, self._new_start(stage.z.cpu().numpy()))
        self._cluster_stage(stage, max_epochs)
        self.train_params["pretrain_epochs_trained"] = pretrain_epochs
        deltas = self.history.get("cluster_delta_label", [])
        self.converged = bool(deltas) and deltas[-1] < tol
        self.centers = self.module.centers.cpu().numpy()
        self._finish()

    def _pretrain(self, stage: _FuzzyStage, epochs: int, learning_rate: float) -> None:
        """Autoencoder warm-up (reconstruction terms only); ``stage.z`` becomes the initial embedding."""
        self.module = self._build_module(**self._module_config()).to(self.device)
        stage.ae_opt = torch.optim.Adam(self.module.ae_parameters(), lr=learning_rate)
        phase = Phase("Pretraining", epochs, progress_bar=self.progress, history=self.history, prefix="pretrain")
        phase.run(lambda epoch: {"loss": self._ae_epoch(stage.ae_opt, stage.batch_size, None, "pretraining", epoch)})
        stage.z = self._forward_all(self.data)["latent"]
        if not torch.isfinite(stage.z).all():
            raise TrainingError("The initial embedding holds NaN or infinite values; adata was not modified.")

    def _new_start(self, z: np.ndarray) -> dict:
        """Centres from the start rule on ``z`` and the memberships and labels they give."""
        centers = torch.from_numpy(self._init_clusters(z)[1]).to(self.device)
        log_u, _ = self._memberships(torch.from_numpy(z).to(self.device), centers)
        return {"centers": centers, "u": log_u.exp(), "labels": log_u.argmax(1).cpu().numpy()}

    def _take(self, stage: _FuzzyStage, start: dict) -> None:
        self.module.centers = start["centers"]
        stage.u, stage.labels = start["u"], start["labels"]

    def _restart(self, stage: _FuzzyStage, guarded: bool) -> None:
        """A new start on the trained embedding.

        ``guarded``: kept only when its labels fit that embedding better (cosine silhouette) than the labels the
        head holds; otherwise the head goes on from there.
        """
        zn = stage.z.cpu().numpy()
        kept = (self.n_clusters, self.n_clusters_estimated, self.init_info)
        current = partition_silhouette(zn, stage.labels, random_state=self.random_state)
        start = self._new_start(zn)
        candidate = partition_silhouette(zn, start["labels"], random_state=self.random_state)
        taken = not guarded or candidate > current
        if taken:
            self._take(stage, start)
        else:  # _init_clusters recorded the refused start's k and how it was found: restore the held ones
            self.n_clusters, self.n_clusters_estimated, self.init_info = kept
        self.extras.setdefault("restart_silhouettes", []).append([current, candidate])
        self.extras.setdefault("restarted", []).append(taken)

    def _round(self, stage: _FuzzyStage, epoch: int) -> dict:
        """One round: autoencoder epochs, fusion-network epochs, one centre-then-membership update."""
        h = self.hparams
        for g in stage.fusion_opt.param_groups:  # cosine annealing to 0 over the rounds
            g["lr"] = h["fusion_lr"] * 0.5 * (1.0 + math.cos(math.pi * epoch / stage.n_rounds))
        bs = stage.batch_size
        ae_loss = [self._ae_epoch(stage.ae_opt, bs, stage.u, "autoencoder", epoch) for _ in range(h["ae_epochs"])]
        _, hw = self._memberships(self._forward_all(self.data)["latent"], self.module.centers)
        fu_loss = [self._fusion_epoch(stage.fusion_opt, bs, stage.u, hw, epoch) for _ in range(h["fusion_epochs"])]
        z = self._forward_all(self.data)["latent"]
        if not torch.isfinite(z).all():
            raise TrainingError(f"The embedding became non-finite in round {epoch + 1}; adata was not modified.")
        stage.z = z  # nothing trains between this pass and the next round or restart
        d = self.fkm.distances(z, self.module.centers)
        self.module.centers = self.fkm.update_centers(z, stage.u, self.fkm.weights(d), self.module.centers)
        log_u, _ = self._memberships(z, self.module.centers)
        stage.u = log_u.exp()
        new = log_u.argmax(1).cpu().numpy()
        delta = float(np.mean(new != stage.labels))
        stage.labels = new
        ae = float(np.mean(ae_loss)) if ae_loss else float("nan")
        fu = float(np.mean(fu_loss)) if fu_loss else float("nan")
        loss = (0.0 if not ae_loss else ae) + (0.0 if not fu_loss else fu)
        return {"loss": loss, "ae_loss": ae, "fusion_loss": fu, "delta_label": delta, "pass": stage.pass_}

    def _cluster_stage(self, stage: _FuzzyStage, max_epochs: int) -> None:
        """``cluster_passes`` passes of ``max_epochs`` rounds; a new start before each pass after the first."""
        stage.fusion_opt = torch.optim.SGD(self.module.fusion_parameters(), lr=self.hparams["fusion_lr"])
        epochs_run = 0
        for p in range(int(self.hparams["cluster_passes"])):
            if p > 0:  # a new start from the embedding the previous pass trained: the first always (the warm-up
                # embedding it replaces is weak), later ones only when they fit better
                self._restart(stage, guarded=p > 1)
            stage.pass_ = p
            phase = Phase("Clustering", max_epochs, progress_bar=self.progress, history=self.history, prefix="cluster")
            phase.run(lambda epoch: self._round(stage, epoch))
            epochs_run += phase.epochs_run
        self.train_params["cluster_epochs_trained"] = epochs_run

    def _finish(self) -> None:
        """Membership entropy and the optional reconstruction layer of the trained model."""
        out = self._forward_all(self.data, reconstruction=bool(self.hparams["return_reconstruction"]))
        log_u, _ = self._memberships(out["latent"], self.module.centers)
        ent = float(self.fkm.entropy(log_u))
        self.extras["membership_entropy"] = ent
        self.extras["membership_entropy_max"] = float(np.log(max(self.n_clusters, 1)))
        self.extra_layers = {}
        if out["reconstruction"] is not None:
            full = np.full((self.data.n, len(self.preprocessor.var_names)), np.nan, dtype=np.float32)
            full[:, self.preprocessor.genes] = out["reconstruction"].cpu().numpy()
            self.extra_layers["reconstruction"] = full
        logg.info(f"    mean membership entropy {ent:.3g} (max {self.extras['membership_entropy_max']:.3g})")

    @torch.no_grad()
    def _infer(self, data: CellData) -> dict[str, np.ndarray]:
        z = self._forward_all(data)["latent"]
        log_u, _ = self._memberships(z, self.module.centers)
        proba = log_u.exp()
        return {"latent": z.cpu().numpy(), "proba": proba.cpu().numpy(), "labels": log_u.argmax(1).cpu().numpy()}


@dataclass
class _FuzzyStage:
    """What the steps of scAMAC's clustering stage pass on: optimisers, memberships, labels, the embedding."""

    batch_size: int
    n_rounds: int
    ae_opt: torch.optim.Optimizer | None = None
    fusion_opt: torch.optim.Optimizer | None = None
    u: torch.Tensor | None = None
    labels: np.ndarray | None = None
    z: torch.Tensor | None = None
    pass_: int = 0
