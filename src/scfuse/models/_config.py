"""The hyper-parameters of a method: one frozen dataclass per method, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from scfuse._utils._estimate_k import GIVEN_K_STARTS, K_SCAN_VIEWS, check_choice
from scfuse._utils._validate import check_positive_int
from scfuse.nn import AdaptiveFuzzyKMeans


@dataclass(frozen=True)
class MethodConfig:
    """Hyper-parameters every method has; a method's config subclasses this (or :class:`~scfuse.models.TwoStageConfig`)."""

    min_cluster_size: int = 1
    """Final clusters with fewer cells are dissolved into the cells' next most probable cluster."""
    given_k_start: str = "leiden"
    """Start of the clustering stage for a given ``n_clusters``, ``"leiden"`` (shared default), ``"silhouette"`` or
    ``"centres"``."""
    k_scan_view: str = "embedding"
    """Where the resolution scan that estimates k (``n_clusters=None``) scores the Leiden partitions of the
    embedding: ``"embedding"`` (cosine silhouette on the embedding) or ``"data"`` (Euclidean silhouette on the PCA
    of the z-scored model genes of the scored cells, centred per batch)."""

    def __post_init__(self) -> None:
        check_positive_int(self.min_cluster_size, "min_cluster_size")
        check_choice(self.given_k_start, GIVEN_K_STARTS, "given_k_start")
        check_choice(self.k_scan_view, K_SCAN_VIEWS, "k_scan_view")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{name: default}`` of every field, in field order."""
        return {f.name: f.default for f in fields(cls)}

    def as_dict(self) -> dict[str, Any]:
        """``{name: value}`` of every field, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TwoStageConfig(MethodConfig):
    """Hyper-parameters of the DEC-style schedule (:class:`~scfuse.models.TwoStageModel`)."""

    min_cluster_epochs: int = 5
    """The clustering stage runs at least this many epochs before it may stop on ``tol``."""
    grad_clip: float | None = None
    """Gradient norm clipping of the main optimiser (``None``: none)."""
    neighbors_per_seed: int = 3
    """Graph neighbours drawn per seed cell when a graph-local mini-batch is built."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(self.min_cluster_epochs, "min_cluster_epochs", minimum=0)
        check_positive_int(self.neighbors_per_seed, "neighbors_per_seed", minimum=0)
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be None or positive, got {self.grad_clip!r}.")


@dataclass(frozen=True)
class AttentionAEConfig(TwoStageConfig):
    """Hyper-parameters of :class:`~scfuse.models.AttentionAE`."""

    hidden: tuple[int, int] = (256, 64)
    """Widths of the encoder's two hidden layers (the decoder mirrors them)."""
    n_latent: int = 16
    """Dimensions of the embedding."""
    n_heads: int = 8
    """Heads of the two cross-attention blocks."""
    attention_dropout: float = 0.2
    """Dropout on the attention weights."""
    noise_std: float = 0.1
    """Standard deviation of the Gaussian noise added to the encoder's inputs while training."""
    graph_weight: float = 0.1
    """Weight of the graph reconstruction in pretraining."""
    cluster_zinb_weight: float = 0.1
    """Weight of the ZINB loss in the clustering stage."""
    cluster_graph_weight: float = 0.01
    """Weight of the graph reconstruction in the clustering stage."""
    grad_clip: float | None = 3.0


@dataclass(frozen=True)
class DirectionConfig(TwoStageConfig):
    """A DEC-style method that can cluster on the direction of its latent (``scasdc``, ``scdefer``)."""

    assign_on: str = "latent"
    """Where the clustering start and the Student-t assignment work, ``"latent"`` or ``"direction"``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.assign_on not in ("latent", "direction"):
            raise ValueError(f"assign_on must be 'latent' or 'direction', not {self.assign_on!r}.")


@dataclass(frozen=True)
class ScASDCConfig(DirectionConfig):
    """Hyper-parameters of :class:`~scfuse.models.ScASDC`."""

    hidden: tuple[int, int, int] = (1000, 1000, 4000)
    """Widths of the autoencoder's hidden layers (the decoder mirrors them)."""
    n_latent: int = 10
    """Dimensions of the embedding."""
    n_heads: int = 8
    """Heads of the self-attention blocks."""
    head_dims: tuple[int | None, int | None] = (125, None)
    """Per-head widths of the two attention blocks (``None``: width / heads)."""
    alpha: float = 0.5
    """Share of the GCN branch in each fused layer input."""
    pretrain_zinb_weight: float = 0.5
    """Weight of the ZINB loss in pretraining."""
    kl_weight: float = 0.1
    """Weight of KL(P||Q) in the clustering stage."""
    head_weight: float = 0.01
    """Weight of KL(P||head) in the clustering stage."""
    ae_weight: float = 1.0
    """Weight of the autoencoder's reconstruction in the clustering stage."""
    graph_weight: float = 0.01
    """Weight of the graph reconstruction in the clustering stage."""
    gcn_recon_weight: float = 0.01
    """Weight of the GCN decoder's reconstruction in the clustering stage."""
    zinb_weight: float = 0.5
    """Weight of the ZINB loss in the clustering stage."""
    cluster_learning_rate: float = 1e-4
    """Learning rate of the autoencoder and centres in the clustering stage."""
    gcn_learning_rate: float | None = 1e-3
    """Learning rate of the GCN branch in the clustering stage (``None``: ``cluster_learning_rate``)."""
    given_k_start: str = "silhouette"  # exception to the shared "leiden": unifying cost 0.031 true-k ARI (benchmarks)
    assign_on: str = "direction"
    head_decoder_grad: bool = False
    """Let the GCN decoder's losses reach the head and the GCN encoder."""


