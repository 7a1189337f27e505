"""Saving and loading a trained model in files that cannot run code."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from scfuse._utils._device import resolve_device
from scfuse._utils._serialize import decode, encode

from ._preprocess import Preprocessor
from ._registry import get_model_class

if TYPE_CHECKING:
    from anndata import AnnData

    from ._base import FusionModel

_MODEL_FILE, _WEIGHTS_FILE, _ARRAYS_FILE = "model.json", "weights.pt", "arrays.npz"

#: version of the saved-model layout written by :meth:`FusionModel.save`; :meth:`FusionModel.load` reads only this
#: one (1 was scfuse 0.1's single pickled ``model.pt``)
MODEL_FORMAT_VERSION = 2


def _read_meta(d: Path) -> dict[str, Any]:
    """``model.json`` of a saved model, after checking that the folder holds the current format."""
    f = d / _MODEL_FILE
    if not f.is_file():
        if (d / "model.pt").is_file():
            raise ValueError(
                f"{d} holds a model.pt written by an older scfuse (model format 1, a pickle, which is not loaded "
                f"because loading it could run code); this scfuse reads model format {MODEL_FORMAT_VERSION}. "
                "Retrain the model, or load it with the scfuse that wrote it and save it again with this one."
            )
        raise FileNotFoundError(f"No saved model at {d} ({_MODEL_FILE} is missing).")
    try:
        meta = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{f} is not valid JSON: {err}") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != MODEL_FORMAT_VERSION:
        written = meta.get("scfuse_version", "an unknown version") if isinstance(meta, dict) else "an unknown version"
        raise ValueError(
            f"{d} holds model format {version!r} (written by scfuse {written}); this scfuse reads model format "
            f"{MODEL_FORMAT_VERSION}. Load it with a matching scfuse, or retrain and save it again."
        )
    return meta


class SaveLoadMixin:
    """``save``, ``load`` and the run record of :class:`~scfuse.models.FusionModel`."""

    def run_record(self) -> dict[str, Any]:
        """The record of a training run that :func:`scfuse.tl.cluster` writes to ``uns[key]["params"]``.

        Method, k (``n_clusters`` the number of clusters the clustering stage started from until the caller
        counts the clusters that hold cells), resolution and start, input, graph, seeds, genes, versions, the
        training schedule and the hyper-parameters.
        """
        from scfuse._version import __version__

        self._check_trained()
        return {
            "method": self.method_name,
            "n_clusters": int(self.n_clusters),
            "n_clusters_init": int(self.n_clusters),
            "n_clusters_estimated": bool(self.n_clusters_estimated),
            "resolution": "scan" if self.resolution is None else self.resolution,
            **getattr(self, "init_info", {}),
            "layer": self.counts_source if self.uses_counts else self.layer,
            "neighbors_key": self.neighbors_key,
            "obsp": self.obsp,
            "batch_key": self.batch_key,
            **self.graph_info,
            "random_state": self.random_state,
            "n_top_genes": int(len(self.preprocessor.genes)),
            "mask_var": self.mask_var,
            "scfuse_version": __version__,
            **self.train_params,
            "model_kwargs": dict(self.hparams.items()),
        }

    # ------------------------------------------------------------------ persistence
    def _init_args(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters_requested,
            "resolution": self.resolution,
            "layer": self.layer,
            "neighbors_key": self.neighbors_key,
            "obsp": self.obsp,
            "batch_key": self.batch_key,
            "random_state": self.random_state,
            **self.hparams,
        }

    def save(self, dir_path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Save the trained model to ``dir_path`` in files that cannot run code when loaded.

        ``weights.pt`` holds the module's state dict (tensors only, read with ``torch.load(weights_only=True)``);
        ``model.json`` the class, arguments, fitted preprocessing, genes, history, extras, the scfuse version and
        the file format version (``MODEL_FORMAT_VERSION``, 2); ``arrays.npz`` the NumPy arrays among them (read
        with ``allow_pickle=False``).

        Parameters
        ----------
        dir_path
            Folder to write (created if needed).
        overwrite
            Replace a model already saved there.

        Examples
        --------
        >>> import os, tempfile
        >>> import scfuse
        >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
        >>> scfuse.pp.build_graph(adata)
        >>> model = scfuse.models.AttentionAE(adata, n_clusters=3).train(2, pretrain_epochs=2, progress_bar=False)
        >>> path = tempfile.mkdtemp()
        >>> model.save(path, overwrite=True)
        >>> sorted(os.listdir(path))
        ['arrays.npz', 'model.json', 'weights.pt']
        """
        self._check_trained()
        d = Path(dir_path)
        if (d / _MODEL_FILE).exists() and not overwrite:
            raise FileExistsError(f"{d / _MODEL_FILE} exists; pass overwrite=True to replace it.")
        from scfuse._version import __version__

        arrays: dict[str, np.ndarray] = {}
        meta = encode(
            {
                "class": type(self).__name__,
                "method": self.method_name,
                "init_args": self._init_args(),
                "preprocessor": self.preprocessor.state(),
                "module_config": self._module_config(),
                "centers": self.centers,
                "n_clusters": self.n_clusters,
                "n_clusters_estimated": self.n_clusters_estimated,
                "history": self.history,
                "extras": self.extras,
                "converged": self.converged,
                "train_params": self.train_params,
                "label_order": self.label_order,
            },
            arrays,
        )
        meta = {"format_version": MODEL_FORMAT_VERSION, "scfuse_version": __version__, **meta}
        weights = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        d.mkdir(parents=True, exist_ok=True)
        torch.save(weights, d / _WEIGHTS_FILE)
        np.savez(d / _ARRAYS_FILE, **arrays)
        (d / _MODEL_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False))  # last: marks a complete save

    @classmethod
    def load(
        cls, dir_path: str | os.PathLike, adata: AnnData | None = None, *, accelerator: str = "cpu", devices="auto"
    ) -> FusionModel:
        """Load a model written by ``save``; nothing in the files can run code.

        Parameters
        ----------
        dir_path
            Folder written by ``save``.
        adata
            Becomes the model's data (same genes as in training, its own cell graph); may be omitted, then
            ``predict`` and ``get_latent_representation`` need ``adata``.
        accelerator, devices
            Where the module runs (as in ``train``).

        Returns
        -------
        The model, of the saved class (a subclass's ``load`` checks that the method matches).

        Raises
        ------
        ValueError
            When the folder was written by another format version (e.g. a ``model.pt`` of scfuse 0.1, which
            held a pickle and is not read), or a file holds anything but plain data.

        Examples
        --------
        >>> import tempfile
        >>> import scfuse
        >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
        >>> scfuse.pp.build_graph(adata)
        >>> model = scfuse.models.AttentionAE(adata, n_clusters=3).train(2, pretrain_epochs=2, progress_bar=False)
        >>> path = tempfile.mkdtemp()
        >>> model.save(path, overwrite=True)
        >>> back = scfuse.models.FusionModel.load(path, adata)
        >>> bool((back.predict() == model.predict()).all())
        True
        """
        d = Path(dir_path)
        meta = _read_meta(d)
        klass = get_model_class(meta["method"]) if not cls.method_name else cls
        if klass.method_name != meta["method"]:
            raise ValueError(f"{d} holds a {meta['method']!r} model, not {klass.method_name!r}.")
        for name in (_ARRAYS_FILE, _WEIGHTS_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} is missing: the save in {d} is incomplete.")
        try:
            with np.load(d / _ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            weights = torch.load(d / _WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, ValueError, RuntimeError, OSError) as err:
            raise ValueError(
                f"{d} holds a file that is not plain data (tensors and arrays only); it was not loaded: {err}"
            ) from err
        if not (isinstance(weights, dict) and all(isinstance(v, torch.Tensor) for v in weights.values())):
            raise ValueError(f"{d / _WEIGHTS_FILE} does not hold a state dict of tensors; it was not loaded.")
        state = decode(meta, arrays)
        self = klass.__new__(klass)
        args = dict(state["init_args"])
        self.hparams = self._check_hparams({k: args.pop(k) for k in list(args) if k in klass.default_hparams})
        self.n_clusters_requested = args["n_clusters"]
        self.resolution = args["resolution"]
        self.layer = args["layer"]
        self.neighbors_key = args["neighbors_key"]
        self.obsp = args["obsp"]
        self.batch_key = args.get("batch_key")  # files saved before batch_key have none
        self.batches = None  # only the clustering start reads them
        self.random_state = args["random_state"]
        self.preprocessor = Preprocessor.from_state(state["preprocessor"])
        self.device = resolve_device(accelerator, devices)
        self.centers = state["centers"]
        self.n_clusters = state["n_clusters"]
        self.n_clusters_estimated = state["n_clusters_estimated"]
        self.history = state["history"]
        self.extras = state["extras"]
        self.converged = state["converged"]
        self.train_params = state["train_params"]
        self.label_order = state["label_order"]
        self.n_covariates = int(state["module_config"].get("n_covariates", 0))
        self.module = self._build_module(**state["module_config"]).to(self.device)
        self.module.load_state_dict(weights)
        self.module.eval()
        self.is_trained = True
        self._results = None
        self.data = None
        if adata is not None:
            self.data = self._data_for(adata, same_genes=True)
        self.counts_source = None
        return self
