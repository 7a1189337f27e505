"""The model API shared by every method: data set-up, training, embedding, prediction, save and load."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scanpy import logging as logg

from scfuse._docs import doc_params, doc_train
from scfuse._utils._device import resolve_device
from scfuse._utils._estimate_k import data_view, initial_clusters
from scfuse._utils._random import deterministic_algorithms, resolve_seed, seed_everything, torch_threads
from scfuse._utils._validate import batch_codes, check_adata, check_n_clusters, check_positive_int, get_counts

from ._config import MethodConfig
from ._data import CellData
from ._defaults import MethodDefaults
from ._mapping import NewCellsMixin
from ._persist import SaveLoadMixin
from ._preprocess import Preprocessor, resolve_mask_var
from ._trainer import ScheduleMixin, show_progress

if TYPE_CHECKING:
    from anndata import AnnData


class FusionModel(MethodDefaults, ScheduleMixin, NewCellsMixin, SaveLoadMixin):
    """Base class of the fusion clustering models.

    A subclass sets the class attributes of ``MethodDefaults`` (its torch module in ``module_class``) and implements
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
        self.hparams = self._check_hparams(hparams)
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
        self._set_up_data(adata, n_top_genes, mask_var)
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

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "config_class" in cls.__dict__ and "default_hparams" not in cls.__dict__:
            cls.default_hparams = cls.config_class.defaults()

    def _check_hparams(self, hparams: dict[str, Any]) -> dict[str, Any]:
        """The method's hyper-parameters (``config``, a frozen ``config_class``), checked, as a dict."""
        unknown = set(hparams) - set(self.default_hparams)
        if unknown:
            raise TypeError(
                f"Unknown argument(s) for method {self.method_name!r}: {sorted(unknown)}. "
                f"Valid model arguments: {sorted(self.default_hparams)}."
            )
        self.config = self.config_class(**{**self.default_hparams, **hparams})
        return self.config.as_dict()

    def _method_graph(self, adata: AnnData, graph):
        """The graph the method reads, made from the checked input graph (hook; the input graph by default)."""
        return graph

    def _set_up_data(self, adata: AnnData, n_top_genes: int | None, mask_var) -> None:
        """Counts, cell graph and fitted preprocessing of the training cells (:attr:`data`)."""
        counts, self.counts_source = get_counts(adata, self.layer)
        graph, self.graph_info = self._cell_graph(adata, self.batch_key)
        if n_top_genes is not None:
            n_top_genes = check_positive_int(n_top_genes, "n_top_genes", minimum=2)
        self.preprocessor = Preprocessor(
            n_top_genes=self.n_top_genes if n_top_genes is None else n_top_genes,
            input_transform=self.input_transform,
            min_cells=self.min_cells,
        )
        gene_mask, self.mask_var = resolve_mask_var(adata, mask_var)
        self.preprocessor.fit(counts, adata.var_names, gene_mask)
        self.data = self._make_data(counts, graph)
        self._data_view = None
        #: batch covariates of the count decoder (one-hot batch; 0 without batch_key or count decoder)
        self.n_covariates = int(self.batches.max()) + 1 if self.batches is not None and self.uses_counts else 0
        if self.n_covariates:
            self.data.covariates = np.eye(self.n_covariates, dtype=np.float32)[self.batches]

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

    # ------------------------------------------------------------------ training
    @doc_params(doc_train=doc_train)
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
        {doc_train}
        """
        self.device = resolve_device(accelerator, devices)
        seed_everything(self.random_state)
        self.rng = np.random.default_rng(self.random_state)
        self.train_params = {
            **self._training_schedule(max_epochs, pretrain_epochs, batch_size, learning_rate),
            "tol": tol,
            "device": str(self.device),
        }
        max_epochs, pretrain_epochs = self.train_params["max_epochs"], self.train_params["pretrain_epochs"]
        batch_size, learning_rate = self.train_params["batch_size"], self.train_params["learning_rate"]
        self.history = {}
        self.extras = {}
        self.init_info = {}
        self.progress = show_progress(progress_bar)
        t0 = time.perf_counter()
        with deterministic_algorithms(self.device), torch_threads() as n_threads:
            if self.device.type == "cpu":
                # CPU results depend on the thread count (the order of floating-point sums): record it
                self.train_params["torch_threads"] = n_threads
            raw = self._fit(
                max_epochs=max_epochs,
                pretrain_epochs=pretrain_epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                tol=tol,
            )
            if raw is None:  # the schedule ended without its own pass over all cells
                raw = self._infer(self.data)
        self.is_trained = True
        self.train_params["train_time_s"] = round(time.perf_counter() - t0, 3)
        self.label_order = self._final_clusters(raw["proba"])
        self._results = self._postprocess(raw)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return self

    def _fit(self, **kwargs) -> dict[str, np.ndarray] | None:  # pragma: no cover - abstract
        """The whole training schedule.

        Returns the final no-grad pass over all cells (as :meth:`_infer`), or ``None`` to have :meth:`train` make it.
        """
        raise NotImplementedError

    def _init_clusters(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """K and centres from the pretrained embedding (:func:`scfuse._utils._estimate_k.initial_clusters`).

        Leiden when ``n_clusters`` is None; else, by the ``given_k_start`` hyper-parameter, Leiden split or merged
        to k (``"leiden"``, the default), k-means or average linkage (cosine or Euclidean) by silhouette
        (``"silhouette"``), or the best of these by how their centres assign the cells (``"centres"``).
        """
        labels, centers, info = initial_clusters(
            z,
            self.n_clusters_requested,
            resolution=self.resolution,
            random_state=self.random_state,
            min_size=self.hparams.get("min_cluster_size", 1),
            given_k_start=self.hparams.get("given_k_start", "leiden"),
            batches=self.batches,
            view=self._k_scan_view(),
        )
        self.init_info = info
        self.n_clusters = centers.shape[0]
        self.n_clusters_estimated = self.n_clusters_requested is None
        logg.info(
            f"    {self.n_clusters} clusters "
            + ("estimated by Leiden on the pretrained embedding" if self.n_clusters_estimated else "(given)")
        )
        return labels, centers

    def _k_scan_view(self) -> np.ndarray | None:
        """Where the k scan scores its partitions when it chooses k (``k_scan_view``); ``None`` for the embedding.

        ``"data"``: :func:`scfuse._utils._estimate_k.data_view` of the scan's subsample (the PCA of the z-scored
        log-normalised model genes, centred per batch), computed once per fit.
        """
        if (
            self.resolution is not None
            or self.n_clusters_requested is not None
            or self.hparams.get("k_scan_view", "embedding") != "data"
        ):
            return None
        if getattr(self, "_data_view", None) is None:
            self._data_view = data_view(self.data.logx, batches=self.batches, random_state=self.random_state)
        return self._data_view

    # ------------------------------------------------------------------ inference
    def _infer(self, data: CellData) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        """No-grad pass over all cells: ``{"latent": n x d, "proba": n x k}``."""
        raise NotImplementedError

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


FusionModel.default_hparams = MethodConfig.defaults()
