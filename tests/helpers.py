"""Helpers shared by the tests (importable because pytest's pythonpath includes tests/)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SCFUSE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

import scfuse  # noqa: E402

FAST = {"pretrain_epochs": 3, "max_epochs": 2, "progress_bar": False}


def snapshot(adata) -> dict:
    """Everything a failed call must leave unchanged."""
    import scipy.sparse as sp

    def dense(m):
        return m.toarray() if sp.issparse(m) else np.asarray(m)

    return {
        "X": dense(adata.X).copy(),
        "layers": {k: dense(v).copy() for k, v in adata.layers.items()},
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": set(adata.obsm.keys()),
        "obsp": set(adata.obsp.keys()),
        "uns": set(adata.uns.keys()),
    }


def assert_unchanged(adata, snap) -> None:
    now = snapshot(adata)
    np.testing.assert_array_equal(now["X"], snap["X"])
    assert now["layers"].keys() == snap["layers"].keys()
    for k in snap["layers"]:
        np.testing.assert_array_equal(now["layers"][k], snap["layers"][k])
    assert list(now["obs"].columns) == list(snap["obs"].columns)
    assert now["obsm"] == snap["obsm"] and now["obsp"] == snap["obsp"] and now["uns"] == snap["uns"]


def data_dir() -> Path:
    return Path(scfuse.settings.data_dir)


needs_data = pytest.mark.skipif(
    not (data_dir() / "baron_mouse1.h5ad").is_file(), reason="benchmark data not found (set SCFUSE_DATA_DIR)"
)
