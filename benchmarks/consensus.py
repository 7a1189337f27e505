"""Several trainings of one method on one dataset, combined without labels: which way holds?

    python benchmarks/final_labels.py --methods attentionae --datasets all --seeds 0 1 2 3 4 5 6 7 8
    python benchmarks/consensus.py --method attentionae --seeds 0 1 2 3 4 5 6 7 8 \
        --out benchmarks/results/consensus_attentionae.tsv

Reads the default runs (k estimated) that ``final_labels.py`` cached (``--cache``), splits the seeds into groups
of ``--fits`` in order ({0, 1, 2}, {3, 4, 5}, ...) and scores per group, next to each single run (``single``):

- ``most_typical``: the run whose labels have the highest mean ARI to the group's other runs, the rule of
  ``scfuse.tl.cluster(n_fits=3)``. Here each run's cell graph was built with its own seed (as the harness does
  per seed); ``n_fits`` shares the graph the user built, so ``benchmarks/run.py --set n_fits=3`` measures it
  exactly;
- ``coassoc_res1``: the union of the runs' 15-nearest-neighbour graphs (cosine, final embeddings), each edge
  weighted by the share of runs that put its two cells in one cluster; Leiden at resolution 1 on it;
- ``coassoc_median_k``: the same graph, Leiden bisected to the median of the runs' numbers of clusters;
- ``concat_scan``: the runs' embeddings (each cell's vector scaled to unit length) side by side, so the cosine
  there is the mean of the runs' cosines; scfuse's label-free resolution scan on it.

The labels only score. Prints the mean ARI (and its standard deviation over groups) per candidate and dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
import scenarios
from run import LABEL_KEY, _leiden, leiden_to_true_k, scores

N_NEIGHBORS = 15


def coassociation_graph(runs: list[dict], seed: int):
    """An AnnData whose neighbors graph is the union of the runs' kNN graphs, weighted by co-clustering."""
    import anndata as ad

    from scfuse._utils._graph import knn_search

    n = runs[0]["z"].shape[0]
    edges = []
    for r in runs:
        idx, _ = knn_search(r["z"].astype(np.float32), N_NEIGHBORS, metric="cosine", random_state=seed)
        edges.append(sp.coo_matrix((np.ones(idx.size), (np.repeat(np.arange(n), idx.shape[1]), idx.ravel())), (n, n)))
    both = sum(edges)
    union = sp.triu(both + both.T, k=1).tocoo()
    weight = np.mean([r["head"][union.row] == r["head"][union.col] for r in runs], axis=0)
    keep = weight > 0
    w = sp.coo_matrix((weight[keep], (union.row[keep], union.col[keep])), (n, n)).tocsr()
    a = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(n)]))
    a.obsp["connectivities"] = (w + w.T).tocsr()
    a.uns["neighbors"] = {"connectivities_key": "connectivities", "params": {"method": "coassociation"}}
    return a


def combine(runs: list[dict], seed: int) -> dict[str, np.ndarray]:
    from scfuse._utils import _estimate_k as ek

    agree = ek.agreement([r["head"] for r in runs])
    graph = coassociation_graph(runs, seed)
    median_k = int(np.median([np.unique(r["head"]).size for r in runs]))
    side = np.hstack([r["z"] / np.maximum(np.linalg.norm(r["z"], axis=1, keepdims=True), 1e-12) for r in runs])
    return {
        "most_typical": runs[int(np.argmax(agree))]["head"],
        "coassoc_res1": _leiden(graph, 1.0, seed),
        "coassoc_median_k": leiden_to_true_k(graph, median_k, seed),
        "concat_scan": ek.choose_resolution(side / np.sqrt(len(runs)), metric="cosine", random_state=seed)[1],
    }


def score(truth: np.ndarray, labels: np.ndarray, row: dict) -> dict:
    ari, nmi = scores(truth, labels)
    return {**row, "ari": ari, "nmi": nmi, "n_clusters": int(np.unique(labels).size)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="attentionae")
    ap.add_argument("--datasets", nargs="+", default=["all"])
    ap.add_argument("--seeds", nargs="+", type=int, default=list(range(9)))
    ap.add_argument("--fits", type=int, default=3, help="runs per group")
    ap.add_argument("--cache", default="benchmarks/cache")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    rows = []
    for name in scenarios.expand(args.datasets):
        truth = scenarios.load(name).obs[LABEL_KEY].to_numpy()
        runs = {s: dict(np.load(Path(args.cache) / f"final_{args.method}_{name}_{s}.npz")) for s in args.seeds}

        for g in range(len(args.seeds) // args.fits):
            seeds = args.seeds[g * args.fits : (g + 1) * args.fits]
            base = {"method": args.method, "dataset": name, "group": g}
            rows += [score(truth, runs[s]["head"], {**base, "seed": s, "what": "single"}) for s in seeds]
            combined = combine([runs[s] for s in seeds], seeds[0])
            rows += [score(truth, lab, {**base, "seed": seeds[0], "what": w}) for w, lab in combined.items()]
            print(name, seeds, {r["what"]: round(r["ari"], 3) for r in rows[-4:]}, flush=True)
        if args.out:
            pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    df = pd.DataFrame(rows)
    per_group = df.groupby(["what", "dataset", "group"])["ari"].mean()  # singles: the mean of the group's runs
    table = per_group.groupby(["what", "dataset"]).agg(["mean", "std"]).unstack("dataset").round(3)
    print(table.to_string())
    print(per_group.groupby("what").mean().round(3).to_string())


if __name__ == "__main__":
    main()
