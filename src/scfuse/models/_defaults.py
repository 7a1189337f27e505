"""The class attributes a method sets: preprocessing, graph, schedule and module defaults."""

from __future__ import annotations

from typing import Any, ClassVar

import torch


class MethodDefaults:
    """What a method declares about itself; :class:`~scfuse.models.FusionModel` reads these class attributes."""

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
    #: the method's hyper-parameters (architecture, loss weights, schedule): a frozen dataclass whose fields are
    #: the keyword arguments of the model (and of ``scfuse.tl.cluster``); ``default_hparams`` holds its defaults
    config_class: ClassVar[type] = object
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
