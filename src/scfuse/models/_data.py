"""Turning an AnnData into model tensors, and mini-batches that keep graph neighbourhoods together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch
from scanpy import logging as logg

from .._utils._graph import binary_adjacency, neighbor_table, normalize_adjacency, to_torch_sparse
from .._utils._matrix import column_mean_var

if TYPE_CHECKING:
    from anndata import AnnData


@dataclass
class Preprocessor:
    """Fitted gene selection and input transform; re-applied unchanged to new cells (``predict``/``transfer``).

    ``input_transform``: ``"zscore"`` (per-gene z-score of log-normalised counts), ``"log"`` (log-normalised,
    unscaled) or ``"minmax_l2"`` (per-gene min-max scaling then per-cell L2 normalisation).
    """

    n_top_genes: int | None = 2000
    input_transform: str = "zscore"
    min_cells: float = 1  # a gene must be non-zero in at least this many cells (a fraction when < 1)
    # fitted
    var_names: list[str] = field(default_factory=list)  # all genes of the training data
    genes: np.ndarray | None = None  # indices of the model's genes into var_names
    target_sum: float | None = None  # normalisation target (median library size of the training cells)
    center: np.ndarray | None = None
    scale: np.ndarray | None = None

    def fit(self, counts: sp.csr_matrix, var_names, gene_mask: np.ndarray | None = None) -> None:
        """Choose the genes and fit the input transform. ``gene_mask`` (boolean over genes): train on these genes
        (those expressed in enough cells) instead of selecting ``n_top_genes`` highly variable ones."""
        import anndata as ad
        import scanpy as sc

        self.var_names = [str(v) for v in var_names]
        n = counts.shape[0]
        min_cells = self.min_cells * n if self.min_cells < 1 else self.min_cells
        nonzero = np.asarray((counts > 0).sum(axis=0)).ravel()
        expressed = nonzero >= max(min_cells, 1)
        keep = np.flatnonzero(expressed if gene_mask is None else expressed & gene_mask)
        if keep.size < 2:
            raise ValueError(
                "Fewer than 2 genes are expressed in enough cells to train a model"
                + ("." if gene_mask is None else f" among the {int(gene_mask.sum())} genes of mask_var.")
            )
        lib = np.asarray(counts.sum(axis=1)).ravel()
        self.target_sum = float(np.median(lib))
        logx = self._log_normalize(counts[:, keep], lib)
        if gene_mask is None and self.n_top_genes is not None and self.n_top_genes < keep.size:
            tmp = ad.AnnData(logx)
            hv = sc.pp.highly_variable_genes(tmp, n_top_genes=self.n_top_genes, flavor="seurat", inplace=False)
            sel = np.flatnonzero(hv["highly_variable"].to_numpy())
            keep, logx = keep[sel], logx[:, sel]
        self.genes = keep
        if self.input_transform == "zscore":
            mean, var = column_mean_var(logx)
            sd = np.sqrt(var)
            sd[sd == 0] = 1.0
            self.center, self.scale = mean.astype(np.float32), sd.astype(np.float32)
        elif self.input_transform == "minmax_l2":
            lo = logx.min(axis=0).toarray().ravel()
            span = logx.max(axis=0).toarray().ravel() - lo
            span[span == 0] = 1.0
            self.center, self.scale = lo.astype(np.float32), span.astype(np.float32)
        elif self.input_transform == "log":
            self.center = np.zeros(keep.size, dtype=np.float32)
            self.scale = np.ones(keep.size, dtype=np.float32)
        else:
            raise ValueError(f"Unknown input_transform {self.input_transform!r}.")

    def _log_normalize(self, counts: sp.csr_matrix, lib: np.ndarray) -> sp.csr_matrix:
        factors = self.target_sum / np.maximum(lib, 1e-12)
        out = sp.csr_matrix(sp.diags(factors.astype(np.float32)) @ counts, dtype=np.float32)
        out.data = np.log1p(out.data)
        return out

    def transform(self, counts: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        """``(log-normalised model genes, raw counts of the model genes, size factors)``; both matrices CSR float32.

        The model input is ``dense_input`` of rows of the first: only a mini-batch or an inference chunk is ever
        dense."""
        lib = np.asarray(counts.sum(axis=1)).ravel()
        sub = sp.csr_matrix(counts[:, self.genes], dtype=np.float32)
        size_factors = (lib / self.target_sum).astype(np.float32)
        return self._log_normalize(sub, lib), sub, size_factors

    def dense_input(self, logx_rows: sp.csr_matrix) -> np.ndarray:
        """The model input of some cells (rows of the first matrix of :meth:`transform`), dense float32."""
        x = (logx_rows.toarray() - self.center) / self.scale
        if self.input_transform == "minmax_l2":
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x.astype(np.float32, copy=False)

    def state(self) -> dict:
        return {
            "n_top_genes": self.n_top_genes,
            "input_transform": self.input_transform,
            "min_cells": self.min_cells,
            "var_names": self.var_names,
            "genes": self.genes,
            "target_sum": self.target_sum,
            "center": self.center,
            "scale": self.scale,
        }

    @classmethod
    def from_state(cls, state: dict) -> Preprocessor:
        return cls(**state)


def resolve_mask_var(adata: AnnData, mask_var) -> tuple[np.ndarray | None, str | None]:
    """``(boolean gene mask or None, what it came from)`` for ``mask_var``, as :func:`scanpy.pp.pca` reads it.

    ``"highly_variable"`` (the default) uses ``var["highly_variable"]`` when that column exists and else lets the
    method pick its genes; another string names a ``var`` column that must exist; an array is a boolean mask over
    the genes; ``None`` lets the method pick from all genes.
    """
    if mask_var is None:
        return None, None
    if isinstance(mask_var, str):
        if mask_var not in adata.var:
            if mask_var == "highly_variable":
                return None, None
            raise KeyError(f"mask_var={mask_var!r} is not a column of adata.var (columns: {list(adata.var.columns)}).")
        col = adata.var[mask_var]
        if col.dtype != bool:
            raise ValueError(f"adata.var[{mask_var!r}] must be boolean, not {col.dtype}.")
        return col.to_numpy(dtype=bool), mask_var
    mask = np.asarray(mask_var)
    if mask.dtype != bool or mask.shape != (adata.n_vars,):
        raise ValueError(f"mask_var must be a boolean array of length n_vars={adata.n_vars}, a var column or None.")
    return mask, "array"


def get_graph(
    adata: AnnData,
    neighbors_key: str | None,
    obsp: str | None = None,
    *,
    weights: str | None = None,
    batch_key: str | None = None,
) -> tuple[sp.csr_matrix, dict]:
    """The connectivities written by :func:`scfuse.pp.build_graph` (or ``sc.pp.neighbors``), checked, and a record.

    ``weights`` is the edge weighting the method was built for (``"gauss"``, ``"knn"`` or ``"umap"``). When the
    graph under ``neighbors_key`` records other weights (``uns[key]["params"]["method"]``), the method's weights
    are recomputed from the graph's stored kNN distances, with a warning; ``adata`` is not changed. The record says
    which weights the model used. With ``batch_key``, the graph must have been built batch-balanced for that
    column (``scfuse.pp.build_graph(adata, batch_key=...)``).
    """
    if obsp is not None and neighbors_key not in (None, "scfuse"):
        raise ValueError("Pass either obsp or neighbors_key, not both.")
    if batch_key is not None:
        key = neighbors_key or "neighbors"
        built_for = adata.uns.get(key, {}).get("params", {}).get("batch_key") if obsp is None else None
        if built_for != batch_key:
            raise ValueError(
                f"batch_key={batch_key!r} needs a batch-balanced graph: "
                + (f"obsp={obsp!r} is not one scfuse can check. " if obsp is not None else
                   f"the graph {key!r} was built " + ("without a batch_key. " if built_for is None else f"for batch_key={built_for!r}. "))
                + f"Run scfuse.pp.build_graph(adata, batch_key={batch_key!r}, method=...) first."
            )
    info: dict = {}
    if obsp is not None:
        if obsp not in adata.obsp:
            raise KeyError(f"obsp={obsp!r} not found in adata.obsp (available: {list(adata.obsp.keys())}).")
        conn = adata.obsp[obsp]
        info["graph_weights"] = "as given (obsp)"
    else:
        key = neighbors_key or "neighbors"
        if key not in adata.uns or "connectivities_key" not in adata.uns[key]:
            raise KeyError(
                f"No graph under neighbors_key={key!r} (adata.uns[{key!r}] is missing). "
                f"Run scfuse.pp.build_graph(adata, key_added={key!r}) first, or pass the key of an existing graph."
            )
        ckey = adata.uns[key]["connectivities_key"]
        if ckey not in adata.obsp:
            raise KeyError(f"adata.uns[{key!r}] names obsp[{ckey!r}], which does not exist.")
        conn = adata.obsp[ckey]
        built = adata.uns[key].get("params", {}).get("method")
        info["graph_weights"] = str(built) if built is not None else "unknown"
        if batch_key is not None:
            info["graph_batch_key"] = batch_key
        if "n_neighbors" in adata.uns[key].get("params", {}):
            info["graph_n_neighbors"] = int(adata.uns[key]["params"]["n_neighbors"])
        dkey = adata.uns[key].get("distances_key")
        if weights is not None and built is not None and built != weights and dkey in adata.obsp:
            from ..pp._build_graph import edge_weights, knn_table

            logg.warning(
                f"The graph {key!r} has {built!r} edge weights, but the method was built for {weights!r}: its "
                f"weights are recomputed from the graph's kNN distances (adata is not changed). "
                f"scfuse.pp.build_graph(adata, method={weights!r}) avoids this."
            )
            params = adata.uns[key].get("params", {})
            idx, dist = knn_table(adata.obsp[dkey])
            conn = edge_weights(
                idx, dist, weights, metric=str(params.get("metric", "euclidean")),
                random_state=int(params.get("random_state", 0) or 0),
            )
            info["graph_weights"] = f"{weights} (recomputed from {built!r})"
    if conn.shape != (adata.n_obs, adata.n_obs):
        raise ValueError(f"The graph has shape {conn.shape}, but adata has {adata.n_obs} cells.")
    conn = sp.csr_matrix(conn, dtype=np.float32)
    if conn.nnz and not np.all(np.isfinite(conn.data)):
        raise ValueError("The graph holds NaN or infinite weights.")
    if conn.nnz and conn.data.min() < 0:
        raise ValueError("The graph holds negative weights.")
    return conn, info


class ChunkedInput:
    """The model input of all cells of a :class:`CellData`, made dense one chunk of rows at a time.

    It stands in for the ``cells x genes`` input tensor in no-grad inference and supports what a first layer does
    with its input: ``torch.nn.functional.linear(x, W, b)`` (so ``nn.Linear``) and ``x @ W`` (so
    :class:`~scfuse.nn.GraphConv` and :class:`~scfuse.nn.TAGConv`). The result, ``cells x width``, is an ordinary
    tensor. Anything else raises a ``TypeError`` instead of silently densifying all cells.
    """

    def __init__(self, data: CellData, device: torch.device) -> None:
        self.data = data
        self.device = device
        self.shape = (data.n, data.n_features)

    def map_rows(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` applied to each dense chunk of rows, concatenated."""
        parts = [fn(torch.from_numpy(self.data.input_rows(c)).to(self.device)) for c in self.data.chunks()]
        return torch.cat(parts, dim=0)

    def __matmul__(self, other: torch.Tensor) -> torch.Tensor:
        return self.map_rows(lambda xb: xb @ other)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear and isinstance(args[0], ChunkedInput):
            return args[0].map_rows(lambda xb: func(xb, *args[1:], **kwargs))
        raise TypeError(
            f"{getattr(func, '__name__', func)} is not supported on the chunked model input; a module's inference "
            "pass may only feed its input through linear layers (nn.Linear, GraphConv, TAGConv)."
        )


