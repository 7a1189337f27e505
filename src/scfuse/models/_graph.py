"""The cell graph a model reads: found, checked, recomputed for the method's weights when built otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from scanpy import logging as logg

from scfuse._utils._graph import edge_weights, knn_table

if TYPE_CHECKING:
    from anndata import AnnData


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
        _check_balanced(adata, neighbors_key, obsp, batch_key)
    if obsp is not None:
        if obsp not in adata.obsp:
            raise KeyError(f"obsp={obsp!r} not found in adata.obsp (available: {list(adata.obsp.keys())}).")
        conn, info = adata.obsp[obsp], {"graph_weights": "as given (obsp)"}
    else:
        conn, info = _graph_under_key(adata, neighbors_key or "neighbors", weights, batch_key)
    if conn.shape != (adata.n_obs, adata.n_obs):
        raise ValueError(f"The graph has shape {conn.shape}, but adata has {adata.n_obs} cells.")
    conn = sp.csr_matrix(conn, dtype=np.float32)
    if conn.nnz and not np.all(np.isfinite(conn.data)):
        raise ValueError("The graph holds NaN or infinite weights.")
    if conn.nnz and conn.data.min() < 0:
        raise ValueError("The graph holds negative weights.")
    return conn, info


def _check_balanced(adata: AnnData, neighbors_key: str | None, obsp: str | None, batch_key: str) -> None:
    """Refuse a graph that was not built batch-balanced for ``batch_key``."""
    key = neighbors_key or "neighbors"
    built_for = adata.uns.get(key, {}).get("params", {}).get("batch_key") if obsp is None else None
    if built_for != batch_key:
        raise ValueError(
            f"batch_key={batch_key!r} needs a batch-balanced graph: "
            + (
                f"obsp={obsp!r} is not one scfuse can check. "
                if obsp is not None
                else f"the graph {key!r} was built "
                + ("without a batch_key. " if built_for is None else f"for batch_key={built_for!r}. ")
            )
            + f"Run scfuse.pp.build_graph(adata, batch_key={batch_key!r}, method=...) first."
        )


def _graph_under_key(adata: AnnData, key: str, weights: str | None, batch_key: str | None) -> tuple[sp.spmatrix, dict]:
    """The connectivities under ``uns[key]`` and their record; recomputed for ``weights`` when built otherwise."""
    if key not in adata.uns or "connectivities_key" not in adata.uns[key]:
        raise KeyError(
            f"No graph under neighbors_key={key!r} (adata.uns[{key!r}] is missing). "
            f"Run scfuse.pp.build_graph(adata, key_added={key!r}) first, or pass the key of an existing graph."
        )
    ckey = adata.uns[key]["connectivities_key"]
    if ckey not in adata.obsp:
        raise KeyError(f"adata.uns[{key!r}] names obsp[{ckey!r}], which does not exist.")
    conn = adata.obsp[ckey]
    params = adata.uns[key].get("params", {})
    built = params.get("method")
    info: dict = {"graph_weights": str(built) if built is not None else "unknown"}
    if batch_key is not None:
        info["graph_batch_key"] = batch_key
    if "n_neighbors" in params:
        info["graph_n_neighbors"] = int(params["n_neighbors"])
    dkey = adata.uns[key].get("distances_key")
    if weights is not None and built is not None and built != weights and dkey in adata.obsp:
        logg.warning(
            f"The graph {key!r} has {built!r} edge weights, but the method was built for {weights!r}: its "
            f"weights are recomputed from the graph's kNN distances (adata is not changed). "
            f"scfuse.pp.build_graph(adata, method={weights!r}) avoids this."
        )
        idx, dist = knn_table(adata.obsp[dkey])
        metric, seed = str(params.get("metric", "euclidean")), int(params.get("random_state", 0) or 0)
        conn = edge_weights(idx, dist, weights, metric=metric, random_state=seed)
        info["graph_weights"] = f"{weights} (recomputed from {built!r})"
    return conn, info
