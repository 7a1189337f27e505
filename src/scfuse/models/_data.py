"""Turning an AnnData into model tensors, and mini-batches that keep graph neighbourhoods together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from scfuse._utils._graph import (
    binary_adjacency,
    neighbor_table,
    normalize_adjacency,
    to_torch_sparse,
)

if TYPE_CHECKING:
    pass


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
        """All cells for a no-grad inference pass.

        ``x`` is a :class:`ChunkedInput` (no dense cells x genes array) and ``counts`` is ``None``; the graph is the whole graph with a neighbour
        table for attention.
        """
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
