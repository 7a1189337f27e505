"""Where the clustering stage adds or loses: the start partition, the method's final labels, and Leiden on the
final embedding, for the same runs.

    python benchmarks/final_labels.py --methods attentionae --datasets all --seeds 0 1 2 \
        --out benchmarks/results/final_labels.tsv

Each run is ``scfuse.tl.cluster`` with the method's defaults and k estimated. Rows per method, dataset and seed:

- ``head``: the labels scfuse returns now (the clustering stage's assignment);
- ``start``: the partition the clustering stage started from (Leiden on the pretrained embedding at the resolution
  the method's rule picks, or the fixed resolution of a method that has one);
- ``final_scan``: Leiden on a kNN graph of the final embedding at the resolution
  :func:`scfuse._utils._estimate_k.choose_resolution` picks (the label-free scan, no labels);
- ``final_best``: Leiden on the final embedding at the resolution of 0.05-2.0 with the best ARI (reads the labels:
  an upper bound of the representation).

The final and the pretrained embeddings and both label vectors are cached under ``--cache`` (``final_*.npz``), so other label-free
rules can be scored on them later without training again.
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
import scenarios
from run import LABEL_KEY
from starts import BEST_GRID, leiden_scan


def fit(adata, method: str, seed: int, cache: Path) -> dict[str, np.ndarray]:
    """``{"z", "z0", "start", "head", "time_s"}`` (final and pretrained embeddings, start and final labels) of one
    default run (k estimated), from ``cache`` when there."""
    import scfuse

    f = cache / f"final_{method}_{adata.uns['dataset_name']}_{seed}.npz"
    if f.exists():
        return dict(np.load(f))
    cls = scfuse.models.get_model_class(method)
    original = cls._init_clusters
    seen = {}

    def spy(self, z):
        labels, centers = original(self, z)
        # the first start (a method that restarts its clustering stage calls this again)
        seen.setdefault("start", np.asarray(labels).copy())
        seen.setdefault("z0", np.array(z, copy=True))
        return labels, centers

    a = adata.copy()
    del a.obs[LABEL_KEY]  # the run never sees the labels
    scfuse.pp.build_graph(a, method=cls.graph_method, random_state=seed)
    cls._init_clusters = spy
    try:
        t0 = time.perf_counter()
        scfuse.tl.cluster(a, method, random_state=seed, progress_bar=False)
        elapsed = time.perf_counter() - t0
    finally:
        cls._init_clusters = original
    out = {
        "z": np.asarray(a.obsm[f"X_{method}"]),
        "start": seen["start"],
        "z0": seen["z0"],
        "head": a.obs[method].cat.codes.to_numpy(),
        "time_s": np.array(elapsed),
    }
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, **out)
    return out


def main(argv=None) -> None:
    import scfuse
    from scfuse._utils import _estimate_k as ek

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["attentionae"])
    ap.add_argument("--datasets", nargs="+", default=["all"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="benchmarks/cache")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    scfuse.settings.n_threads = args.threads
    from sklearn.metrics import adjusted_rand_score

    rows = []
    for name in scenarios.expand(args.datasets):
        adata = scenarios.load(name)
        adata.uns["dataset_name"] = name
        truth = adata.obs[LABEL_KEY].to_numpy()
        for seed in args.seeds:
            for method in args.methods:
                run = fit(adata, method, seed, Path(args.cache))
                graph = ek.embedding_graph(run["z"], metric="cosine", random_state=seed)
                labels = {
                    "head": run["head"],
                    "start": run["start"],
                    "final_scan": ek.choose_resolution(run["z"], metric="cosine", random_state=seed, graph=graph)[1],
                }
                base = {
                    "method": method,
                    "dataset": name,
                    "seed": seed,
                    "true_k": int(pd.Series(truth).nunique()),
                    "time_s": float(run["time_s"]),
                }
                for what, lab in labels.items():
                    rows.append(
                        {
                            **base,
                            "what": what,
                            "ari": adjusted_rand_score(truth, lab),
                            "n_clusters": int(np.unique(lab).size),
                        }
                    )
                best = max(adjusted_rand_score(truth, lab) for lab in leiden_scan(graph, BEST_GRID, seed).values())
                rows.append({**base, "what": "final_best", "ari": best, "n_clusters": np.nan})
                done = rows[-4:]
                print(
                    f"{name:28s} seed={seed} {method:12s} "
                    + " ".join(f"{r['what']}={r['ari']:.3f}({r['n_clusters']})" for r in done),
                    flush=True,
                )
                if args.out:
                    pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    df = pd.DataFrame(rows)
    print(
        df.pivot_table(index=["method", "what"], columns="dataset", values="ari", aggfunc="mean").round(3).to_string()
    )


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "agg")
    main()
