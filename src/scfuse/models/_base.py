"""The model API shared by every method: data set-up, training, embedding, prediction, save and load."""

from __future__ import annotations

import copy as _copy
import itertools
import json
import os
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from scanpy import logging as logg

from .._utils._device import resolve_device
from .._utils._random import deterministic_algorithms, resolve_seed, seed_everything, torch_threads
from .._utils._serialize import decode, encode
from .._utils._validate import batch_codes, check_adata, check_n_clusters, check_positive_int, get_counts
from ._data import CellData, Preprocessor, get_graph, resolve_mask_var
from ._trainer import show_progress

if TYPE_CHECKING:
    from anndata import AnnData

_REGISTRY: dict[str, type[FusionModel]] = {}

#: version of the saved-model layout written by :meth:`FusionModel.save`; :meth:`FusionModel.load` reads only this
#: one (1 was scfuse 0.1's single pickled ``model.pt``)
MODEL_FORMAT_VERSION = 2
_MODEL_FILE, _WEIGHTS_FILE, _ARRAYS_FILE = "model.json", "weights.pt", "arrays.npz"


def _read_meta(d: Path) -> dict[str, Any]:
    """``model.json`` of a saved model, after checking that the folder holds the current format."""
    f = d / _MODEL_FILE
    if not f.is_file():
        if (d / "model.pt").is_file():
            raise ValueError(
                f"{d} holds a model.pt written by an older scfuse (model format 1, a pickle, which is not loaded "
                f"because loading it could run code); this scfuse reads model format {MODEL_FORMAT_VERSION}. "
                "Retrain the model, or load it with the scfuse that wrote it and save it again with this one."
            )
        raise FileNotFoundError(f"No saved model at {d} ({_MODEL_FILE} is missing).")
    try:
        meta = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{f} is not valid JSON: {err}") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != MODEL_FORMAT_VERSION:
        written = meta.get("scfuse_version", "an unknown version") if isinstance(meta, dict) else "an unknown version"
        raise ValueError(
            f"{d} holds model format {version!r} (written by scfuse {written}); this scfuse reads model format "
            f"{MODEL_FORMAT_VERSION}. Load it with a matching scfuse, or retrain and save it again."
        )
    return meta


def register(cls: type[FusionModel]) -> type[FusionModel]:
    """Class decorator: make a model available as ``scfuse.tl.cluster(method=cls.method_name)``."""
    _REGISTRY[cls.method_name] = cls
    return cls