@dataclass(frozen=True)
class ScDEFERConfig(DirectionConfig):
    """Hyper-parameters of :class:`~scfuse.models.ScDEFER`."""

    hidden: tuple[int, int] = (1024, 128)
    """Widths of the two branches' hidden layers."""
    n_latent: int = 24
    """Dimensions of the embedding."""
    hops: int = 3
    """Hops ``K`` of the topology-adaptive graph convolution."""
    sigma: float = 0.1
    """Share of the graph branch in the fused layers."""
    dropout: float = 0.01
    """Dropout of the MLP branch."""
    pretrain_graph_weight: float = 1.0
    """Weight of the graph reconstruction in pretraining."""
    pretrain_zinb_weight: float = 0.5
    """Weight of the ZINB loss in pretraining."""
    graph_weight: float = 0.3
    """Weight of the graph reconstruction in the clustering stage."""
    zinb_weight: float = 0.1
    """Weight of the ZINB loss in the clustering stage."""
    kl_weight: float = 0.5
    """Weight of KL(P||Q) on the fused latent."""
    bce_graph_weight: float = 0.1
    """Weight of the graph branch's BCE to its own target."""
    bce_mlp_weight: float = 0.1
    """Weight of the MLP branch's BCE to its own target."""
    cluster_learning_rate: float = 1e-4
    """Learning rate of the clustering stage."""
    given_k_start: str = "centres"  # exception to the shared "leiden": unifying cost 0.021 true-k ARI (benchmarks)
    assign_on: str = "direction"


@dataclass(frozen=True)
class ScAMACConfig(MethodConfig):
    """Hyper-parameters of :class:`~scfuse.models.ScAMAC`."""

    hidden: int = 1500
    """Width of the autoencoder's hidden layers."""
    n_latent: int = 500
    """Dimensions of the bottleneck and of the fused embedding."""
    n_heads: int = 3
    """Heads of the multi-scale attention."""
    channel_dim: int = 55
    """Width of the channel attention."""
    attention_dropout: float = 0.1
    """Dropout on the attention weights."""
    negative_slope: float = 0.01
    """Slope of the LeakyReLU activations."""
    noise: float = 1.0
    """Scale of the uniform noise added to the autoencoder's input while training."""
    identity_init: bool = True
    """Initialise every linear layer as a rectangular identity (as the authors' script)."""
    gamma: float = 1.0
    """Fuzziness of the memberships."""
    eps: float = 0.01
    """Robustness constant of the adaptive weights."""
    ae_epochs: int = 1
    """Autoencoder epochs per round of the clustering stage."""
    fusion_epochs: int = 1
    """Fusion-network epochs per round of the clustering stage."""
    fusion_lr: float = 1e-4
    """Learning rate of the fusion network (SGD, cosine schedule)."""
    feedback_weight: float = 1.0
    """Weight of the adaptive feedback term of the autoencoder loss."""
    return_reconstruction: bool = False
    """Also write the denoised reconstruction to ``layers[f"{key}_reconstruction"]``."""
    cluster_passes: int = 3
    """Passes of the clustering stage (a new start before each pass after the first)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, minimum in (("ae_epochs", 0), ("fusion_epochs", 0), ("cluster_passes", 1)):
            check_positive_int(getattr(self, name), name, minimum=minimum)
        if self.n_latent < self.n_heads:
            raise ValueError(f"n_latent={self.n_latent} must be at least n_heads={self.n_heads}.")
        AdaptiveFuzzyKMeans(gamma=self.gamma, eps=self.eps)  # checks gamma and eps


@dataclass(frozen=True)
class ScCAGNConfig(TwoStageConfig):
    """Hyper-parameters of :class:`~scfuse.models.ScCAGN`."""

    hidden: tuple[int, int, int] = (100, 200, 200)
    """Widths of the autoencoder's hidden layers (the GCN uses the first two)."""
    n_latent: int = 8
    """Dimensions of the embedding."""
    n_heads: int = 4
    """Heads of the cross-attention."""
    phi: float | None = None
    """``None``: GCN layers added to the autoencoder's; a number in [0, 1]: ``(1 - phi) AE + phi GCN``."""
    n_neighbors: int = 10
    """Neighbours kept per cell when the kNN graph is pruned."""
    prune: bool = True
    """Prune the kNN graph (mean + std of each cell's neighbour distances)."""
    n_restarts: int = 2
    """Pretrained networks; the one with the best label-free silhouette is kept."""
    pretrain_fused: bool = True
    """Pretrain the fused network (``False``: the plain autoencoder, as the authors' code)."""
    attention_residual: bool = False
    """Add ``z`` to the attention output."""
    pretrain_lr: float | None = None
    """Learning rate of pretraining (``None``: ``learning_rate``)."""
    disc_hidden: int = 64
    """Width of the discriminator's hidden layers."""
    disc_lr: float = 2e-4
    """Learning rate of the discriminator."""
    adversarial_weight: float = 0.0
    """Weight of the encoder's adversarial term (0.5 in the paper)."""
    reconstruction_weight: float = 0.5
    """Weight of the reconstruction."""
    kl_weight: float = 1e-4
    """Weight of KL(P||Q)."""
    kl_pred_weight: float = 1e-3
    """Weight of KL(P||GCN head)."""
    tau: float = 0.5
    """Sharpening of the target, ``p ∝ q^(1/tau^2) / sum_i q^(1/tau)``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(self.n_restarts, "n_restarts")
        check_positive_int(self.n_neighbors, "n_neighbors")
        if isinstance(self.tau, bool) or not (isinstance(self.tau, int | float) and self.tau > 0):
            raise ValueError(f"tau must be a positive number, got {self.tau!r}.")
        if self.phi is not None and not (0.0 <= float(self.phi) <= 1.0):
            raise ValueError(f"phi must be None or in [0, 1], got {self.phi!r}.")
