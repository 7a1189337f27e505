"""Leave-one-dataset-out check of a choice made by looking at ARI.

    python benchmarks/loo.py RESULTS.tsv --variant what --candidates silhouette stability [--where rep=attentionae]

For every dataset in turn, the candidate with the highest mean ARI on the *other* datasets (all seeds) is chosen
and scored on the held-out one. Prints, per held-out dataset, the candidate chosen and its ARI there, next to the
in-sample choice (the candidate with the highest mean on all datasets) and each candidate's own ARI; then the
leave-one-out mean beside the in-sample mean. A rule is adopted only when its leave-one-out mean is close to its
in-sample mean (the protocol of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import pandas as pd


def leave_one_out(df: pd.DataFrame, variant: str, candidates: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Per held-out dataset: the candidate chosen on the others and its ARI; and the summary means."""
    if candidates:
        df = df[df[variant].isin(candidates)]
    means = df.groupby([variant, "dataset"])["ari"].mean().unstack("dataset")  # candidates x datasets
    in_sample = means.mean(axis=1).idxmax()
    rows = []
    for held in means.columns:
        chosen = means.drop(columns=held).mean(axis=1).idxmax()
        rows.append(
            {
                "held_out": held,
                "chosen_on_others": chosen,
                "ari_held_out": means.loc[chosen, held],
                "in_sample_choice": in_sample,
                "ari_in_sample_choice": means.loc[in_sample, held],
                **{f"ari[{c}]": means.loc[c, held] for c in means.index},
            }
        )
    table = pd.DataFrame(rows)
    summary = {
        "in_sample_choice": in_sample,
        "in_sample_mean": float(means.loc[in_sample].mean()),
        "leave_one_out_mean": float(table["ari_held_out"].mean()),
    }
    return table, summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tsv", nargs="+")
    ap.add_argument("--variant", default="method", help="column naming the candidates")
    ap.add_argument("--candidates", nargs="*", default=None)
    ap.add_argument("--where", nargs="*", default=[], help="column=value filters")
    args = ap.parse_args(argv)
    df = pd.concat([pd.read_csv(f, sep="\t") for f in args.tsv], ignore_index=True)
    for cond in args.where:
        col, val = cond.split("=", 1)
        df = df[df[col].astype(str) == val]
    table, summary = leave_one_out(df, args.variant, args.candidates)
    print(table.round(3).to_markdown(index=False))
    print(
        f"\nin-sample choice {summary['in_sample_choice']}: mean ARI {summary['in_sample_mean']:.3f}; "
        f"leave-one-dataset-out mean {summary['leave_one_out_mean']:.3f}"
    )


if __name__ == "__main__":
    main()