def get_model_class(method: str) -> type[FusionModel]:
    """The model class registered under ``method`` (a name of :func:`scfuse.tl.show_methods`).

    Examples
    --------
    >>> import scfuse
    >>> scfuse.models.get_model_class("attentionae").__name__
    'AttentionAE'
    >>> scfuse.models.get_model_class("attentionae").graph_method  # weights for scfuse.pp.build_graph(method=...)
    'gauss'
    """
    if method not in _REGISTRY:
        raise ValueError(f"Unknown method {method!r}. Known methods: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[method]


def registered_methods() -> dict[str, type[FusionModel]]:
    """All registered methods: ``{method name: model class}``.

    Examples
    --------
    >>> import scfuse
    >>> "attentionae" in scfuse.models.registered_methods()
    True
    """
    return dict(_REGISTRY)


class FusionModel:
    """Base class of the fusion clustering models.

    A subclass sets the class attributes below (its torch module in ``module_class``) and implements
    ``_fit`` (the whole training schedule) and ``_infer`` (a no-grad pass over all cells that returns the
    embedding and soft assignments).

    :func:`scfuse.tl.cluster` creates and trains a model and writes its results into the AnnData. Use a model
    class directly to keep the trained model: embed or assign new cells (same genes, own cell graph), save it
    and load it again.

    Examples
    --------
    >>> import tempfile
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata)
    >>> model = scfuse.models.AttentionAE(adata, n_clusters=3)
    >>> model = model.train(max_epochs=2, pretrain_epochs=2, progress_bar=False)
    >>> model.get_latent_representation().shape
    (300, 16)
    >>> labels = model.predict()  # or predict(new_adata), predict(soft=True)
    >>> path = tempfile.mkdtemp()
    >>> model.save(path, overwrite=True)
    >>> model = scfuse.models.AttentionAE.load(path, adata)
    """

    method_name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: defaults of the preprocessing
    n_top_genes: ClassVar[int | None] = 2000
    input_transform: ClassVar[str] = "zscore"
    min_cells: ClassVar[float] = 1
    uses_counts: ClassVar[bool] = True
    uses_graph: ClassVar[bool] = True
    adjacency: ClassVar[str] = "sym"
    #: edge weights of the graph the method was published with (``scfuse.pp.build_graph(method=...)``)
    graph_method: ClassVar[str] = "knn"
    #: default hyper-parameters (architecture, loss weights, schedule); overridable by keyword
    default_hparams: ClassVar[dict[str, Any]] = {}
    #: default epochs of train() give about ``*_steps`` optimiser steps, clipped to ``*_epoch_range``
    #: (a step is one mini-batch; small data sets get more epochs, large ones fewer)
    default_pretrain_steps: ClassVar[int] = 300
    default_pretrain_epoch_range: ClassVar[tuple[int, int]] = (10, 200)
    default_cluster_steps: ClassVar[int] = 200
    default_cluster_epoch_range: ClassVar[tuple[int, int]] = (5, 50)
    default_batch_size: ClassVar[int] = 256
    #: largest mini-batch; a larger ``batch_size`` is capped (a batch of all cells would make attention and
    #: in-batch similarities n x n)
    max_batch_size: ClassVar[int] = 2048
    #: above this many cells the default epochs are not raised to the lower end of ``*_epoch_range``: the
    #: schedule is about ``*_steps`` optimiser steps (at least one epoch), so training time stops growing with n
    #: once one epoch holds more steps than that
    fixed_budget_cells: ClassVar[int] = 10_000
    #: cells per chunk of the no-grad inference pass (the only dense ``cells x genes`` block it makes)
    inference_chunk_size: ClassVar[int] = 4096
    #: principal components of the model input in which new cells find their nearest training cells
    reference_pcs: ClassVar[int] = 50
    default_learning_rate: ClassVar[float] = 1e-3
    #: the torch module of the method, built with ``n_input``, ``n_clusters`` and the hyper-parameters named in
    #: ``module_hparams`` (list values become tuples)
    module_class: ClassVar[type[torch.nn.Module] | None] = None
    module_hparams: ClassVar[tuple[str, ...]] = ()
    #: Leiden resolution used with ``n_clusters=None`` when ``resolution`` is not given: ``"scan"`` (the
    #: silhouette-guided scan of resolutions 0.05-1.0, see :func:`scfuse.tl.cluster`) or a fixed number
    default_resolution: ClassVar[float | str] = "scan"

    def __init__(
        self,
        adata: AnnData,
        *,
        n_clusters: int | None = None,
        resolution: float | str | None = None,
        layer: str | None = "counts",
        neighbors_key: str | None = "scfuse",
        obsp: str | None = None,
        n_top_genes: int | None = None,
        mask_var: str | np.ndarray | None = "highly_variable",
        batch_key: str | None = None,
        random_state: int | None = 0,
        **hparams: Any,
    ) -> None:
        check_adata(adata)
        unknown = set(hparams) - set(self.default_hparams)
        if unknown:
            raise TypeError(
                f"Unknown argument(s) for method {self.method_name!r}: {sorted(unknown)}. "
                f"Valid model arguments: {sorted(self.default_hparams)}."
            )
        self.hparams = {**_copy.deepcopy(self.default_hparams), **hparams}
        from ..tl._estimate_k import check_given_k_start

        check_given_k_start(self.hparams.get("given_k_start", "silhouette"))
        if self.hparams.get("assign_on", "latent") not in ("latent", "direction"):
            raise ValueError(f"assign_on must be 'latent' or 'direction', not {self.hparams['assign_on']!r}.")
        self.n_clusters_requested = check_n_clusters(n_clusters, adata.n_obs)
        self.resolution = self._check_resolution(self.default_resolution if resolution is None else resolution)
        self.layer = layer
        self.neighbors_key = neighbors_key
        self.obsp = obsp
        self.batch_key = batch_key
        #: batch codes of the training cells (``None`` without ``batch_key``): the k scan's graph is balanced too
        self.batches = batch_codes(adata, batch_key)[0] if batch_key is not None else None
        self.random_state = resolve_seed(random_state)
        if adata.n_obs < 10:
            raise ValueError(f"adata has {adata.n_obs} cells; at least 10 are needed to train a model.")
        counts, self.counts_source = get_counts(adata, layer)
        graph, self.graph_info = (
            get_graph(adata, neighbors_key, obsp, weights=self.graph_method, batch_key=batch_key)
            if self.uses_graph
            else (None, {})
        )
        self.preprocessor = Preprocessor(
            n_top_genes=self.n_top_genes if n_top_genes is None else check_positive_int(n_top_genes, "n_top_genes", minimum=2),
            input_transform=self.input_transform,
            min_cells=self.min_cells,
        )
        gene_mask, self.mask_var = resolve_mask_var(adata, mask_var)
        self.preprocessor.fit(counts, adata.var_names, gene_mask)
        self.data = self._make_data(counts, graph)
        #: batch covariates of the count decoder (one-hot batch; 0 without batch_key or count decoder)
        self.n_covariates = int(self.batches.max()) + 1 if self.batches is not None and self.uses_counts else 0
        if self.n_covariates:
            self.data.covariates = np.eye(self.n_covariates, dtype=np.float32)[self.batches]
        self.module: torch.nn.Module | None = None
        self.centers: np.ndarray | None = None
        self.n_clusters: int | None = None
        self.n_clusters_estimated = False
        self.history: dict[str, list[float]] = {}
        self.extras: dict[str, Any] = {}
        self.converged = False
        self.is_trained = False
        self.train_params: dict[str, Any] = {}
        self.device = torch.device("cpu")
        self._results: dict[str, np.ndarray] | None = None

    def _phase_batches(self, batch_size: int, phase: str):
        """Index arrays of one epoch of ``phase`` (``"pretrain"`` or ``"cluster"``): graph-local mini-batches,
        at most the phase's steps per epoch of the default schedule (:meth:`default_schedule`)."""
        gen = self.data.epoch_batches(batch_size, self.rng, neighbors_per_seed=self.hparams.get("neighbors_per_seed", 3))
        return itertools.islice(gen, self._epoch_steps.get(phase))

    @staticmethod
    def _check_resolution(resolution: float | str) -> float | None:
        """A positive number, or ``None`` for ``"scan"``."""
        if isinstance(resolution, str) and resolution == "scan":
            return None
        if isinstance(resolution, bool) or not (isinstance(resolution, int | float) and resolution > 0):
            raise ValueError(f'resolution must be a positive number, "scan" or None, got {resolution!r}.')
        return float(resolution)

    # ------------------------------------------------------------------ data
    def _make_data(self, counts, graph) -> CellData:
        logx, raw, sf = self.preprocessor.transform(counts)
        if graph is None:
            import scipy.sparse as sp

            graph = sp.csr_matrix((logx.shape[0], logx.shape[0]), dtype=np.float32)
        return CellData(
            logx,
            raw if self.uses_counts else None,
            sf if self.uses_counts else None,
            graph,
            to_input=self.preprocessor.dense_input,
            adjacency=self.adjacency,
            chunk_size=self.inference_chunk_size,
        )

    def _data_for(self, adata: AnnData | None, *, same_genes: bool = False) -> CellData:
        """The model's data for the cells of ``adata``. Genes are matched by name (:meth:`_aligned_counts`);
        ``same_genes`` requires the training genes in the training order (the training data given to :meth:`load`)."""
        if adata is None:
            return self.data
        check_adata(adata)
        counts = self._counts_of(adata, same_genes=same_genes)
        # the training data (same_genes) is checked as at training; a query's own graph need not be balanced
        batch_key = self.batch_key if same_genes else None
        graph, info = (
            get_graph(adata, self.neighbors_key, self.obsp, weights=self.graph_method, batch_key=batch_key)
            if self.uses_graph
            else (None, {})
        )
        if same_genes:  # the training data (load): its graph's record, as after training
            self.graph_info = info
        return self._make_data(counts, graph)

    def _counts_of(self, adata: AnnData, *, same_genes: bool = False):
        """The counts of ``adata`` in the model's gene order (:meth:`_aligned_counts`); ``same_genes`` refuses
        other genes or another order instead of aligning them."""
        counts, _ = get_counts(adata, self.layer)
        names = [str(v) for v in adata.var_names]
        if names == self.preprocessor.var_names:
            return counts
        if same_genes:
            raise ValueError(
                "adata.var_names differ from the genes the model was trained on "
                f"({adata.n_vars} vs {len(self.preprocessor.var_names)} genes, or another order); "
                "pass the training data."
            )
        return self._aligned_counts(counts, names)

    def _aligned_counts(self, counts, names: list[str]):
        """``counts`` with the training genes as columns, in the training order: genes of ``adata`` the model does
        not know are dropped, training genes missing from ``adata`` are zero (with a warning giving how many of
        the model's genes are missing)."""
        import pandas as pd
        import scipy.sparse as sp

        index = pd.Index(names)
        if index.has_duplicates:
            raise ValueError("adata.var_names has duplicates; make them unique (adata.var_names_make_unique()).")
        pos = index.get_indexer(self.preprocessor.var_names)  # -1 where a training gene is missing
        model_missing = float(np.mean(pos[self.preprocessor.genes] < 0))
        if model_missing == 1.0:
            raise ValueError("None of the genes the model reads is in adata.var_names; the data cannot be mapped.")
        if model_missing > 0:
            logg.warning(
                f"{model_missing:.1%} of the {len(self.preprocessor.genes)} genes the model reads are missing from "
                "adata; they are set to zero."
            )
        present = np.flatnonzero(pos >= 0)
        # columns of adata -> training columns, as a sparse 0/1 matrix (missing training genes stay zero)
        move = sp.csr_matrix(
            (np.ones(present.size, dtype=np.float32), (np.arange(present.size), present)),
            shape=(present.size, len(self.preprocessor.var_names)),
        )
        return sp.csr_matrix(sp.csr_matrix(counts, dtype=np.float32)[:, pos[present]] @ move)

    @property
    def var_names(self) -> list[str]:
        return list(self.preprocessor.var_names)

    @property
    def genes_used(self) -> np.ndarray:
        """Boolean mask over :attr:`var_names`: the genes the model reads."""
        mask = np.zeros(len(self.preprocessor.var_names), dtype=bool)
        mask[self.preprocessor.genes] = True
        return mask

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        *,
        pretrain_epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        tol: float = 1e-3,
        accelerator: str = "auto",
        devices: int | str = "auto",
        progress_bar: bool | None = None,
    ) -> FusionModel:
        """Train the model (pretraining, cluster initialisation, clustering stage).

        Parameters
        ----------
        max_epochs
            Maximum epochs of the clustering stage (method default when ``None``).
        pretrain_epochs
            Epochs of pretraining (method default when ``None``).
        batch_size
            Cells per mini-batch.
        learning_rate
            Learning rate of the main optimiser.
        tol
            Stop the clustering stage when fewer than this fraction of labels changes between epochs.
        accelerator
            ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"gpu"`` or ``"mps"``.
        devices
            CUDA device index or ``"auto"``.
        progress_bar
            Show a progress bar per phase (``None``: in notebooks and terminals).
        """
        self.device = resolve_device(accelerator, devices)
        seed_everything(self.random_state)
        self.rng = np.random.default_rng(self.random_state)
        n = self.data.n
        batch_size = self.default_batch_size if batch_size is None else check_positive_int(batch_size, "batch_size", minimum=2)
        if batch_size > self.max_batch_size:
            logg.warning(f"batch_size={batch_size} is capped to {self.max_batch_size} cells per mini-batch.")
            batch_size = self.max_batch_size
        self._epoch_steps = {}
        if max_epochs is None:
            max_epochs, self._epoch_steps["cluster"] = self.default_schedule(
                n, batch_size, self.default_cluster_steps, self.default_cluster_epoch_range
            )
        else:
            max_epochs = check_positive_int(max_epochs, "max_epochs", minimum=0)
        if pretrain_epochs is None:
            pretrain_epochs, self._epoch_steps["pretrain"] = self.default_schedule(
                n, batch_size, self.default_pretrain_steps, self.default_pretrain_epoch_range
            )
        else:
            pretrain_epochs = check_positive_int(pretrain_epochs, "pretrain_epochs", minimum=0)
        learning_rate = self.default_learning_rate if learning_rate is None else float(learning_rate)
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}.")
        if self.n_clusters_requested is not None and self.n_clusters_requested > n:
            raise ValueError(f"n_clusters={self.n_clusters_requested} exceeds the number of cells ({n}).")
        self.train_params = {
            "max_epochs": max_epochs,
            "pretrain_epochs": pretrain_epochs,
            "batch_size": batch_size,
            "steps_per_epoch": {k: v for k, v in self._epoch_steps.items() if v is not None},
            "learning_rate": learning_rate,
            "tol": tol,
            "device": str(self.device),
        }
        self.history = {}
        self.extras = {}
        self.init_info = {}
        self.progress = show_progress(progress_bar)
        t0 = time.perf_counter()
        with deterministic_algorithms(self.device), torch_threads() as n_threads:
            if self.device.type == "cpu":
                # CPU results depend on the thread count (the order of floating-point sums): record it
                self.train_params["torch_threads"] = n_threads
            self._fit(
                max_epochs=max_epochs,
                pretrain_epochs=pretrain_epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                tol=tol,
            )
            raw = self._infer(self.data)
        self.is_trained = True
        self.train_params["train_time_s"] = round(time.perf_counter() - t0, 3)
        self.label_order = self._final_clusters(raw["proba"])
        self._results = self._postprocess(raw)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return self

    @classmethod
    def default_schedule(
        cls, n: int, batch_size: int, steps: int, epoch_range: tuple[int, int]
    ) -> tuple[int, int | None]:
        """``(epochs, steps per epoch)`` of a phase's default schedule on ``n`` cells (``None``: whole epochs).

        Up to ``fixed_budget_cells`` cells: whole epochs, about ``steps`` mini-batch steps in all, clipped to
        ``epoch_range``. Above it the budget is ``steps`` whatever ``n``: whole epochs while one epoch is short
        enough, else the lower end of ``epoch_range`` epochs of ``ceil(steps / lower end)`` mini-batches each
        (so training time stops growing with ``n`` and each cell is seen about ``steps * batch_size / n`` times).
        """
        per_epoch = max(1, int(np.ceil(n / batch_size)))
        lo, hi = epoch_range
        epochs = int(min(hi, max(lo, int(np.ceil(steps / per_epoch)))))
        if n <= cls.fixed_budget_cells or per_epoch * lo <= steps:
            return epochs, None
        return lo, int(np.ceil(steps / lo))


    def _fit(self, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _init_clusters(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """k and centres from the pretrained embedding (:func:`scfuse.tl._estimate_k.initial_clusters`): Leiden
        when ``n_clusters`` is None; else, by the ``given_k_start`` hyper-parameter, k-means or average linkage
        (cosine or Euclidean) by silhouette (``"silhouette"``), or Leiden split or merged to k (``"leiden"``)."""
        from ..tl._estimate_k import initial_clusters

        labels, centers, info = initial_clusters(
            z,
            self.n_clusters_requested,
            resolution=self.resolution,
            random_state=self.random_state,
            min_size=self.hparams.get("min_cluster_size", 1),
            given_k_start=self.hparams.get("given_k_start", "silhouette"),
            batches=self.batches,
        )
        self.init_info = info
        self.n_clusters = centers.shape[0]
        self.n_clusters_estimated = self.n_clusters_requested is None
        logg.info(
            f"    {self.n_clusters} clusters "
            + ("estimated by Leiden on the pretrained embedding" if self.n_clusters_estimated else "(given)")
        )
        return labels, centers

    # ------------------------------------------------------------------ inference
    def _infer(self, data: CellData) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        """No-grad pass over all cells: ``{"latent": n x d, "proba": n x k}``."""
        raise NotImplementedError

    def _check_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError("The model is not trained yet; call .train() first.")

    def _final_clusters(self, proba: np.ndarray) -> np.ndarray:
        """Columns of ``proba`` kept as final clusters, largest first.

        Clusters that no training cell is assigned to are dropped, and so are clusters with fewer than
        ``min_cluster_size`` cells (their cells move to their next most probable cluster), so that no 1-3-cell
        leftovers are reported as cell types.
        """
        min_size = int(self.hparams.get("min_cluster_size", 1))
        keep = np.arange(proba.shape[1])
        while True:
            labels = keep[proba[:, keep].argmax(axis=1)]
            used, counts = np.unique(labels, return_counts=True)
            small = counts < min_size
            if not small.any() or (~small).sum() < 2:
                return used[np.argsort(-counts, kind="stable")]
            keep = used[~small]

    def _postprocess(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        proba = raw["proba"][:, self.label_order]
        proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
        return {"latent": raw["latent"], "proba": proba.astype(np.float32), "labels": proba.argmax(axis=1)}

    def _outputs(self, adata: AnnData | None, *, graph: str = "reference") -> dict[str, np.ndarray]:
        self._check_trained()
        if graph not in ("reference", "own"):
            raise ValueError(f'graph must be "reference" or "own", got {graph!r}.')
        if adata is None:
            if self.data is None:
                raise ValueError("This model was loaded without data; pass adata.")
            if self._results is not None:
                return self._results
        if adata is not None and graph == "reference" and self.uses_graph:
            if self.data is None:
                raise ValueError(
                    "New cells are joined to the training cells, which this model was loaded without: load it with "
                    'its training data (load(path, adata)), or use graph="own" (the new cells\' own graph).'
                )
            check_adata(adata)
            data, first = self._joined_data(adata), self.data.n
        else:
            data, first = self._data_for(adata), 0
        with torch_threads():
            raw = self._infer(data)
        out = self._postprocess({k: v[first:] for k, v in raw.items()})
        if adata is None:
            self._results = out
        return out

    def _reference_space(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, components, scores of the training cells)`` of a PCA of the model input, computed once."""
        if getattr(self, "_reference", None) is None:
            from .._utils._matrix import pca_of_blocks

            d = self.data
            mean, comps = pca_of_blocks((d.input_rows(c) for c in d.chunks()), d.n_features, self.reference_pcs)
            scores = np.vstack([(d.input_rows(c) - mean) @ comps for c in d.chunks()])
            self._reference = (mean, comps, scores)
        return self._reference

    def _joined_data(self, adata: AnnData) -> CellData:
        """The training cells followed by the cells of ``adata``, each new cell joined to its nearest training
        cells (in the PCA of the model input, as :func:`scanpy.tl.ingest` places cells) and to no other new cell,
        so that a new cell's embedding does not depend on which other cells come with it."""
        import scipy.sparse as sp

        from .._utils._graph import knn_query, query_edge_weights

        logx, _, _ = self.preprocessor.transform(self._counts_of(adata))
        mean, comps, ref_scores = self._reference_space()
        chunk = self.inference_chunk_size
        scores = np.vstack(
            [(self.preprocessor.dense_input(logx[s : s + chunk]) - mean) @ comps for s in range(0, logx.shape[0], chunk)]
        )
        k = int(getattr(self, "graph_info", {}).get("graph_n_neighbors", 15))
        idx, dist = knn_query(ref_scores, scores, k, metric="cosine", random_state=self.random_state)
        n_ref, n_new = self.data.n, logx.shape[0]
        rows = np.repeat(np.arange(n_ref, n_ref + n_new), idx.shape[1])
        shape = (n_ref + n_new, n_ref + n_new)
        edges = sp.csr_matrix((query_edge_weights(dist, self.graph_method).ravel(), (rows, idx.ravel())), shape=shape)
        ref = sp.csr_matrix(self.data.weights)
        ref.resize(shape)
        return CellData(
            sp.vstack([self.data.logx, logx], format="csr"),
            None,
            None,
            ref + edges,
            to_input=self.preprocessor.dense_input,
            adjacency=self.adjacency,
            chunk_size=self.inference_chunk_size,
            symmetric=False,
        )

    def get_latent_representation(self, adata: AnnData | None = None, *, graph: str = "reference") -> np.ndarray:
        """The learned embedding of the training cells, or of new cells in ``adata``.

        New cells are matched to the model's genes by name. ``graph="reference"`` (default) joins each new cell to
        its nearest training cells (the model must hold its training data); ``"own"`` uses the graph of ``adata``
        under the model's ``neighbors_key`` instead (then a cell's result depends on the other new cells)."""
        return self._outputs(adata, graph=graph)["latent"]

    def predict(self, adata: AnnData | None = None, *, soft: bool = False, graph: str = "reference") -> np.ndarray:
        """Cluster labels or soft assignments of the training cells or of new cells.

        ``soft=True`` gives the soft assignments; ``graph`` places new cells as in
        :meth:`get_latent_representation`."""
        out = self._outputs(adata, graph=graph)
        return out["proba"] if soft else out["labels"]

    # ------------------------------------------------------------------ persistence
    def _init_args(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters_requested,
            "resolution": self.resolution,
            "layer": self.layer,
            "neighbors_key": self.neighbors_key,
            "obsp": self.obsp,
            "batch_key": self.batch_key,
            "random_state": self.random_state,
            **self.hparams,
        }

    def save(self, dir_path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Save the trained model to ``dir_path`` in files that cannot run code when loaded.

        ``weights.pt`` holds the module's state dict (tensors only, read with ``torch.load(weights_only=True)``);
        ``model.json`` the class, arguments, fitted preprocessing, genes, history, extras, the scfuse version and
        the file format version (``MODEL_FORMAT_VERSION``, 2); ``arrays.npz`` the NumPy arrays among them (read
        with ``allow_pickle=False``).

        Parameters
        ----------
        dir_path
            Folder to write (created if needed).
        overwrite
            Replace a model already saved there.

        Examples
        --------
        >>> import os, tempfile
        >>> import scfuse
        >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
        >>> scfuse.pp.build_graph(adata)
        >>> model = scfuse.models.AttentionAE(adata, n_clusters=3).train(2, pretrain_epochs=2, progress_bar=False)
        >>> path = tempfile.mkdtemp()
        >>> model.save(path, overwrite=True)
        >>> sorted(os.listdir(path))
        ['arrays.npz', 'model.json', 'weights.pt']
        """
        self._check_trained()
        d = Path(dir_path)
        if (d / _MODEL_FILE).exists() and not overwrite:
            raise FileExistsError(f"{d / _MODEL_FILE} exists; pass overwrite=True to replace it.")
        from .. import __version__

        arrays: dict[str, np.ndarray] = {}
        meta = encode(
            {
                "class": type(self).__name__,
                "method": self.method_name,
                "init_args": self._init_args(),
                "preprocessor": self.preprocessor.state(),
                "module_config": self._module_config(),
                "centers": self.centers,
                "n_clusters": self.n_clusters,
                "n_clusters_estimated": self.n_clusters_estimated,
                "history": self.history,
                "extras": self.extras,
                "converged": self.converged,
                "train_params": self.train_params,
                "label_order": self.label_order,
            },
            arrays,
        )
        meta = {"format_version": MODEL_FORMAT_VERSION, "scfuse_version": __version__, **meta}
        weights = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        d.mkdir(parents=True, exist_ok=True)
        torch.save(weights, d / _WEIGHTS_FILE)
        np.savez(d / _ARRAYS_FILE, **arrays)
        (d / _MODEL_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False))  # last: marks a complete save

    @classmethod
    def load(
        cls, dir_path: str | os.PathLike, adata: AnnData | None = None, *, accelerator: str = "cpu", devices="auto"
    ) -> FusionModel:
        """Load a model written by ``save``; nothing in the files can run code.

        Parameters
        ----------
        dir_path
            Folder written by ``save``.
        adata
            Becomes the model's data (same genes as in training, its own cell graph); may be omitted, then
            ``predict`` and ``get_latent_representation`` need ``adata``.
        accelerator, devices
            Where the module runs (as in ``train``).

        Returns
        -------
        The model, of the saved class (a subclass's ``load`` checks that the method matches).

        Raises
        ------
        ValueError
            When the folder was written by another format version (e.g. a ``model.pt`` of scfuse 0.1, which
            held a pickle and is not read), or a file holds anything but plain data.

        Examples
        --------
        >>> import tempfile
        >>> import scfuse
        >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
        >>> scfuse.pp.build_graph(adata)
        >>> model = scfuse.models.AttentionAE(adata, n_clusters=3).train(2, pretrain_epochs=2, progress_bar=False)
        >>> path = tempfile.mkdtemp()
        >>> model.save(path, overwrite=True)
        >>> back = scfuse.models.FusionModel.load(path, adata)
        >>> bool((back.predict() == model.predict()).all())
        True
        """
        d = Path(dir_path)
        meta = _read_meta(d)
        klass = get_model_class(meta["method"]) if cls is FusionModel else cls
        if klass.method_name != meta["method"]:
            raise ValueError(f"{d} holds a {meta['method']!r} model, not {klass.method_name!r}.")
        for name in (_ARRAYS_FILE, _WEIGHTS_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} is missing: the save in {d} is incomplete.")
        try:
            with np.load(d / _ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            weights = torch.load(d / _WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, ValueError, RuntimeError, OSError) as err:
            raise ValueError(
                f"{d} holds a file that is not plain data (tensors and arrays only); it was not loaded: {err}"
            ) from err
        if not (isinstance(weights, dict) and all(isinstance(v, torch.Tensor) for v in weights.values())):
            raise ValueError(f"{d / _WEIGHTS_FILE} does not hold a state dict of tensors; it was not loaded.")
        state = decode(meta, arrays)
        self = klass.__new__(klass)
        args = dict(state["init_args"])
        self.hparams = {k: args.pop(k) for k in list(args) if k in klass.default_hparams}
        self.n_clusters_requested = args["n_clusters"]
        self.resolution = args["resolution"]
        self.layer = args["layer"]
        self.neighbors_key = args["neighbors_key"]
        self.obsp = args["obsp"]
        self.batch_key = args.get("batch_key")  # files saved before batch_key have none
        self.batches = None  # only the clustering start reads them
        self.random_state = args["random_state"]
        self.preprocessor = Preprocessor.from_state(state["preprocessor"])
        self.device = resolve_device(accelerator, devices)
        self.centers = state["centers"]
        self.n_clusters = state["n_clusters"]
        self.n_clusters_estimated = state["n_clusters_estimated"]
        self.history = state["history"]
        self.extras = state["extras"]
        self.converged = state["converged"]
        self.train_params = state["train_params"]
        self.label_order = state["label_order"]
        self.n_covariates = int(state["module_config"].get("n_covariates", 0))
        self.module = self._build_module(**state["module_config"]).to(self.device)
        self.module.load_state_dict(weights)
        self.module.eval()
        self.is_trained = True
        self._results = None
        self.data = None
        if adata is not None:
            self.data = self._data_for(adata, same_genes=True)
        self.counts_source = None
        return self

    def _module_config(self) -> dict[str, Any]:
        """Constructor arguments of :attr:`module_class` (also saved with the model)."""
        h = self.hparams
        config: dict[str, Any] = {"n_input": len(self.preprocessor.genes)}
        for name in self.module_hparams:
            config[name] = tuple(h[name]) if isinstance(h[name], list | tuple) else h[name]
        config["n_clusters"] = self.n_clusters
        if self.n_covariates:
            config["n_covariates"] = self.n_covariates
        return config

    def _build_module(self, **config) -> torch.nn.Module:
        return self.module_class(**config)

    def __repr__(self) -> str:
        n = None if self.data is None else self.data.n
        return (
            f"{type(self).__name__}(method={self.method_name!r}, n_cells={n}, "
            f"n_genes={len(self.preprocessor.genes)}, n_clusters={self.n_clusters}, trained={self.is_trained})"
        )
