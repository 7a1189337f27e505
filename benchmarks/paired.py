"""Paired comparison of two sets of harness rows: is a change in mean ARI larger than the seeds' noise?

Rows are paired on (method, k_mode, dataset, seed). For each method and k mode it prints the mean ARI of both
sets (mean over datasets of the mean over seeds, as in docs/benchmarks.md), their difference, its standard error
(from the spread over seeds of the paired differences within each dataset) and a two-sided sign-flip
permutation p-value of the difference.

python benchmarks/paired.py git:68aaacb^ benchmarks/results --method scdefer
python benchmarks/paired.py old_results/ benchmarks/results

A source is a folder of harness TSV files or ``git:REV`` for ``benchmarks/results`` at a git revision.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from report import RUN_KEY
from report import read_rows as read_tsvs

# run.py's files ({method}_s{seed}.tsv); robustness, starts and other result files are not harness rows
HARNESS_FILE = re.compile(r"[a-z]+_s\d+\.tsv")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def read_rows(source: str, method: str | None = None) -> pd.DataFrame:
    """Harness rows of a folder or of ``benchmarks/results`` at a git revision (``git:REV``)."""
    if source.startswith("git:"):
        rev = source[4:]
        names = _git("ls-tree", "--name-only", f"{rev}:benchmarks/results").split()
        files = [io.StringIO(_git("show", f"{rev}:benchmarks/results/{n}")) for n in names if HARNESS_FILE.fullmatch(n)]
    else:
        files = [p for p in sorted(Path(source).glob("*.tsv")) if HARNESS_FILE.fullmatch(p.name)]
    df = read_tsvs(files)
    return df[df["method"] == method] if method else df


def _mean_over_datasets(ari: pd.Series) -> float:
    """Mean over datasets of the mean over seeds, as the tables of docs/benchmarks.md."""
    return float(ari.groupby(level="dataset").mean().mean())


def compare(old: pd.DataFrame, new: pd.DataFrame, n_perm: int = 20000, seed: int = 0) -> pd.DataFrame:
    """One row per (method, k_mode) over the runs present in both sets (``RUN_KEY`` and ``ari`` columns)."""
    both = (
        old.set_index(RUN_KEY)["ari"].to_frame("old").join(new.set_index(RUN_KEY)["ari"].to_frame("new"), how="inner")
    )
    rng = np.random.default_rng(seed)
    out = []
    for (method, k_mode), g in both.groupby(level=["method", "k_mode"]):
        diff = g["new"] - g["old"]
        by_ds = diff.groupby(level="dataset")
        n_ds = by_ds.ngroups
        se = float(np.sqrt((by_ds.var(ddof=1) / by_ds.count()).sum()) / n_ds)
        # weight per run so that the weighted sum is the mean over datasets of the mean over seeds
        weight = 1.0 / (by_ds.transform("count").to_numpy() * n_ds)
        d = diff.to_numpy()
        observed = float((weight * d).sum())
        flips = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
        p = float((np.abs(flips @ (weight * d)) >= abs(observed) - 1e-12).mean())
        out.append(
            {
                "method": method,
                "k_mode": k_mode,
                "runs": d.size,
                "old": _mean_over_datasets(g["old"]),
                "new": _mean_over_datasets(g["new"]),
                "delta": observed,
                "se": se,
                "p_signflip": p,
                "runs_within_0.003": int((np.abs(d) < 0.003).sum()),
            }
        )
    return pd.DataFrame(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="folder of harness TSV files, or git:REV")
    ap.add_argument("new", help="folder of harness TSV files, or git:REV")
    ap.add_argument("--method", default=None, help="only this method")
    args = ap.parse_args(argv)
    table = compare(read_rows(args.old, args.method), read_rows(args.new, args.method))
    print(table.round(3).to_markdown(index=False))


if __name__ == "__main__":
    main()
