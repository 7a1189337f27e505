"""Saved models: plain data only (no pickle is ever loaded), format checks, exact round trips for every method."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from helpers import assert_same_values

import scfuse
from scfuse._utils._serialize import decode, encode
from scfuse.models import FusionModel
from scfuse.models._persist import MODEL_FORMAT_VERSION

# small networks and few epochs: each model trains in about a second
SMALL = {
    "attentionae": {"hidden": (32, 16)},
    "scasdc": {"hidden": (32, 32, 64)},
    "scdefer": {"hidden": (32, 16)},
    "scamac": {"hidden": 32, "n_latent": 12, "channel_dim": 4, "cluster_passes": 2},
    "sccagn": {"n_restarts": 2},
}


def _sim(method: str, seed: int = 0):
    """200 cells x 60 genes with the graph ``method`` was published with."""
    adata = scfuse.datasets.simulate(200, 60, 3, random_state=seed)
    scfuse.pp.build_graph(adata, n_neighbors=10, method=scfuse.models.get_model_class(method).graph_method)
    return adata


def _train(method: str):
    adata = _sim(method)
    _, model = scfuse.tl.cluster(
        adata, method, pretrain_epochs=2, max_epochs=2, progress_bar=False, return_model=True, **SMALL[method]
    )
    return adata, model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    adata, model = _train("attentionae")
    path = tmp_path_factory.mktemp("model")
    model.save(path)
    return adata, model, path


def _copy_dir(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


class _WritesMarker:
    """Unpickling this runs ``open(marker, "w")``: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_saved_files_hold_plain_data(saved):
    _, _, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "model.json", "weights.pt"]
    meta = json.loads((path / "model.json").read_text())
    assert meta["format_version"] == MODEL_FORMAT_VERSION and meta["scfuse_version"] == scfuse.__version__
    assert meta["method"] == "attentionae" and meta["class"] == "AttentionAE"
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        assert all(not npz[k].dtype.hasobject for k in npz.files)


@pytest.mark.parametrize("target", ["weights.pt", "model.pt"])
def test_crafted_pickle_is_refused(saved, tmp_path, target):
    """A pickle that would write a file when unpickled is refused, in the weights file or as an old model.pt."""
    _, _, path = saved
    d = _copy_dir(path, tmp_path / "m")
    marker = tmp_path / "marker"
    if target == "model.pt":  # the previous format: a lone pickled model.pt
        for p in d.iterdir():
            p.unlink()
    with open(d / target, "wb") as f:
        pickle.dump(_WritesMarker(marker), f)
    match = "older scfuse" if target == "model.pt" else "not plain data"
    with pytest.raises(ValueError, match=match):
        FusionModel.load(d)
    assert not marker.exists()


def test_old_format_error(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    with open(d / "model.pt", "wb") as f:
        pickle.dump({"method": "attentionae"}, f)
    with pytest.raises(ValueError, match=r"older scfuse.*format 1.*model format 2.*Retrain") as err:
        FusionModel.load(d)
    assert "model.pt" in str(err.value)


def test_format_version_checked(saved, tmp_path):
    _, _, path = saved
    d = _copy_dir(path, tmp_path / "m")
    meta = json.loads((d / "model.json").read_text())
    meta["format_version"] = 99
    (d / "model.json").write_text(json.dumps(meta))
    match = rf"format 99 \(written by scfuse {scfuse.__version__}\).*format {MODEL_FORMAT_VERSION}"
    with pytest.raises(ValueError, match=match):
        FusionModel.load(d)


def test_object_array_is_refused(saved, tmp_path):
    _, _, path = saved
    d = _copy_dir(path, tmp_path / "m")
    with np.load(d / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["a0"] = np.array([object()], dtype=object)
    np.savez(d / "arrays.npz", **arrays)
    with pytest.raises(ValueError, match="not plain data"):
        FusionModel.load(d)


def test_encode_decode_exact():
    value = {
        "none": None,
        "flag": True,
        "n": 3,
        "x": 0.1,
        "nan": float("nan"),
        "inf": -float("inf"),
        "tuple": (1000, None),
        "nested": {"list": [1.5, [2, (3,)]], "np_float": np.float32(0.25), "np_int": np.int64(7), "b": np.bool_(False)},
        "array": np.arange(6, dtype=np.int32).reshape(2, 3),
        "strings": np.array(["a", "bc"]),
        1: "int key",
        ("a", 2): "tuple key",
    }
    arrays: dict = {}
    text = json.dumps(encode(value, arrays), allow_nan=False)  # strict JSON
    back = decode(json.loads(text), arrays)
    assert back.keys() == value.keys()
    assert np.isnan(back.pop("nan")) and np.isnan(value.pop("nan"))
    for k in ("array", "strings"):
        a, b = back.pop(k), value.pop(k)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    for k in ("np_float", "np_int", "b"):
        assert type(back["nested"][k]) is type(value["nested"][k])
    assert back == value
    assert type(back["tuple"]) is tuple and type(back["nested"]["list"][1][1]) is tuple
    with pytest.raises(TypeError, match=r"\['bad'\]"):
        encode({"bad": object()}, {})
    with pytest.raises(TypeError, match="object arrays"):
        encode(np.array([None, 1], dtype=object), {})


@pytest.mark.parametrize("method", ["attentionae", "scasdc", "scdefer", "scamac", "sccagn"])
def test_roundtrip_every_method(method, tmp_path):
    """A reloaded model holds exactly the saved state and gives the same labels, memberships and embedding, on
    its training cells and on new cells."""
    adata, model = _train(method)
    model.save(tmp_path / "m")
    back = FusionModel.load(tmp_path / "m", adata.copy())
    assert type(back) is type(model)
    kept = ("hparams", "history", "extras", "train_params", "centers", "label_order", "n_clusters")
    kept += ("n_clusters_estimated", "converged", "n_clusters_requested", "resolution", "random_state")
    for name in kept:
        assert_same_values(getattr(back, name), getattr(model, name), name)
    assert_same_values(back.preprocessor.state(), model.preprocessor.state(), "preprocessor")
    assert_same_values(back._module_config(), model._module_config(), "module_config")
    weights = back.module.state_dict()
    assert weights.keys() == model.module.state_dict().keys()
    for k, v in model.module.state_dict().items():
        assert v.dtype == weights[k].dtype and torch.equal(v.cpu(), weights[k].cpu()), k
    np.testing.assert_array_equal(back.predict(), model.predict())
    np.testing.assert_array_equal(back.predict(soft=True), model.predict(soft=True))
    np.testing.assert_array_equal(back.get_latent_representation(), model.get_latent_representation())
    new = _sim(method, seed=5)
    np.testing.assert_array_equal(back.predict(new), model.predict(new))
    np.testing.assert_array_equal(back.get_latent_representation(new), model.get_latent_representation(new))