@dataclass
class GraphView:
    """The graph a forward pass sees: a sparse normalised adjacency plus the attention neighbourhood.

    In training the neighbourhood is ``mask``, a dense boolean ``b x b`` over the cells of a mini-batch (the batch's
    induced subgraph plus self loops). In full-data inference it is a padded table ``neighbors`` /
    ``neighbor_mask`` (``n x K``, the cell itself first), processed in chunks: no ``n x n`` tensor.
    """

    adj: torch.Tensor
    mask: torch.Tensor | None = None
    neighbors: torch.Tensor | None = None
    neighbor_mask: torch.Tensor | None = None

    def attention_kwargs(self) -> dict:
        if self.neighbors is not None:
            return {"neighbors": self.neighbors, "neighbor_mask": self.neighbor_mask}
        return {"mask": self.mask}


@dataclass
class Batch:
    index: np.ndarray  # global cell indices
    x: torch.Tensor
    counts: torch.Tensor | None
    size_factors: torch.Tensor | None
    graph: GraphView
    adj_binary: sp.csr_matrix  # binary adjacency among the batch cells (for sampled reconstruction pairs)
    covariates: torch.Tensor | None = None  # one-hot batch of each cell, for a count decoder (batch_key)


class CellData:
    """The training data of one model: sparse inputs and counts, the graph, and samplers of mini-batches.

    ``logx`` (log-normalised model genes) and ``counts`` stay CSR; ``to_input`` turns rows of ``logx`` into the
    dense model input (:meth:`Preprocessor.dense_input`), so only a mini-batch or an inference chunk of cells is
    ever dense.
    """

    def __init__(
        self,
        logx: sp.csr_matrix,
        counts: sp.csr_matrix | None,
        size_factors: np.ndarray | None,
        graph: sp.csr_matrix,
        *,
        to_input: Callable[[sp.csr_matrix], np.ndarray],
        adjacency: str = "sym",
        max_attention_neighbors: int = 30,
        chunk_size: int = 4096,
        symmetric: bool = True,
    ) -> None:
        self.logx = sp.csr_matrix(logx, dtype=np.float32)
        self.counts = None if counts is None else sp.csr_matrix(counts, dtype=np.float32)
        self.size_factors = size_factors
        #: one-hot batch of each cell (``cells x n_batches``), read by count decoders; ``None`` without batch_key
        self.covariates: np.ndarray | None = None
        self.to_input = to_input
        self.n, self.n_features = self.logx.shape
        self.chunk_size = chunk_size
        self.weights = sp.csr_matrix(graph, dtype=np.float32)
        self.weights.setdiag(0)
        self.weights.eliminate_zeros()
        if symmetric:  # (False: new cells joined to reference cells by directed edges, see FusionModel)
            self.weights = sp.csr_matrix(self.weights.maximum(self.weights.T))
        self.binary = binary_adjacency(self.weights)
        self.adjacency = adjacency
        self.max_attention_neighbors = max_attention_neighbors
        self._full_view: dict = {}

    def input_rows(self, index) -> np.ndarray:
        """The dense model input of the cells ``index`` (an index array or a slice)."""
        return self.to_input(self.logx[index])

    def count_rows(self, index) -> np.ndarray:
        """The dense raw counts of the model genes of the cells ``index``."""
        return self.counts[index].toarray()

    def chunks(self) -> list[slice]:
        """Row slices of at most ``chunk_size`` cells, covering all cells in order."""
        return [slice(s, min(s + self.chunk_size, self.n)) for s in range(0, self.n, self.chunk_size)]

    def full_view(self, device: torch.device) -> GraphView:
        key = str(device)
        if key not in self._full_view:
            adj = to_torch_sparse(normalize_adjacency(self.weights, self.adjacency), device)
            idx, msk = neighbor_table(self.weights, self.max_attention_neighbors)
            self._full_view[key] = GraphView(
                adj=adj,
                neighbors=torch.from_numpy(idx).to(device),
                neighbor_mask=torch.from_numpy(msk).to(device),
            )
        return self._full_view[key]

    def batch(self, index: np.ndarray, device: torch.device) -> Batch:
        index = np.asarray(index)
        sub_w = self.weights[index][:, index]
        sub_b = self.binary[index][:, index]
        adj = to_torch_sparse(normalize_adjacency(sub_w, self.adjacency), device)
        # dense b x b mask of the batch subgraph (+ self): on CPU a masked batched matmul is ~10x faster than a
        # gather of neighbour keys in the backward pass, and b is small (batch_size is capped)
        mask = torch.from_numpy((sub_b + sp.eye(len(index), dtype=np.float32)).toarray() > 0).to(device)
        view = GraphView(adj=adj, mask=mask)
        return Batch(
            index=index,
            x=torch.from_numpy(self.input_rows(index)).to(device),
            counts=None if self.counts is None else torch.from_numpy(self.count_rows(index)).to(device),
            size_factors=None if self.size_factors is None else torch.from_numpy(self.size_factors[index]).to(device),
            graph=view,
            adj_binary=sp.csr_matrix(sub_b),
            covariates=None if self.covariates is None else torch.from_numpy(self.covariates[index]).to(device),
        )

    def full_batch(self, device: torch.device) -> Batch:
        """All cells for a no-grad inference pass: ``x`` is a :class:`ChunkedInput` (no dense cells x genes
        array) and ``counts`` is ``None``; the graph is the whole graph with a neighbour table for attention."""
        return Batch(
            index=np.arange(self.n),
            x=ChunkedInput(self, device),
            counts=None,
            size_factors=None if self.size_factors is None else torch.from_numpy(self.size_factors).to(device),
            graph=self.full_view(device),
            adj_binary=self.binary,
            covariates=None if self.covariates is None else torch.from_numpy(self.covariates).to(device),
        )

    def epoch_batches(self, batch_size: int, rng: np.random.Generator, *, neighbors_per_seed: int = 3):
        """Index arrays of one epoch: ``ceil(n / batch_size)`` batches of about ``batch_size`` cells.

        Each batch is a set of random seed cells plus ``neighbors_per_seed`` random graph neighbours of each, so
        that the graph convolution and the neighbour attention inside a batch see real edges. When
        ``batch_size >= n`` the single batch is all cells.
        """
        if batch_size >= self.n:
            yield np.arange(self.n)
            return
        n_steps = int(np.ceil(self.n / batch_size))
        n_seeds = max(1, batch_size // (1 + neighbors_per_seed))
        indptr, indices = self.binary.indptr, self.binary.indices
        seeds_all = rng.permutation(self.n)
        need = n_steps * n_seeds
        if need > self.n:
            seeds_all = np.concatenate([seeds_all] + [rng.permutation(self.n) for _ in range(need // self.n)])
        for s in range(n_steps):
            seeds = seeds_all[s * n_seeds : (s + 1) * n_seeds]
            deg = indptr[seeds + 1] - indptr[seeds]
            has = deg > 0
            picks = [seeds]
            if neighbors_per_seed > 0 and has.any():
                offs = (rng.random((has.sum(), neighbors_per_seed)) * deg[has, None]).astype(np.int64)
                picks.append(indices[indptr[seeds[has]][:, None] + offs].ravel())
            idx = np.concatenate(picks)
            _, first = np.unique(idx, return_index=True)
            idx = idx[np.sort(first)]
            if idx.size < batch_size:  # top up with random cells so every batch has about batch_size cells
                extra = rng.choice(self.n, size=min(self.n, batch_size - idx.size + n_seeds), replace=False)
                extra = extra[~np.isin(extra, idx)][: batch_size - idx.size]
                idx = np.concatenate([idx, extra])
            yield idx
