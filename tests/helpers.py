"""Helpers shared by the tests (importable because pytest's pythonpath includes tests/)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SCFUSE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

import scfuse

FAST = {"pretrain_epochs": 3, "max_epochs": 2, "progress_bar": False}


def record_calls(monkeypatch, owner, name: str) -> list[int]:
    """Wrap ``owner.name`` (a function of a matrix) so that each call appends its first argument's row count to
    the returned list; the wrapped function still runs."""
    calls: list[int] = []
    real = getattr(owner, name)

    def recording(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls


def cluster_simulated_groups(method: str, graph: str | None = "knn", **kwargs):
    """600 simulated cells in 4 well-separated groups, clustered by ``method`` with k = 4.

    ``graph``: the weights of :func:`scfuse.pp.build_graph` (``None``: no graph, for a method that needs none);
    ``kwargs`` go to :func:`scfuse.tl.cluster`. A working model separates the groups, a broken one does not.
    Returns the clustered data and the ARI of its labels to the groups (random labels give about 0).
    """
    from sklearn.metrics import adjusted_rand_score

    adata = scfuse.datasets.simulate(600, 300, 4, de_scale=1.5, random_state=1)
    if graph is not None:
        scfuse.pp.build_graph(adata, method=graph)
    scfuse.tl.cluster(adata, method, n_clusters=4, progress_bar=False, **kwargs)
    return adata, adjusted_rand_score(adata.obs["group"], adata.obs[method])


def snapshot(adata) -> dict:
    """Deep copies of everything a failed call must leave unchanged: ``X``, ``layers``, ``obs``, ``var``, ``obsm``,
    ``obsp`` and ``uns``."""
    import copy

    return {
        name: copy.deepcopy(getattr(adata, name) if name in ("X", "obs", "var") else dict(getattr(adata, name)))
        for name in ("X", "layers", "obs", "var", "obsm", "obsp", "uns")
    }


def assert_same_values(a, b, path: str = "value") -> None:
    """``a`` and ``b`` are equal in type and value, recursively: dict keys in the same order, arrays (dense or
    sparse) in dtype, shape and values, data frames by :func:`pandas.testing.assert_frame_equal`; NaN equals NaN."""
    import pandas as pd
    import scipy.sparse as sp

    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, pd.DataFrame | pd.Series):
        assert_equal = pd.testing.assert_frame_equal if isinstance(a, pd.DataFrame) else pd.testing.assert_series_equal
        assert_equal(a, b, check_exact=True, obj=path)
    elif sp.issparse(a):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a.toarray(), b.toarray(), err_msg=path)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same_values(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_values(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"


def assert_unchanged(adata, snap) -> None:
    """``adata`` holds the same ``X``, ``layers``, ``obs``, ``var``, ``obsm``, ``obsp`` and ``uns`` values as
    when ``snap`` was taken."""
    now = snapshot(adata)
    for name in snap:
        assert_same_values(now[name], snap[name], name)


def data_dir() -> Path:
    return Path(scfuse.settings.data_dir)


needs_data = pytest.mark.skipif(
    not (data_dir() / "baron_mouse1.h5ad").is_file(), reason="benchmark data not found (set SCFUSE_DATA_DIR)"
)


def dense_shapes(fn) -> set[tuple[int, ...]]:
    """Shapes of every dense tensor any torch op produces while ``fn()`` runs."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    shapes: set[tuple[int, ...]] = set()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else [out]:
                if isinstance(t, torch.Tensor) and not t.is_sparse:
                    shapes.add(tuple(t.shape))
            return out

    with Recorder():
        fn()
    return shapes


def assert_no_cell_by_cell(shapes: set[tuple[int, ...]], n: int) -> None:
    """No tensor has two dimensions of ``n`` cells or more (``n x n`` attention, adjacency or similarity).

    Tensors that grow linearly with ``n`` (e.g. ``n x neighbours x heads x dim``) are allowed; the full-data pass
    must have run (some tensor has ``n`` rows)."""
    square = sorted(s for s in shapes if sum(d >= n for d in s) >= 2)
    assert not square, f"cells x cells tensors were allocated: {square[:3]}"
    assert any(s and s[0] == n for s in shapes), "no full-data pass was recorded"


def assert_cluster_outputs(adata, key: str, n_latent: int) -> int:
    """The fields every method writes: categorical labels ``'0'..'k-1'``, a finite ``n_latent``-d embedding and soft
    assignments whose rows sum to 1 and whose argmax is the label. Returns k."""
    import pandas as pd

    labels = adata.obs[key]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    k = adata.uns[key]["n_clusters"]
    assert list(labels.cat.categories) == [str(i) for i in range(k)]
    emb = adata.obsm[f"X_{key}"]
    assert emb.shape == (adata.n_obs, n_latent) and np.isfinite(emb).all()
    proba = adata.obsm[f"{key}_proba"]
    assert proba.shape == (adata.n_obs, k)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1).astype(str), labels.to_numpy().astype(str))
    return k


def assert_same_seed_same_result(base, method: str, **kwargs) -> tuple:
    """Three runs of ``method`` on copies of ``base``: seeds 3, 3 and 4. The two seed-3 runs give the same labels and
    embedding, seed 4 a different embedding. Returns the three AnnData objects."""
    a, b, c = base.copy(), base.copy(), base.copy()
    for x, seed in ((a, 3), (b, 3), (c, 4)):
        scfuse.tl.cluster(x, method, random_state=seed, **kwargs)
    np.testing.assert_array_equal(a.obs[method], b.obs[method])
    np.testing.assert_array_equal(a.obsm[f"X_{method}"], b.obsm[f"X_{method}"])
    assert not np.array_equal(a.obsm[f"X_{method}"], c.obsm[f"X_{method}"])
    return a, b, c


def assert_no_n_by_n(method: str, n: int = 2000, *, graph: str = "knn", **kwargs) -> None:
    """Build a ``graph`` kNN graph on ``n`` simulated cells (n above the batch size) and train ``method`` for one
    epoch per phase: no ``n x n`` tensor may be allocated (:func:`assert_no_cell_by_cell`)."""
    adata = scfuse.datasets.simulate(n, kwargs.pop("n_genes", 40), 3, random_state=2)
    scfuse.pp.build_graph(adata, method=graph, n_neighbors=kwargs.pop("n_neighbors", 15))
    run = {"n_clusters": 3, "pretrain_epochs": 1, "max_epochs": 1, "progress_bar": False, **kwargs}
    shapes = dense_shapes(lambda: scfuse.tl.cluster(adata, method, **run))
    assert_no_cell_by_cell(shapes, n)


def assert_save_load_same(model, adata, path) -> None:
    """A saved and reloaded ``model`` gives the same embedding (to 1e-5) and the same labels on ``adata``."""
    model.save(path)
    back = scfuse.models.FusionModel.load(path, adata.copy())
    np.testing.assert_allclose(back.get_latent_representation(), model.get_latent_representation(), atol=1e-5)
    np.testing.assert_array_equal(back.predict(), model.predict())
