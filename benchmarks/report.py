"""Markdown tables from the harness's TSV files (benchmarks/results/*.tsv), for docs/benchmarks.md.

python benchmarks/report.py benchmarks/results/*.tsv
"""

from __future__ import annotations

import sys

import pandas as pd

#: one harness run; a later row with the same key replaces an earlier one
RUN_KEY = ["method", "k_mode", "dataset", "seed"]


def read_rows(sources) -> pd.DataFrame:
    """The harness rows of TSV files (paths or text buffers), one per run: the last row of each run is kept."""
    df = pd.concat([pd.read_csv(s, sep="\t") for s in sources], ignore_index=True)
    return df.drop_duplicates(subset=RUN_KEY, keep="last")


def main(paths: list[str]) -> None:
    df = read_rows(paths)
    per = (
        df.groupby(["method", "k_mode", "dataset"])
        .agg(
            ARI=("ari", "mean"),
            ARI_sd=("ari", "std"),
            NMI=("nmi", "mean"),
            k=("n_clusters", "mean"),
            true_k=("true_k", "first"),
            time_s=("time_s", "mean"),
            peak_GB=("peak_gb", "max"),
            seeds=("seed", lambda s: " ".join(str(v) for v in sorted(s))),
        )
        .reset_index()
    )
    out = ["### Per dataset (mean over seeds; ARI_sd = standard deviation over seeds)", ""]
    out.append(per.round(3).to_markdown(index=False))
    overall = (
        df.groupby(["method", "k_mode"])
        .agg(ARI=("ari", "mean"), NMI=("nmi", "mean"), datasets=("dataset", "nunique"), runs=("seed", "count"))
        .reset_index()
    )
    out += ["", "### Mean over datasets and seeds", "", overall.round(3).to_markdown(index=False)]
    worst = per.pivot_table(index="dataset", columns=["method", "k_mode"], values="ARI").round(3)
    mode_names = {"estimated": "est. k", "true_k": "true k", "reads_labels": "reads labels: upper bound"}
    worst.columns = [f"{m} ({mode_names.get(mode, mode)})" for m, mode in worst.columns]
    out += ["", "### ARI per dataset, side by side", "", worst.to_markdown()]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
