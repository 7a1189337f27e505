"""Memory and time at scale: build_graph + one training epoch of each phase + inference on simulated cells.

    python benchmarks/scaling.py --n-cells 50000 --n-genes 2000 --method attentionae

Prints one row per phase with wall time and the peak resident memory of the process (an n x n float32 matrix
alone would take 4 n^2 bytes: 10 GB at 50,000 cells).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _memory import PeakMemory  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cells", type=int, default=50_000)
    ap.add_argument("--n-genes", type=int, default=2000)
    ap.add_argument("--n-groups", type=int, default=10)
    ap.add_argument("--method", default="attentionae")
    ap.add_argument("--n-clusters", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    import scfuse

    if args.threads:
        scfuse.settings.n_threads = args.threads

    rows = []
    with PeakMemory() as total:
        t = time.perf_counter()
        with PeakMemory() as pm:
            adata = scfuse.datasets.simulate(args.n_cells, args.n_genes, args.n_groups, random_state=0)
        rows.append(("simulate", time.perf_counter() - t, pm.peak_gb))
        t = time.perf_counter()
        klass = scfuse.models.get_model_class(args.method)
        with PeakMemory() as pm:
            scfuse.pp.build_graph(adata, method=klass.graph_method)
        rows.append(("build_graph", time.perf_counter() - t, pm.peak_gb))
        t = time.perf_counter()
        with PeakMemory() as pm:
            scfuse.tl.cluster(
                adata, args.method, n_clusters=args.n_clusters, pretrain_epochs=1, max_epochs=1, progress_bar=False
            )
        rows.append(("cluster (1 pretrain + 1 cluster epoch, init, inference)", time.perf_counter() - t, pm.peak_gb))
    n = args.n_cells
    sys.stdout.write(f"{args.method}: {n} cells x {args.n_genes} genes; dense n x n float32 would be {4 * n * n / 1e9:.1f} GB\n")
    sys.stdout.write(f"{'phase':60s} {'time_s':>8s} {'peak_GB':>8s}\n")
    for name, sec, gb in rows:
        sys.stdout.write(f"{name:60s} {sec:8.1f} {gb:8.2f}\n")
    sys.stdout.write(f"{'whole run':60s} {sum(r[1] for r in rows):8.1f} {total.peak_gb:8.2f}\n")
    sys.stdout.write(f"clusters found: {adata.uns[args.method]['n_clusters']}\n")


if __name__ == "__main__":
    main()
