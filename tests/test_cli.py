"""The command line: ``scfuse cluster`` end to end in a subprocess, ``--version``, exit status 2 for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pytest

import scfuse
from scfuse.__main__ import main

SRC = str(Path(scfuse.__file__).resolve().parents[1])


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "-m", "scfuse", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "sim.h5ad"
    scfuse.datasets.simulate(200, 60, 3, random_state=0).write_h5ad(path)
    return path


def test_version():
    res = _run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"scfuse {scfuse.__version__}"


def test_cluster_writes_labels(h5ad, tmp_path):
    out = tmp_path / "out.h5ad"
    res = _run(
        "cluster", str(h5ad), "-o", str(out), "--method", "scdefer", "--n-clusters", "3", "--seed", "1",
        "--threads", "1", "--pretrain-epochs", "2", "--max-epochs", "2",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # log lines go to stderr
    assert "clustering with 'scdefer'" in res.stderr and f"wrote {out}" in res.stderr
    adata = ad.read_h5ad(out)
    labels = adata.obs["scdefer"]
    assert labels.dtype.name == "category" and labels.nunique() <= 3
    p = adata.uns["scdefer"]["params"]
    assert p["random_state"] == 1 and p["torch_threads"] == 1 and p["n_clusters_init"] == 3
    assert adata.uns["scfuse"]["params"]["method"] == "knn"  # scdefer's graph weights
    assert "scdefer" not in ad.read_h5ad(h5ad).obs  # the input file is untouched
    assert not list(tmp_path.glob(".*partial"))


def test_bad_input_exits_2_subprocess(tmp_path):
    missing = str(tmp_path / "missing.h5ad")
    res = _run("cluster", missing, "-o", str(tmp_path / "o.h5ad"), "--method", "scdefer")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"scfuse cluster: error: input file {missing!r} not found"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "louvain"], "unknown method 'louvain'; known methods: attentionae, scamac"),
        (["--method", "scdefer", "--n-clusters", "1"], "invalid number of clusters '1'"),
        (["--method", "scdefer", "--n-clusters", "500"], "--n-clusters 500 exceeds the number of cells (200)"),
        (["--method", "scdefer", "--layer", "raw"], "Layer 'raw' not found in adata.layers"),
        (["--method", "scdefer", "--resolution", "-1"], "invalid resolution '-1'"),
        (["--method", "scdefer", "--n-fits", "0"], "invalid number of fits '0'"),
        (["--method", "scdefer", "--batch-key", "donor"], "batch_key='donor' is not a column of adata.obs"),
        (["--method"], "expected one argument"),
    ],
)
def test_bad_input_exits_2(h5ad, tmp_path, capsys, args, message):
    try:
        code = main(["cluster", str(h5ad), "-o", str(tmp_path / "o.h5ad"), *args])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith("clustering with")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert not (tmp_path / "o.h5ad").exists()


def test_batch_key(tmp_path):
    path = tmp_path / "two.h5ad"
    adata = scfuse.datasets.simulate(200, 60, 3, random_state=0)
    adata.obs["donor"] = ["a", "b"] * 100
    adata.write_h5ad(path)
    out = tmp_path / "out.h5ad"
    args = ["cluster", str(path), "-o", str(out), "--method", "scdefer", "--batch-key", "donor",
            "--pretrain-epochs", "2", "--max-epochs", "1", "-q"]  # fmt: skip
    assert main(args) == 0
    result = ad.read_h5ad(out)
    assert result.uns["scdefer"]["params"]["batch_key"] == "donor"
    assert result.uns["scfuse"]["params"]["batch_key"] == "donor"  # the graph is batch-balanced


def test_n_fits(h5ad, tmp_path):
    out = tmp_path / "out.h5ad"
    args = ["cluster", str(h5ad), "-o", str(out), "--method", "scdefer", "--n-fits", "3", "--seed", "2",
            "--pretrain-epochs", "2", "--max-epochs", "1", "-q"]  # fmt: skip
    assert main(args) == 0
    params = ad.read_h5ad(out).uns["scdefer"]["params"]
    assert params["n_fits"] == 3 and list(params["fit_seeds"]) == [2, 3, 4]
    assert params["random_state"] == 2 + params["fit_chosen"]


def test_not_an_h5ad_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    assert main(["cluster", str(bad), "-o", str(tmp_path / "o.h5ad"), "--method", "scdefer"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_other_failure_exits_1(h5ad, tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(scfuse.tl, "cluster", boom)
    assert main(["cluster", str(h5ad), "-o", str(tmp_path / "o.h5ad"), "--method", "scdefer"]) == 1
    err = capsys.readouterr().err
    assert "error: RuntimeError: out of memory" in err and "Traceback" not in err


def test_help_shows_example(capsys):
    for argv in (["--help"], ["cluster", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert capsys.readouterr().out.count("example:") == 2
