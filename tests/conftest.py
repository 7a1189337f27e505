from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("SCFUSE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

import scfuse

scfuse.settings.progress_bar = False
from helpers import FAST  # noqa: E402


@pytest.fixture(scope="session")
def sim_base():
    """300 cells x 100 genes, 3 groups, with the default (gauss) graph."""
    adata = scfuse.datasets.simulate(300, 100, 3, random_state=0)
    scfuse.pp.build_graph(adata, n_neighbors=10)
    return adata


@pytest.fixture
def sim(sim_base):
    return sim_base.copy()


@pytest.fixture(scope="session")
def clustered_base(sim_base):
    adata = sim_base.copy()
    _, model = scfuse.tl.cluster(adata, return_model=True, **FAST)
    return adata, model


@pytest.fixture(scope="session")
def sim_knn():
    """The same 300 cells with a binary kNN graph (k=10), the graph of scasdc and scdefer."""
    adata = scfuse.datasets.simulate(300, 100, 3, random_state=0)
    scfuse.pp.build_graph(adata, n_neighbors=10, method="knn")
    return adata
