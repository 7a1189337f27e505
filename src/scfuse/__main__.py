"""Command line: ``scfuse cluster`` (or ``python -m scfuse cluster``) clusters an ``.h5ad`` file for pipelines.

``scfuse demo`` runs the whole job on simulated data; ``scfuse --version``.
Log lines go to stderr. Exit status: 0 on success, 2 for bad arguments or input (a one-line message on stderr),
1 for any other failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_EXAMPLE = """\
example:
  scfuse cluster pbmc.h5ad -o pbmc_clustered.h5ad --method scdefer --n-clusters 8 --seed 0 --threads 4
"""
_CLUSTER_EXAMPLE = (
    _EXAMPLE
    + """
The input holds raw counts in layers["counts"] (or in X: --layer X). The cell graph is built with the edge
weights the method was published with (scfuse.pp.build_graph), then scfuse.tl.cluster runs; the output holds
the labels in obs[METHOD], the embedding in obsm["X_METHOD"], soft assignments in obsm["METHOD_proba"] and the
run record in uns[METHOD]. Exit status: 0 success, 2 bad arguments or input, 1 other failures."""
)


class BadInput(Exception):
    """An argument or input file the command cannot use (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(err: BaseException) -> str:
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(msg).split())


def _int_at_least(minimum: int, what: str):
    """Argparse type: an integer >= ``minimum``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = None
        if n is None or n < minimum:
            raise argparse.ArgumentTypeError(f"invalid {what} {value!r} (an integer >= {minimum})")
        return n

    return parse


def _resolution(value: str) -> float | str:
    if value == "scan":
        return value
    try:
        r = float(value)
    except ValueError:
        r = -1.0
    if not r > 0:
        raise argparse.ArgumentTypeError(f"invalid resolution {value!r} (a positive number or 'scan')")
    return r


def cluster(args: argparse.Namespace) -> int:
    """``scfuse cluster``: read, build the method's graph, cluster, write (global settings restored after)."""
    import scanpy as sc

    import scfuse

    before = sc.settings.verbosity, scfuse.settings.n_threads
    sc.settings.verbosity = 1 if args.quiet else 2  # scanpy's log goes to stderr
    try:
        return _cluster(args)
    finally:
        sc.settings.verbosity, scfuse.settings.n_threads = before


def _cluster(args: argparse.Namespace) -> int:
    import anndata as ad

    import scfuse

    methods = scfuse.models.registered_methods()
    if args.method not in methods:
        raise BadInput(f"unknown method {args.method!r}; known methods: {', '.join(sorted(methods))}")
    src, out = Path(args.input), Path(args.output)
    if not src.is_file():
        raise BadInput(f"input file {str(src)!r} not found")
    if not out.parent.is_dir():
        raise BadInput(f"output folder {str(out.parent)!r} does not exist")
    if args.threads is not None:
        scfuse.settings.n_threads = args.threads
    try:
        adata = ad.read_h5ad(src)
    except Exception as err:
        raise BadInput(f"cannot read {str(src)!r} as .h5ad: {_one_line(err)}") from err
    if args.n_clusters is not None and args.n_clusters > adata.n_obs:
        raise BadInput(f"--n-clusters {args.n_clusters} exceeds the number of cells ({adata.n_obs})")
    layer = None if args.layer == "X" else args.layer
    t0 = time.perf_counter()
    graph_method = methods[args.method].graph_method
    try:
        scfuse.pp.build_graph(adata, method=graph_method, layer=layer, batch_key=args.batch_key, random_state=args.seed)
        scfuse.tl.cluster(
            adata,
            args.method,
            n_clusters=args.n_clusters,
            batch_key=args.batch_key,
            resolution=args.resolution,
            layer=layer,
            pretrain_epochs=args.pretrain_epochs,
            max_epochs=args.max_epochs,
            random_state=args.seed,
            n_fits=args.n_fits,
            accelerator=args.accelerator,
        )
    except (ValueError, KeyError, TypeError) as err:  # scfuse's input checks (run before training)
        raise BadInput(_one_line(err)) from err
    tmp = out.with_name(f".{out.name}.partial")
    adata.write_h5ad(tmp)
    os.replace(tmp, out)  # the output appears whole or not at all
    k = adata.uns[args.method]["n_clusters"]
    elapsed = time.perf_counter() - t0
    sys.stderr.write(f"scfuse: {adata.n_obs} cells in {k} clusters ({args.method}, {elapsed:.1f} s); wrote {out}\n")
    return 0


def demo(args: argparse.Namespace) -> int:
    """``scfuse demo``: cluster simulated counts and report ARI/NMI (on stdout)."""
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


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``scfuse`` (subcommands ``cluster`` and ``demo``)."""
    from scfuse._version import __version__

    ap = _Parser(
        prog="scfuse",
        description="Deep fusion clustering of single-cell RNA-seq (.h5ad in, .h5ad out).",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"scfuse {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser(
        "cluster",
        help="cluster the cells of an .h5ad file",
        description="Cluster the cells of an .h5ad file with a deep fusion model and write the result.",
        epilog=_CLUSTER_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("input", metavar="IN.h5ad", help="input file, raw counts in layers['counts'] or X")
    c.add_argument("-o", "--output", metavar="OUT.h5ad", required=True, help="output file (replaced if present)")
    from scfuse.models import registered_methods

    c.add_argument("--method", required=True, help=", ".join(registered_methods()))
    c.add_argument("--n-clusters", type=_int_at_least(2, "number of clusters"), metavar="K", help="default: estimated")
    c.add_argument("--layer", default="counts", help="layer with raw counts; X for adata.X (default: counts)")
    c.add_argument("--batch-key", metavar="B", help="obs column naming each cell's sample: a batch-balanced graph")
    c.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    c.add_argument(
        "--n-fits",
        type=_int_at_least(1, "number of fits"),
        default=1,
        metavar="N",
        help="train N times (seeds SEED, SEED+1, ...) and keep the most typical fit (default: 1)",
    )
    c.add_argument(
        "--resolution", type=_resolution, metavar="R", help="Leiden resolution when K is estimated, or 'scan'"
    )
    c.add_argument("--threads", type=_int_at_least(1, "thread count"), metavar="N", help="torch CPU threads")
    epochs = _int_at_least(0, "epoch count")
    c.add_argument("--pretrain-epochs", type=epochs, metavar="E", help="pretraining epochs (default: the method's)")
    c.add_argument("--max-epochs", type=epochs, metavar="E", help="clustering-stage epochs at most")
    c.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "mps"], help="default: auto")
    c.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    c.set_defaults(run=cluster)

    d = sub.add_parser("demo", help="cluster simulated counts and report ARI/NMI", description=demo.__doc__)
    d.add_argument("--method", default="attentionae")
    d.add_argument("--n-cells", type=int, default=2000)
    d.add_argument("--n-genes", type=int, default=1000)
    d.add_argument("--n-groups", type=int, default=6)
    d.add_argument("--n-clusters", type=int, default=None, help="default: estimated")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--plot", default="scfuse_demo_umap.png", help="PNG written with the UMAP of the embedding")
    d.add_argument("--accelerator", default="auto")
    d.set_defaults(run=demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scfuse`` console script; returns the exit status."""
    ap = parser()
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        ap.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except BadInput as err:
        sys.stderr.write(f"scfuse {args.command}: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"scfuse {args.command}: interrupted\n")
        return 1
    except Exception as err:  # noqa: BLE001 - a command line reports, it does not print tracebacks
        sys.stderr.write(f"scfuse {args.command}: error: {type(err).__name__}: {_one_line(err)}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
