"""benchmarks/paired.py: the paired comparison used to read harness reruns against seed noise."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_spec = importlib.util.spec_from_file_location("paired", Path(__file__).parents[1] / "benchmarks" / "paired.py")
paired = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired)


def _rows(ari):
    # two datasets x three seeds of one method and k mode
    keys = [("m", "true_k", ds, s) for ds in ("a", "b") for s in range(3)]
    return pd.DataFrame([(*k, v) for k, v in zip(keys, ari, strict=True)], columns=paired.RUN_KEY + ["ari"])


def test_paired_delta_se_and_p():
    old = _rows([0.5, 0.6, 0.7, 0.8, 0.8, 0.8])
    diff = np.array([0.10, 0.12, 0.08, -0.02, 0.00, 0.02])
    new = _rows(list(old["ari"] + diff))
    out = paired.compare(old, new, n_perm=4000).iloc[0]
    assert out["runs"] == 6
    assert out["old"] == pytest.approx((0.6 + 0.8) / 2)
    assert out["delta"] == pytest.approx((0.10 + 0.00) / 2)
    # se: sqrt(var_a / 3 + var_b / 3) / 2 with both variances 0.0004
    assert out["se"] == pytest.approx(np.sqrt(2 * 0.0004 / 3) / 2)
    # |flipped mean| >= 0.05 needs dataset a's three differences of one sign (2 of 8) and b's two non-zero ones
    # not summing against them (3 of 4): p = 2/8 * 3/4
    assert out["p_signflip"] == pytest.approx(0.1875, abs=0.02)
    assert out["runs_within_0.003"] == 1


def test_paired_identical_runs():
    old = _rows([0.5, 0.6, 0.7, 0.8, 0.8, 0.8])
    out = paired.compare(old, old.copy()).iloc[0]
    assert out["delta"] == 0 and out["se"] == 0 and out["p_signflip"] == 1.0
    assert out["runs_within_0.003"] == 6


def test_paired_reads_only_harness_files(tmp_path):
    _rows([0.5] * 6).to_csv(tmp_path / "m_s0.tsv", sep="\t", index=False)
    _rows([0.1] * 6).assign(dataset="other").to_csv(tmp_path / "robustness_m_s0.tsv", sep="\t", index=False)
    df = paired.read_rows(str(tmp_path), "m")
    assert len(df) == 6 and set(df["dataset"]) == {"a", "b"}
