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
from _memory import PeakMemory  # noqa: E402

LABEL_KEY = "cell_type"


def scores(truth, pred) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return adjusted_rand_score(truth, pred), normalized_mutual_info_score(truth, pred)


def run_scanpy(adata, seed: int, true_k: int) -> list[dict]:
    import scanpy as sc
    from sklearn.cluster import KMeans

    rows = []
    t0 = time.perf_counter()
    with PeakMemory() as pm:
        a = adata.copy()
        a.X = a.layers["counts"].copy()
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
        sc.pp.highly_variable_genes(a, n_top_genes=min(2000, a.n_vars))
        a = a[:, a.var["highly_variable"]].copy()
        sc.pp.scale(a)
        sc.pp.pca(a, n_comps=50, random_state=seed)
        sc.pp.neighbors(a, n_neighbors=15, random_state=seed)
        t_pre = time.perf_counter() - t0
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.tl.leiden(a, resolution=1.0, random_state=seed, flavor="igraph", n_iterations=-1, directed=False)
    pred = a.obs["leiden"].to_numpy()
    ari, nmi = scores(adata.obs[LABEL_KEY], pred)
    rows.append(dict(method="scanpy_leiden", k_mode="estimated", ari=ari, nmi=nmi, n_clusters=len(set(pred)),
                     time_s=t_pre + time.perf_counter() - t1, peak_gb=pm.peak_gb))
    t1 = time.perf_counter()
    pred = KMeans(true_k, n_init=10, random_state=seed).fit_predict(a.obsm["X_pca"])
    ari, nmi = scores(adata.obs[LABEL_KEY], pred)
    rows.append(dict(method="pca_kmeans", k_mode="true_k", ari=ari, nmi=nmi, n_clusters=true_k,
                     time_s=t_pre + time.perf_counter() - t1, peak_gb=pm.peak_gb))
    return rows


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
    return dict(method=method, k_mode="estimated" if n_clusters is None else "true_k", ari=ari, nmi=nmi,
                n_clusters=int(p["n_clusters"]), time_s=elapsed, peak_gb=pm.peak_gb,
                epochs=f"{p.get('pretrain_epochs_trained', '')}+{p.get('cluster_epochs_trained', '')}",
                converged=a.uns[method]["converged"])


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
    names = scfuse.datasets.available() if args.datasets == ["all"] else args.datasets
    if not names:
        raise SystemExit(f"No datasets found in {scfuse.settings.data_dir}; set SCFUSE_DATA_DIR.")
    rows = []
    pd.set_option("display.width", 200)
    for name in names:
        adata = scfuse.datasets.load(name)
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
        .agg(ari=("ari", "mean"), ari_sd=("ari", "std"), nmi=("nmi", "mean"), k=("n_clusters", "mean"),
             time_s=("time_s", "mean"), peak_gb=("peak_gb", "max"), runs=("seed", "count"))
        .round(3)
    )
    print("\nMeans over seeds per dataset\n" + summary.to_string())
    overall = df.groupby(["method", "k_mode"]).agg(ari=("ari", "mean"), nmi=("nmi", "mean")).round(3)
    print("\nMeans over all datasets and seeds\n" + overall.to_string())


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "agg")
    main()
