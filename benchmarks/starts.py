"""The embedding the clustering stage starts from, and how label-free k rules partition it.

    python benchmarks/starts.py --methods attentionae --datasets all --seeds 0 1 2 --out benchmarks/results/starts.tsv

For each method, dataset and seed it trains the method until its clustering start (pretraining, and for the
methods that have one the warm-up) and keeps the embedding that the start reads (cached as ``.npz`` under
``--cache``; nothing else of the run is kept, ``adata`` is left untouched). On that embedding and on the PCA of
scanpy's pipeline it records, per dataset and seed:

- ``kmeans_true_k``: k-means with the true k (reads the number of labels);
- ``leiden_best``: Leiden at the resolution of 0.05-2.0 with the best ARI (reads the labels: an upper bound);
- one row per label-free k rule (``--rules``, those of :func:`scfuse._utils._estimate_k.choose_resolution`) and per
  fixed resolution (``--resolutions``): the number of clusters of the Leiden partition it starts from and its
  ARI. All run on one kNN graph of the embedding, as in scfuse;
- one row per start with the true k (``--given-k-rules``, values of ``given_k_start``): ``given_k_<rule>``;
- with ``--data-view``, ``silhouette_data_view``: the silhouette scan with its partitions scored on the data view
  (``k_scan_view="data"``: the PCA of the z-scored model genes of the scored cells) instead of the embedding.

A start embedding is read from a ``final_*.npz`` of ``final_labels.py`` when one is cached.

These figures say whether a representation clusters better than PCA, and how much of it each k rule keeps,
before the clustering stage adds or loses anything. Labels only score.
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
from run import LABEL_KEY, scanpy_pca

#: resolutions of the label-reading upper bound (as in ../shared/BENCHMARKING.md)
BEST_GRID = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)


class _Captured(Exception):
    pass


def start_embedding(adata, method: str, seed: int, cache: Path) -> np.ndarray:
    """The embedding ``method`` hands to its clustering start (k estimated), from ``cache`` when there."""
    import scfuse

    name = f"{method}_{adata.uns['dataset_name']}_{seed}.npz"
    full = cache / f"final_{name}"  # a whole run of final_labels.py keeps its start embedding too
    if full.exists():
        return np.load(full)["z0"]
    f = cache / name
    if f.exists():
        return np.load(f)["z"]
    cls = scfuse.models.get_model_class(method)
    original = cls._init_clusters

    def spy(self, z):
        raise _Captured(np.array(z, copy=True))

    a = adata.copy()
    scfuse.pp.build_graph(a, method=cls.graph_method, random_state=seed)
    cls._init_clusters = spy
    try:
        scfuse.tl.cluster(a, method, random_state=seed, progress_bar=False)
        raise RuntimeError(f"{method} never reached its clustering start")
    except _Captured as e:
        z = e.args[0]
    finally:
        cls._init_clusters = original
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, z=z)
    return z


def data_view_of(adata, method: str, seed: int) -> np.ndarray:
    """The data view that ``method``'s k scan scores on (``k_scan_view="data"``), without a batch key."""
    import scfuse
    from scfuse._utils import _estimate_k as ek
    from scfuse._utils._validate import get_counts
    from scfuse.models._preprocess import Preprocessor, resolve_mask_var

    cls = scfuse.models.get_model_class(method)
    counts = get_counts(adata, "counts")[0]
    pre = Preprocessor(n_top_genes=cls.n_top_genes, input_transform=cls.input_transform, min_cells=cls.min_cells)
    pre.fit(counts, adata.var_names, resolve_mask_var(adata, "highly_variable")[0])
    return ek.data_view(pre.transform(counts)[0], random_state=seed)


def leiden_scan(graph, grid, seed: int) -> dict[float, np.ndarray]:
    from scfuse._utils._estimate_k import leiden_on_embedding

    return {r: leiden_on_embedding(resolution=r, graph=graph, random_state=seed) for r in grid}


