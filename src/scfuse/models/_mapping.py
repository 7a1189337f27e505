"""New cells on a trained model: genes aligned by name, cells joined to the training cells, chunked inference."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scanpy import logging as logg

from scfuse._utils._random import torch_threads
from scfuse._utils._validate import check_adata, get_counts

from ._data import CellData
from ._graph import get_graph

if TYPE_CHECKING:
    from anndata import AnnData


class NewCellsMixin:
    """Embedding and assignments of the training cells or of new cells (:class:`~scfuse.models.FusionModel`)."""

    def _data_for(self, adata: AnnData | None, *, same_genes: bool = False) -> CellData:
        """The model's data for the cells of ``adata``.

        Genes are matched by name (:meth:`_aligned_counts`); ``same_genes`` requires the training genes in the
        training order (the training data given to :meth:`load`).
        """
        if adata is None:
            return self.data
        check_adata(adata)
        counts = self._counts_of(adata, same_genes=same_genes)
        # the training data (same_genes) is checked as at training; a query's own graph need not be balanced
        batch_key = self.batch_key if same_genes else None
        graph, info = self._cell_graph(adata, batch_key)
        if same_genes:  # the training data (load): its graph's record, as after training
            self.graph_info = info
        return self._make_data(counts, graph)

    def _cell_graph(self, adata: AnnData, batch_key: str | None):
        """``(graph the method reads, record)`` for the cells of ``adata``.

        The checked graph under the model's ``neighbors_key`` (or ``obsp``), made into the method's graph
        (:meth:`_method_graph`); ``(None, {})`` for a method without a graph.
        """
        if not self.uses_graph:
            return None, {}
        graph, info = get_graph(adata, self.neighbors_key, self.obsp, weights=self.graph_method, batch_key=batch_key)
        return self._method_graph(adata, graph), info

    def _counts_of(self, adata: AnnData, *, same_genes: bool = False):
        """The counts of ``adata`` in the model's gene order (:meth:`_aligned_counts`).

        ``same_genes`` refuses other genes or another order instead of aligning them.
        """
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
        """``counts`` with the training genes as columns, in the training order.

        Genes of ``adata`` the model does not know are dropped, training genes missing from ``adata`` are zero
        (with a warning giving how many of the model's genes are missing).
        """
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

    def _check_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError("The model is not trained yet; call .train() first.")

    def outputs(self, adata: AnnData | None = None, *, graph: str = "reference") -> dict[str, np.ndarray]:
        """Everything the model gives for the training cells (``adata=None``) or new cells, in one pass.

        Returns ``{"latent": cells x d, "proba": cells x clusters, "labels": cells}``; ``graph`` places new cells
        as in :meth:`get_latent_representation`. The training cells' result is computed once and kept.

        Examples
        --------
        >>> import scfuse
        >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
        >>> scfuse.pp.build_graph(adata, method="gauss")
        >>> model = scfuse.models.AttentionAE(adata, n_clusters=3).train(2, pretrain_epochs=2, progress_bar=False)
        >>> sorted(model.outputs())
        ['labels', 'latent', 'proba']
        """
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
            from scfuse._utils._matrix import pca_of_blocks

            d = self.data
            mean, comps = pca_of_blocks((d.input_rows(c) for c in d.chunks()), d.n_features, self.reference_pcs)
            self._reference = (mean, comps, _project((d.input_rows(c) for c in d.chunks()), mean, comps))
        return self._reference

    def _joined_data(self, adata: AnnData) -> CellData:
        """The training cells followed by the cells of ``adata``.

        Each new cell is joined to its nearest training cells (in the PCA of the model input, as
        :func:`scanpy.tl.ingest` places cells) and to no other new cell, so that a new cell's embedding does not depend on which other cells come with it.
        """
        import scipy.sparse as sp

        from scfuse._utils._graph import knn_query, query_edge_weights

        logx, _, _ = self.preprocessor.transform(self._counts_of(adata))
        mean, comps, ref_scores = self._reference_space()
        chunk = self.inference_chunk_size
        blocks = (self.preprocessor.dense_input(logx[s : s + chunk]) for s in range(0, logx.shape[0], chunk))
        scores = _project(blocks, mean, comps)
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
        under the model's ``neighbors_key`` instead (then a cell's result depends on the other new cells).
        """
        return self.outputs(adata, graph=graph)["latent"]

    def predict(self, adata: AnnData | None = None, *, soft: bool = False, graph: str = "reference") -> np.ndarray:
        """Cluster labels or soft assignments of the training cells or of new cells.

        ``soft=True`` gives the soft assignments; ``graph`` places new cells as in
        :meth:`get_latent_representation`.
        """
        out = self.outputs(adata, graph=graph)
        return out["proba"] if soft else out["labels"]


def _project(blocks, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
    """Scores of the rows of ``blocks`` (dense row blocks of the model input) on principal components."""
    return np.vstack([(b - mean) @ comps for b in blocks])
