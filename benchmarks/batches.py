"""Two samples in one dataset: ``baron_mouse1`` and ``baron_mouse2`` (two donors of one tissue, 13 shared cell
types) clustered together, with and without ``batch_key``.

    python benchmarks/batches.py --methods attentionae --seed 0 --out benchmarks/results/batches.tsv

Rows per method: each donor alone (``single``, the reference ARI), the 1,886 concatenated cells without
``batch_key`` (``concat``) and with ``batch_key="donor"`` (``concat_batch_key``, the graph built with the same
key); and scanpy's Leiden pipeline on the concatenated cells, at resolution 1 and with its graph batch-balanced
(bbknn-style, :func:`scfuse.pp.build_graph` with ``batch_key`` on scanpy's PCA). Columns: ARI to the cell types
and the batch entropy, the mean over cells of the entropy of the donors in the cell's cluster divided by
``log(2)`` (1: every cluster holds both donors half and half; the donors' own sizes, 822 and 1,064 cells, cap it
at 0.988). A ``cell_types`` row scores the annotation itself: its batch entropy is what a perfect clustering
reaches, lower than the cap wherever the donors hold the types in different proportions. Labels only score.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from run import LABEL_KEY

DONORS = ("baron_mouse1", "baron_mouse2")


def batch_entropy(labels: np.ndarray, batches: np.ndarray) -> float:
    """Mean over cells of the entropy of the batches in the cell's cluster, over ``log(n_batches)``."""
    tab = pd.crosstab(labels, batches).to_numpy().astype(float)
    p = tab / tab.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    return float((h * tab.sum(axis=1)).sum() / tab.sum() / np.log(tab.shape[1]))


def concatenated():
    import anndata as ad

    import scfuse

    parts = [scfuse.datasets.load(name) for name in DONORS]
    adata = ad.concat(parts, join="inner", label="donor", keys=list(DONORS), index_unique="-")
    adata.obs["donor"] = adata.obs["donor"].astype("category")
    return adata


def run_method(adata, method: str, seed: int, batch_key: str | None) -> tuple[np.ndarray, float]:
    import scfuse

    a = adata.copy()
    del a.obs[LABEL_KEY]
    klass = scfuse.models.get_model_class(method)
    t = time.perf_counter()
    scfuse.pp.build_graph(a, method=klass.graph_method, batch_key=batch_key, random_state=seed)
    scfuse.tl.cluster(a, method, batch_key=batch_key, random_state=seed, progress_bar=False)
    return a.obs[method].to_numpy(), time.perf_counter() - t


def scanpy_leiden(adata, seed: int, batch_key: str | None) -> np.ndarray:
    import scanpy as sc

    import scfuse

    a = sc.AnnData(adata.X.copy(), obs=adata.obs[["donor"]].copy())
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=2000, subset=True)
    sc.pp.scale(a, max_value=10)
    sc.pp.pca(a, n_comps=50, random_state=seed)
    if batch_key is None:
        sc.pp.neighbors(a, n_neighbors=15, random_state=seed)
        key = "neighbors"
    else:
        scfuse.pp.build_graph(
            a, method="umap", use_rep="X_pca", metric="euclidean", batch_key=batch_key, key_added="balanced"
        )
        key = "balanced"
    sc.tl.leiden(
        a, resolution=1.0, flavor="igraph", n_iterations=2, directed=False, random_state=seed, neighbors_key=key
    )
    return a.obs["leiden"].to_numpy()


def main(argv=None) -> None:
    import scfuse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="*", default=["attentionae"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-singles", action="store_true", help="skip the single-donor runs")
    ap.add_argument("--no-concat", action="store_true", help="only the single-donor runs (no scanpy rows either)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    scfuse.settings.n_threads = args.threads
    from sklearn.metrics import adjusted_rand_score

    adata = concatenated()
    truth, donors = adata.obs[LABEL_KEY].to_numpy(), adata.obs["donor"].to_numpy()
    rows = []

    def record(method, what, labels, truth_, batches=None, time_s=np.nan):
        row = {
            "method": method,
            "what": what,
            "seed": args.seed,
            "ari": adjusted_rand_score(truth_, labels),
            "n_clusters": int(pd.Series(labels).nunique()),
            "time_s": time_s,
            "batch_entropy": batch_entropy(labels, batches) if batches is not None else np.nan,
        }
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        if args.out:
            pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)

    concat = () if args.no_concat else ((None, "concat"), ("donor", "concat_batch_key"))
    if concat:
        record("cell_types", "concat", truth, truth, donors)
    for bk, what in concat:
        record("scanpy_leiden", what, scanpy_leiden(adata, args.seed, bk), truth, donors)
    for method in args.methods:
        if not args.no_singles:
            for name in DONORS:
                one = scfuse.datasets.load(name)
                labels, t = run_method(one, method, args.seed, None)
                record(method, f"single_{name}", labels, one.obs[LABEL_KEY].to_numpy(), time_s=t)
        for bk, what in concat:
            labels, t = run_method(adata, method, args.seed, bk)
            record(method, what, labels, truth, donors, time_s=t)


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "agg")
    main()
