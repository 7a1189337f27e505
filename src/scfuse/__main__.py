"""Command line: ``python -m scfuse demo`` (or ``scfuse demo``) runs the whole job on simulated data."""

from __future__ import annotations

import argparse
import sys
import time


def demo(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scfuse demo", description="Cluster simulated counts and report ARI/NMI.")
    ap.add_argument("--method", default="attentionae")
    ap.add_argument("--n-cells", type=int, default=2000)
    ap.add_argument("--n-genes", type=int, default=1000)
    ap.add_argument("--n-groups", type=int, default=6)
    ap.add_argument("--n-clusters", type=int, default=None, help="default: estimated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="scfuse_demo_umap.png", help="PNG written with the UMAP of the embedding")
    ap.add_argument("--accelerator", default="auto")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import scfuse

    adata = scfuse.datasets.simulate(args.n_cells, args.n_genes, args.n_groups, random_state=args.seed)
    sys.stdout.write(f"simulated {adata.n_obs} cells x {adata.n_vars} genes in {args.n_groups} groups\n")
    t0 = time.perf_counter()
    graph_method = scfuse.models.get_model_class(args.method).graph_method
    scfuse.pp.build_graph(adata, method=graph_method, random_state=args.seed)
    scfuse.tl.cluster(
        adata, args.method, n_clusters=args.n_clusters, random_state=args.seed, accelerator=args.accelerator
    )
    elapsed = time.perf_counter() - t0
    truth, pred = adata.obs["group"], adata.obs[args.method]
    ari = adjusted_rand_score(truth, pred)
    nmi = normalized_mutual_info_score(truth, pred)
    params = adata.uns[args.method]["params"]
    sys.stdout.write(
        f"method={args.method} device={params['device']} clusters={params['n_clusters']} "
        f"(estimated={params['n_clusters_estimated']}) ARI={ari:.3f} NMI={nmi:.3f} time={elapsed:.1f}s\n"
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    scfuse.pl.embedding(adata, args.method, color=args.method, ax=axes[0], show=False, title=f"{args.method} clusters")
    scfuse.pl.embedding(adata, args.method, color="group", ax=axes[1], show=False, title="simulated groups")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    sys.stdout.write(f"wrote {args.plot}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write("usage: python -m scfuse demo [--method NAME] [--n-cells N] [--plot FILE] ...\n")
        return 0 if argv else 2
    if argv[0] == "demo":
        return demo(argv[1:])
    sys.stderr.write(f"unknown command {argv[0]!r}; try: python -m scfuse demo\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