def diagnostics(z: np.ndarray, truth, true_k: int, seed: int, graph) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    best = max(adjusted_rand_score(truth, lab) for lab in leiden_scan(graph, BEST_GRID, seed).values())
    km = KMeans(true_k, n_init=10, random_state=seed).fit_predict(z)
    return {"kmeans_true_k": adjusted_rand_score(truth, km), "leiden_best": best}


def main(argv=None) -> None:
    import scfuse
    from scfuse._utils import _estimate_k as ek

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="*", default=["attentionae"])
    ap.add_argument("--datasets", nargs="+", default=["all"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rules", nargs="+", default=list(ek.K_RULES))
    ap.add_argument("--resolutions", nargs="*", type=float, default=[0.5, 1.0], help="fixed resolutions too")
    ap.add_argument(
        "--given-k-rules",
        nargs="*",
        default=["leiden", "silhouette", "centres"],
        help="starts with the true k (given_k_start values), rows given_k_<rule>",
    )
    ap.add_argument("--no-pca", action="store_true", help="skip the PCA rows")
    ap.add_argument("--data-view", action="store_true", help="also the scan scored on the data view")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="benchmarks/cache", help="folder for the start embeddings (.npz)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    scfuse.settings.n_threads = args.threads
    from sklearn.metrics import adjusted_rand_score

    names = scenarios.expand(args.datasets)
    reps = (["pca"] if not args.no_pca else []) + list(args.methods)
    rows = []
    for name in names:
        adata = scenarios.load(name)
        adata.uns["dataset_name"] = name
        truth = adata.obs[LABEL_KEY].to_numpy()
        true_k = int(adata.obs[LABEL_KEY].nunique())
        for seed in args.seeds:
            for rep in reps:
                t0 = time.perf_counter()
                if rep == "pca":
                    z, metric = scanpy_pca(adata, seed), "euclidean"
                else:
                    z, metric = start_embedding(adata, rep, seed, Path(args.cache)), "cosine"
                graph = ek.embedding_graph(z, metric=metric, random_state=seed)
                base = {"rep": rep, "dataset": name, "seed": seed, "true_k": true_k}
                for what, ari in diagnostics(z, truth, true_k, seed, graph).items():
                    rows.append({**base, "what": what, "ari": ari, "n_clusters": np.nan})
                starts = {
                    rule: ek.choose_resolution(z, metric=metric, random_state=seed, graph=graph, rule=rule)[1]
                    for rule in args.rules
                }
                for res in args.resolutions:
                    starts[f"resolution_{res:g}"] = ek.leiden_on_embedding(
                        resolution=res, graph=graph, random_state=seed
                    )
                if rep != "pca" and args.data_view:
                    view = data_view_of(adata, rep, seed)
                    starts["silhouette_data_view"] = ek.choose_resolution(
                        z, metric=metric, random_state=seed, graph=graph, view=view
                    )[1]
                if rep != "pca":
                    for rule in args.given_k_rules:
                        starts[f"given_k_{rule}"] = ek.initial_clusters(
                            z, true_k, given_k_start=rule, random_state=seed
                        )[0]
                for what, labels in starts.items():
                    rows.append(
                        {
                            **base,
                            "what": what,
                            "ari": adjusted_rand_score(truth, labels),
                            "n_clusters": int(np.unique(labels).size),
                        }
                    )
                done = [r for r in rows if r["rep"] == rep and r["dataset"] == name and r["seed"] == seed]
                print(
                    f"{name:28s} seed={seed} {rep:12s} {time.perf_counter() - t0:6.1f}s "
                    + " ".join(
                        f"{r['what']}={r['ari']:.3f}" + ("" if np.isnan(r["n_clusters"]) else f"({r['n_clusters']})")
                        for r in done
                    ),
                    flush=True,
                )
                if args.out:
                    pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    df = pd.DataFrame(rows)
    print(df.pivot_table(index=["rep", "what"], columns="dataset", values="ari", aggfunc="mean").round(3).to_string())


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "agg")
    main()
