"""Time and memory of full default fits at scale, next to scanpy's Leiden pipeline on the same cells.

    python benchmarks/scaling.py --n-cells 100000 --method attentionae --threads 2
    python benchmarks/scaling.py --n-cells 100000 --method attentionae --accelerator cuda

In one process: simulated counts (sparse), scanpy's pipeline on a copy (normalize_total, log1p, 2,000 HVGs, PCA,
neighbors, Leiden at resolution 1), then ``scfuse.pp.build_graph`` and ``scfuse.tl.cluster`` with the method's
defaults and k estimated. Each phase's wall time and the peak resident memory of the process while it ran are
printed and appended to ``--out`` (TSV), with the ARI of both clusterings against the simulated groups and the
ratio of scfuse's time (graph + cluster) to scanpy's.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _memory import PeakMemory


def _phase(rows: list, name: str, fn):
    t = time.perf_counter()
    with PeakMemory() as pm:
        out = fn()
    rows.append({"phase": name, "time_s": round(time.perf_counter() - t, 1), "peak_gb": round(pm.peak_gb, 2)})
    return out


def scanpy_pipeline(adata, seed: int = 0):
    """scanpy's standard clustering on a copy of the counts; returns the Leiden labels."""
    import scanpy as sc

    ad = sc.AnnData(adata.layers["counts"].copy())
    sc.pp.normalize_total(ad)
    sc.pp.log1p(ad)
    sc.pp.highly_variable_genes(ad, n_top_genes=2000, subset=True)
    sc.pp.pca(ad, n_comps=50, random_state=seed)
    sc.pp.neighbors(ad, n_neighbors=15, random_state=seed)
    sc.tl.leiden(ad, resolution=1.0, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    return ad.obs["leiden"].to_numpy()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, default=100_000)
    ap.add_argument("--n-genes", type=int, default=2000)
    ap.add_argument("--n-groups", type=int, default=10)
    ap.add_argument("--library-size", type=float, default=2000.0, help="median counts per cell of the simulation")
    ap.add_argument("--method", default="attentionae")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--no-scanpy", action="store_true", help="skip the scanpy pipeline")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.tsv"))
    args = ap.parse_args(argv)
    import numpy as np
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    import scfuse

    if args.threads:
        scfuse.settings.n_threads = args.threads
    rows: list[dict] = []
    with PeakMemory() as total:
        adata = _phase(
            rows,
            "simulate",
            lambda: scfuse.datasets.simulate(
                args.n_cells, args.n_genes, args.n_groups, library_size=args.library_size, random_state=0
            ),
        )
        truth = adata.obs["group"].to_numpy()
        density = adata.layers["counts"].nnz / (adata.n_obs * adata.n_vars)
        if not args.no_scanpy:
            labels = _phase(rows, "scanpy pipeline", lambda: scanpy_pipeline(adata))
            rows[-1].update(ari=round(adjusted_rand_score(truth, labels), 3), k=len(set(labels)))
            del labels
            gc.collect()
        klass = scfuse.models.get_model_class(args.method)
        _phase(rows, "scfuse build_graph", lambda: scfuse.pp.build_graph(adata, method=klass.graph_method))
        _phase(
            rows,
            "scfuse cluster",
            lambda: scfuse.tl.cluster(adata, args.method, accelerator=args.accelerator, progress_bar=False),
        )
        rec = adata.uns[args.method]
        rows[-1].update(
            ari=round(adjusted_rand_score(truth, adata.obs[args.method].to_numpy()), 3), k=rec["n_clusters"]
        )
    times = {r["phase"]: r["time_s"] for r in rows}
    ratio = (
        (times["scfuse build_graph"] + times["scfuse cluster"]) / times["scanpy pipeline"]
        if "scanpy pipeline" in times
        else np.nan
    )
    params = rec["params"]
    meta = {
        "method": args.method,
        "n_cells": args.n_cells,
        "n_genes": args.n_genes,
        "density": round(density, 3),
        "threads": scfuse.settings.n_threads or os.cpu_count(),
        "device": params.get("device", args.accelerator),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "pretrain_epochs": params.get("pretrain_epochs"),
        "cluster_epochs": params.get("cluster_epochs_trained"),
        "steps_per_epoch": str(params.get("steps_per_epoch", {})),
        "scfuse_over_scanpy_time": round(ratio, 2),
        "whole_run_peak_gb": round(total.peak_gb, 2),
    }
    table = pd.DataFrame([{**meta, **r} for r in rows])
    sys.stdout.write(table[["phase", "time_s", "peak_gb", "ari", "k"]].to_string(index=False) + "\n")
    sys.stdout.write(" ".join(f"{k}={v}" for k, v in meta.items()) + "\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, sep="\t", index=False, mode="a", header=not out.exists())


if __name__ == "__main__":
    main()
