"""Benchmark harness: scfuse methods and scanpy baselines on the real datasets, several seeds.

    python benchmarks/run.py --methods attentionae --datasets all --seeds 0 1 2 --out benchmarks/results/attentionae.tsv

For each dataset and seed it runs every method with ``n_clusters=None`` (k estimated) and with the true k, plus
scanpy's default pipeline (normalize_total, log1p, 2000 HVG, scale, PCA 50, neighbors 15, Leiden resolution 1)
and k-means with the true k on that PCA. Labels are read only to score the result (ARI, NMI). Prints a table per
run and the means per dataset, and writes all rows to ``--out`` (TSV).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import scenarios
from _memory import PeakMemory

LABEL_KEY = "cell_type"


def scores(truth, pred) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return adjusted_rand_score(truth, pred), normalized_mutual_info_score(truth, pred)


def scanpy_pipeline(adata, seed: int):
    """scanpy's default pipeline up to the neighbours graph: normalize_total, log1p, 2,000 HVG, scale, PCA 50,
    neighbors 15 (on a copy)."""
    import scanpy as sc

    a = adata.copy()
    a.X = a.layers["counts"].copy()
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=min(2000, a.n_vars))
    a = a[:, a.var["highly_variable"]].copy()
    sc.pp.scale(a)
    sc.pp.pca(a, n_comps=50, random_state=seed)
    sc.pp.neighbors(a, n_neighbors=15, random_state=seed)
    return a


def scanpy_pca(adata, seed: int) -> np.ndarray:
    return np.asarray(scanpy_pipeline(adata, seed).obsm["X_pca"], dtype=np.float32)


#: resolutions of the Leiden baselines that scan (the label-reading upper bound and the silhouette pick on PCA)
BASELINE_GRID = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)


def _leiden(a, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.leiden(a, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=-1, directed=False)
    return a.obs["leiden"].to_numpy()


def leiden_to_true_k(a, true_k: int, seed: int) -> np.ndarray:
    """Leiden bisected on the resolution until it finds ``true_k`` communities (or the closest of 30 tries)."""
    lo, hi, best = 0.0, 4.0, None
    for _ in range(30):
        res = (lo + hi) / 2
        pred = _leiden(a, res, seed)
        k = len(set(pred))
        if best is None or abs(k - true_k) < abs(best[0] - true_k):
            best = (k, pred)
        if k == true_k:
            break
        lo, hi = (res, hi) if k < true_k else (lo, res)
    return best[1]


def run_scanpy(adata, seed: int, true_k: int) -> list[dict]:
    """The baselines on scanpy's pipeline: Leiden at resolution 1; Leiden at the resolution that scfuse's own
    label-free rule picks (its default rule and grid, scanpy's graph, Euclidean silhouette on the PCA); the same with the highest Euclidean
    silhouette on 0.05-2.0; Leiden bisected to the true k; k-means with the true k; and, reading the labels,
    Leiden at the resolution of 0.05-2.0 with the best ARI (an upper bound, not a method)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from scfuse._utils._estimate_k import choose_resolution, leiden_on_embedding

    truth = adata.obs[LABEL_KEY]
    rows = []

    def add(method, k_mode, pred, seconds, pm):
        ari, nmi = scores(truth, pred)
        rows.append(
            {
                "method": method,
                "k_mode": k_mode,
                "ari": ari,
                "nmi": nmi,
                "n_clusters": len(set(pred)),
                "time_s": seconds,
                "peak_gb": pm.peak_gb,
            }
        )

    t0 = time.perf_counter()
    with PeakMemory() as pm:
        a = scanpy_pipeline(adata, seed)
        t_pre = time.perf_counter() - t0
        t1 = time.perf_counter()
        add("scanpy_leiden", "estimated", _leiden(a, 1.0, seed), t_pre + time.perf_counter() - t1, pm)
        pca = np.asarray(a.obsm["X_pca"], dtype=np.float32)
        t1 = time.perf_counter()
        _, pred, _ = choose_resolution(pca, metric="euclidean", random_state=seed, graph=_scanpy_igraph(a))
        add("leiden_scfuse_rule", "estimated", pred, t_pre + time.perf_counter() - t1, pm)
        t1 = time.perf_counter()
        graph = _scanpy_igraph(a)
        _, pred, _ = choose_resolution(
            pca, grid=BASELINE_GRID, rule="silhouette_max", metric="euclidean", random_state=seed, graph=graph
        )
        add("leiden_silhouette", "estimated", pred, t_pre + time.perf_counter() - t1, pm)
        t1 = time.perf_counter()
        add("leiden_true_k", "true_k", leiden_to_true_k(a, true_k, seed), t_pre + time.perf_counter() - t1, pm)
        t1 = time.perf_counter()
        add(
            "pca_kmeans",
            "true_k",
            KMeans(true_k, n_init=10, random_state=seed).fit_predict(pca),
            t_pre + time.perf_counter() - t1,
            pm,
        )
        t1 = time.perf_counter()
        # the same partitions as leiden_silhouette chooses from, so the bound holds for that rule
        best = max(
            (leiden_on_embedding(resolution=r, graph=graph, random_state=seed) for r in BASELINE_GRID),
            key=lambda p: adjusted_rand_score(truth, p),
        )
        add("leiden_best_ari", "reads_labels", best, t_pre + time.perf_counter() - t1, pm)
    return rows


def _scanpy_igraph(a):
    """scanpy's neighbours graph (connectivities) as a weighted igraph, for scfuse's resolution rules."""
    import igraph as ig
    import scipy.sparse as sp

    conn = sp.triu(a.obsp["connectivities"], k=1).tocoo()
    g = ig.Graph(n=a.n_obs, edges=np.column_stack([conn.row, conn.col]).tolist(), directed=False)
    g.es["weight"] = conn.data.astype(float).tolist()
    return g


def run_method(adata, method: str, seed: int, n_clusters, extra: dict) -> dict:
    import scfuse

    a = adata.copy()
    t0 = time.perf_counter()
    with PeakMemory() as pm:
        graph_method = extra.pop("graph_method", None) or scfuse.models.get_model_class(method).graph_method
        scfuse.pp.build_graph(a, method=graph_method, random_state=seed)
        scfuse.tl.cluster(a, method, n_clusters=n_clusters, random_state=seed, progress_bar=False, **extra)
    elapsed = time.perf_counter() - t0
    pred = a.obs[method].to_numpy()
    ari, nmi = scores(adata.obs[LABEL_KEY], pred)
    p = a.uns[method]["params"]
    return {
        "method": method,
        "k_mode": "estimated" if n_clusters is None else "true_k",
        "ari": ari,
        "nmi": nmi,
        "n_clusters": int(p["n_clusters"]),
        "time_s": elapsed,
        "peak_gb": pm.peak_gb,
        "epochs": f"{p.get('pretrain_epochs_trained', '')}+{p.get('cluster_epochs_trained', '')}",
        "converged": a.uns[method]["converged"],
    }


def main(argv=None) -> None:
    import scfuse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="*", default=["attentionae"])
    ap.add_argument("--datasets", nargs="+", default=["all"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--k-modes", nargs="+", default=["estimated", "true_k"], choices=["estimated", "true_k"])
    ap.add_argument("--no-baseline", action="store_true", help="skip the scanpy baselines")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", default=None, help="TSV file for all rows")
    ap.add_argument("--set", nargs="*", default=[], help="extra tl.cluster arguments, key=value (python literal)")
    args = ap.parse_args(argv)
    if args.threads:
        # training and inference run on this many torch threads (and record it in uns[key]["params"])
        scfuse.settings.n_threads = args.threads
    import ast

    extra = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            extra[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            extra[k] = v
    names = scenarios.expand(args.datasets)
    if not names:
        raise SystemExit(f"No datasets found in {scfuse.settings.data_dir}; set SCFUSE_DATA_DIR.")
    rows = []
    pd.set_option("display.width", 200)
    for name in names:
        adata = scenarios.load(name)
        true_k = adata.obs[LABEL_KEY].nunique()
        for seed in args.seeds:
            new = []
            if not args.no_baseline:
                new += run_scanpy(adata, seed, true_k)
            for method in args.methods:
                for mode in args.k_modes:
                    new.append(run_method(adata, method, seed, None if mode == "estimated" else true_k, dict(extra)))
            for r in new:
                r.update(dataset=name, n_cells=adata.n_obs, true_k=true_k, seed=seed)
                print(
                    f"{name:28s} seed={seed} {r['method']:14s} {r['k_mode']:9s} ARI={r['ari']:.3f} "
                    f"NMI={r['nmi']:.3f} k={r['n_clusters']:3d} time={r['time_s']:7.1f}s peak={r['peak_gb']:.2f}GB "
                    f"{r.get('epochs', '')}",
                    flush=True,
                )
            rows += new
            if args.out:
                pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    df = pd.DataFrame(rows)
    summary = (
        df.groupby(["method", "k_mode", "dataset"])
        .agg(
            ari=("ari", "mean"),
            ari_sd=("ari", "std"),
            nmi=("nmi", "mean"),
            k=("n_clusters", "mean"),
            time_s=("time_s", "mean"),
            peak_gb=("peak_gb", "max"),
            runs=("seed", "count"),
        )
        .round(3)
    )
    print("\nMeans over seeds per dataset\n" + summary.to_string())
    overall = df.groupby(["method", "k_mode"]).agg(ari=("ari", "mean"), nmi=("nmi", "mean")).round(3)
    print("\nMeans over all datasets and seeds\n" + overall.to_string())


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "agg")
    main()
