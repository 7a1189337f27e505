from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scanpy import logging as logg

from scfuse._docs import doc_params, doc_train
from scfuse._keys import ClusterKeys
from scfuse._utils._validate import check_adata, check_positive_int
from scfuse.models import registered_methods

if TYPE_CHECKING:
    from collections.abc import Callable

    from anndata import AnnData

    from scfuse.models import FusionModel

#: the names of the registered methods (:func:`show_methods`)
Method = Literal[tuple(registered_methods())]


def _methods_doc() -> str:
    rows = [f"``{name!r}`` ({cls.__name__})" for name, cls in registered_methods().items()]
    return (
        "method\n    The method: "
        + ", ".join(rows)
        + "; see :func:`show_methods`. Its keyword arguments are the fields of the method's ``config_class``."
    )


def show_methods() -> pd.DataFrame:
    """Table of the registered methods: name, model class, defaults and the paper to cite.

    Examples
    --------
    >>> import scfuse
    >>> "attentionae" in scfuse.tl.show_methods().index
    True
    """
    rows = []
    for name, cls in sorted(registered_methods().items()):
        rows.append(
            {
                "method": name,
                "class": cls.__name__,
                "n_top_genes": cls.n_top_genes,
                "input": cls.input_transform,
                "zinb_counts": cls.uses_counts,
                "graph": cls.uses_graph,
                "pretrain_steps": cls.default_pretrain_steps,
                "config": cls.config_class.__name__,
                "cluster_steps": cls.default_cluster_steps,
                "paper": cls.paper,
            }
        )
    return pd.DataFrame(rows).set_index("method")


def _h5ad_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        arr = np.asarray(value)
        return arr if arr.dtype != object else [str(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def assign_fields(adata: AnnData, fields: dict[str, dict[str, Any]]) -> None:
    """Assign ``{"obs"|"obsm"|"layers"|"uns": {key: value}}`` to ``adata``, all or nothing.

    The values are built by the caller before this runs. If an assignment fails, the keys assigned so far get
    their previous values back and new keys are removed, then the error is raised: ``adata`` is as before.
    """
    done: list[tuple[Any, str, bool, Any]] = []  # (mapping, key, existed, previous value)
    try:
        for attr, items in fields.items():
            mapping = getattr(adata, attr)
            for k, value in items.items():
                existed = k in mapping
                previous = mapping[k] if existed else None
                mapping[k] = value
                done.append((mapping, k, existed, previous))
    except BaseException:
        for mapping, k, existed, previous in reversed(done):
            if existed:
                mapping[k] = previous
            elif k in mapping:
                del mapping[k]
        raise


def _labels(labels: np.ndarray, k: int) -> pd.Categorical:
    return pd.Categorical([str(v) for v in labels], categories=[str(i) for i in range(k)])


def write_results(adata: AnnData, model: FusionModel, key: str, params: dict[str, Any]) -> None:
    """Write labels, embedding, soft assignments and the run record of a trained model into ``adata``.

    Every field is built first, then all are assigned by :func:`assign_fields`: a failure leaves ``adata`` as it
    was.
    """
    out = model.outputs(None)
    labels, proba = out["labels"], out["proba"]
    keys = ClusterKeys(key)
    record = {
        "params": _h5ad_safe(params),
        "history": {k: np.asarray(v, dtype=np.float64) for k, v in model.history.items()},
        "n_clusters": int(proba.shape[1]),
        "converged": bool(model.converged),
    }
    if model.extras:
        record["extras"] = _h5ad_safe(model.extras)
    fields = {
        "obs": {keys.labels: _labels(labels, proba.shape[1])},
        "var": {keys.genes: model.genes_used},
        "obsm": {
            keys.embedding: np.asarray(out["latent"], dtype=np.float32),
            keys.proba: np.asarray(proba, dtype=np.float32),
        },
        # optional cells x genes outputs a model exposes on request (e.g. scamac's reconstruction)
        "layers": {f"{key}_{name}": layer for name, layer in (getattr(model, "extra_layers", None) or {}).items()},
        "uns": {keys.uns: record},
    }
    assign_fields(adata, fields)


def _write_trained(adata: AnnData, model: FusionModel, key: str, *, copy: bool, start) -> AnnData | None:
    """Write a trained model's results into ``adata`` (or its copy), all at once; returns the copy or ``None``."""
    out = model.outputs(None)  # computed before anything is written
    n_used = int(len(np.unique(out["labels"])))
    if not model.n_clusters_estimated and n_used < model.n_clusters:
        logg.warning(
            f"{model.method_name}: n_clusters={model.n_clusters} was given but {n_used} clusters hold cells after training "
            "(the clustering stage emptied the others, or they were smaller than min_cluster_size); "
            f"adata.uns[{key!r}]['params'] records both numbers."
        )
    elif n_used < model.n_clusters:
        logg.info(f"    {model.n_clusters} clusters estimated, {n_used} of them hold cells after training")
    params = {**model.run_record(), "n_clusters": n_used}
    target = adata.copy() if copy else adata
    write_results(target, model, key, params)
    logg.info(
        "    finished",
        time=start,
        deep=(
            f"found {n_used} clusters and added\n"
            f"    '{key}', the cluster labels (adata.obs, categorical)\n"
            f"    'X_{key}', the embedding (adata.obsm)\n"
            f"    '{key}_proba', soft assignments (adata.obsm)\n"
            f"    '{key}', params, history (adata.uns)"
        ),
    )
    return target if copy else None


def _train_fits(make: Callable[..., FusionModel], training: dict, n_fits: int, random_state: int | None) -> FusionModel:
    """Train ``n_fits`` models (``make(random_state=seed)``, seeds ``random_state``, ``+ 1``, ...); keep the most typical."""
    fits = []
    for i in range(n_fits):
        seed = random_state if i == 0 else fits[0].random_state + i  # the first fit validates and resolves it
        if n_fits > 1:
            logg.info(f"    fit {i + 1} of {n_fits} (random_state={seed})")
        fits.append(make(random_state=seed).train(**training))
    return fits[0] if n_fits == 1 else _most_typical(fits)


def _most_typical(fits: list[FusionModel]) -> FusionModel:
    """The fit whose labels agree best (mean ARI) with the other fits' labels; the choice goes into its record."""
    from scfuse._utils._estimate_k import agreement

    agree = agreement([fit.outputs(None)["labels"] for fit in fits])
    chosen = int(np.argmax(agree))  # ties keep the first fit
    model = fits[chosen]
    model.train_params.update(
        {
            "n_fits": len(fits),
            "fit_seeds": [fit.random_state for fit in fits],
            "fit_agreement": [round(float(a), 4) for a in agree],
            "fit_chosen": chosen,
        }
    )
    logg.info(f"    kept fit {chosen + 1} of {len(fits)}: mean ARI {agree[chosen]:.3f} to the other fits")
    return model


@doc_params(doc_train=doc_train, doc_methods=_methods_doc())
def cluster(
    adata: AnnData,
    method: Method = "attentionae",
    *,
    n_clusters: int | None = None,
    resolution: float | Literal["scan"] | None = None,
    layer: str | None = "counts",
    neighbors_key: str | None = "scfuse",
    obsp: str | None = None,
    key_added: str | None = None,
    n_top_genes: int | None = None,
    mask_var: str | np.ndarray | None = "highly_variable",
    batch_key: str | None = None,
    max_epochs: int | None = None,
    pretrain_epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    tol: float = 1e-3,
    random_state: int | None = 0,
    n_fits: int = 1,
    accelerator: str = "auto",
    devices: int | str = "auto",
    progress_bar: bool | None = None,
    return_model: bool = False,
    copy: bool = False,
    **method_kwargs: Any,
) -> AnnData | None | tuple[AnnData | None, FusionModel]:
    """Cluster cells with a deep fusion model (ZINB autoencoder + cell-graph network).

    Trains the model of ``method`` on raw counts (``layer``) and the cell graph (``neighbors_key``), then writes
    labels, the learned embedding, soft assignments and a record of the run, the way :func:`scanpy.tl.leiden`
    does. The true labels are never read: with ``n_clusters=None`` the number of clusters is estimated by Leiden
    at ``resolution`` on the pretrained embedding. ``adata`` is written to only after training succeeded; a
    failed or interrupted call leaves it unchanged.

    Parameters
    ----------
    adata
        Annotated data matrix with raw counts in ``layers[layer]`` (or in ``X``).
    {doc_methods}
    n_clusters
        Number of clusters. ``None`` estimates it (Leiden on the pretrained embedding); an integer starts the
        clustering stage from that many clusters of the pretrained embedding. By default
        (``given_k_start="leiden"``; ``"scasdc"``: ``"silhouette"``, ``"scdefer"``: ``"centres"``) the Leiden
        communities found as without a k are split or merged to exactly k, one cluster at a time, by silhouette
        (a large cell type stays whole, a small distinct group is split off first); with
        ``given_k_start="silhouette"`` k-means or average linkage (cosine or Euclidean distances, on at most
        3,000 sampled cells), whichever partition has the highest silhouette; with ``given_k_start="centres"``
        all four partitions compete, each scored by the silhouette of the partition its centres give when every
        cell goes to its nearest centre (what the clustering stage starts from). The choice is stored in
        ``uns[key_added]["params"]["init_method"]``. Fewer clusters can come back (a warning is logged): the
        clustering stage may leave clusters empty, and on more than 3,000 cells a cluster of a few sampled cells
        can lose the nearest-neighbour vote that labels the other cells;
        ``uns[key_added]["n_clusters"]`` is the number found, ``uns[key_added]["params"]["n_clusters_init"]`` the
        number the clustering stage started from. A clustering stage (``"attentionae"``, ``"scasdc"``,
        ``"scdefer"``, ``"sccagn"``) that leaves fewer than half of its clusters, or one, holding cells is undone, with
        a warning: the cells are assigned to the clusters it started from
        (``uns[key_added]["params"]["cluster_stage_undone"]``), whether k was given or estimated.
    resolution
        Leiden resolution used when ``n_clusters`` is ``None``; higher gives more clusters. ``"scan"`` scans
        resolutions 0.05-1.0 and keeps the coarsest Leiden partition of the pretrained embedding whose
        silhouette (cosine, on at most 3,000 cells) is within 0.03 of the highest: the embedding graph is sharper
        than a PCA graph, and a fixed resolution of 1 splits known cell types into 2-4 clusters there. ``None``
        (default) takes the method's default: the scan, except for ``"scamac"`` (0.5), whose embedding the scan
        cuts into too few clusters. The resolution used is stored in
        ``uns[key_added]["params"]["resolution_chosen"]``. With ``k_scan_view="data"`` (a model argument) the
        scan scores the same partitions by the Euclidean silhouette on the PCA of the z-scored model genes of
        those cells (centred per batch with ``batch_key``) instead of on the embedding; it is not the default
        (docs/benchmarks.md).
    layer
        Layer with raw counts. When ``"counts"`` is missing and ``X`` holds counts, ``X`` is used.
    neighbors_key
        Key of the graph written by :func:`scfuse.pp.build_graph` (or ``sc.pp.neighbors``).
    obsp
        Read the connectivities from ``adata.obsp[obsp]`` instead of ``neighbors_key``.
    key_added
        Name of the fields written; defaults to ``method``.
    n_top_genes
        Highly variable genes the model selects (method default when ``None``); not used with ``mask_var``.
    mask_var
        Genes to train on, as in :func:`scanpy.pp.pca`: a boolean ``var`` column, a boolean array over the genes,
        or ``None`` to let the method select ``n_top_genes`` highly variable genes itself. The default
        ``"highly_variable"`` uses ``var["highly_variable"]`` when it exists (e.g. from
        :func:`scanpy.pp.highly_variable_genes`), else the method's own selection. Genes without counts in any
        cell are left out. The genes used are written to ``var[f"{key_added}_genes"]``.
    batch_key
        Column of ``adata.obs`` naming each cell's sample (donor, run, condition). Cells of several samples are
        otherwise often clustered by sample. With ``batch_key`` the model trains on a batch-balanced graph,
        which :func:`scfuse.pp.build_graph` builds with the same ``batch_key`` (an error says so when the graph
        under ``neighbors_key`` is not one): every cell's graph neighbours come from every sample, so the graph
        branch pulls cells of one type in different samples together. The Leiden graph of the embedding that
        estimates k and starts the clustering stage is batch-balanced in the same way (so ``scamac``, which has
        no cell graph, uses the batches there only). The methods with a count decoder (``attentionae``,
        ``scasdc``, ``scdefer``) also give its ZINB heads each cell's one-hot batch, as scVI's decoder reads it,
        so that the decoder, not the embedding, models the samples' own shifts. New cells of any batch, a new one
        included, are mapped by the encoder alone. Recorded in ``uns[key_added]["params"]["batch_key"]``.
    random_state
        Seed of everything random (python, numpy, torch). Results are identical for a seed on CPU with the same
        number of torch threads (recorded as ``params["torch_threads"]``; pin it with
        :attr:`scfuse.settings.n_threads`); GPU kernels are not bit-exact.
    n_fits
        Train the model this many times, with seeds ``random_state``, ``random_state + 1``, ... (``None``:
        from :attr:`scfuse.settings.seed`), and keep the
        most typical fit: the one whose labels have the highest mean adjusted Rand index to the other fits'
        labels (no cell-type labels are read). A fit that lands in an unusual partition is outvoted, so results
        move less with the seed; time and the memory of the trained models grow ``n_fits`` times. Use an odd
        number, 3 or more (with 2 the agreement ties and the first fit is kept). Each fit's seed and agreement,
        and which was kept, are recorded as ``params["fit_seeds"]``, ``params["fit_agreement"]`` and
        ``params["fit_chosen"]``; ``params["random_state"]`` is the kept fit's seed, so ``n_fits=1`` with that
        seed gives the same result. The default, 1, trains once (docs/benchmarks.md measures both).
    {doc_train}
    return_model
        Also return the trained model (for :func:`transfer`, ``save``/``load``).
    copy
        Work on and return a copy of ``adata``.
    **method_kwargs
        Model hyper-parameters of the method (architecture, loss weights); an unknown name lists the valid ones.

    Returns
    -------
    ``None``, the copy when ``copy=True``, or ``(adata or None, model)`` with ``return_model=True``. Sets

    ``adata.obs[key_added]`` : :class:`pandas.Categorical`
        Cluster labels ``'0'``, ``'1'``, ... numbered by decreasing size.
    ``adata.obsm[f"X_{key_added}"]`` : :class:`numpy.ndarray`
        Learned embedding (use ``sc.pp.neighbors(adata, use_rep=f"X_{key_added}")`` or
        :func:`scfuse.pl.embedding`).
    ``adata.obsm[f"{key_added}_proba"]`` : :class:`numpy.ndarray`
        Soft cluster assignments (cells x clusters).
    ``adata.var[f"{key_added}_genes"]`` : :class:`bool`
        The genes the model was trained on.
    ``adata.uns[key_added]`` : :class:`dict`
        ``params`` (method, seeds, epochs, device, n_clusters and whether it was estimated, ...), ``history``
        (per-epoch losses and label changes), ``n_clusters``, ``converged``.

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata)
    >>> scfuse.tl.cluster(adata, pretrain_epochs=2, max_epochs=2, progress_bar=False)
    >>> adata.obs["attentionae"].dtype.name
    'category'
    """
    from scfuse.models import get_model_class

    start = logg.info(f"clustering with {method!r}")
    check_adata(adata, writable=True)
    klass = get_model_class(method)
    key = method if key_added is None else key_added
    if not isinstance(key, str) or not key:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")

    make = partial(
        klass,
        adata,
        n_clusters=n_clusters,
        resolution=resolution,
        layer=layer,
        neighbors_key=neighbors_key,
        obsp=obsp,
        n_top_genes=n_top_genes,
        mask_var=mask_var,
        batch_key=batch_key,
        **method_kwargs,
    )
    training = {
        "max_epochs": max_epochs,
        "pretrain_epochs": pretrain_epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "tol": tol,
        "accelerator": accelerator,
        "devices": devices,
        "progress_bar": progress_bar,
    }
    model = _train_fits(make, training, check_positive_int(n_fits, "n_fits"), random_state)
    result = _write_trained(adata, model, key, copy=copy, start=start)
    return (result, model) if return_model else result


def transfer(
    adata: AnnData,
    model: FusionModel,
    *,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Map new cells onto a trained model: embedding, soft assignments and labels with the learned centres.

    ``adata`` needs raw counts in the model's layer and its own cell graph under the model's ``neighbors_key``
    (:func:`scfuse.pp.build_graph`). Genes are matched by name: genes the model does not know are ignored, and
    genes of the model that ``adata`` lacks are set to zero, with a warning that gives their share.

    Returns
    -------
    ``None`` or the copy; sets ``obs[key_added]``, ``obs[f"{key_added}_confidence"]`` (each cell's highest soft
    assignment), ``obsm[f"X_{key_added}"]``, ``obsm[f"{key_added}_proba"]`` and ``uns[key_added]["params"]``
    (``key_added`` defaults to the model's method name).

    Examples
    --------
    >>> import scfuse
    >>> ref = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3, random_state=0)
    >>> scfuse.pp.build_graph(ref)
    >>> _, model = scfuse.tl.cluster(ref, pretrain_epochs=2, max_epochs=2, return_model=True, progress_bar=False)
    >>> query = ref[:100].copy()
    >>> scfuse.pp.build_graph(query)
    >>> scfuse.tl.transfer(query, model)
    """
    check_adata(adata, writable=True)
    key = model.method_name if key_added is None else key_added
    out = model.outputs(adata)
    k = out["proba"].shape[1]
    target = adata.copy() if copy else adata
    keys = ClusterKeys(key)
    fields = {
        "obs": {
            keys.labels: _labels(out["labels"], k),
            f"{key}_confidence": np.asarray(out["proba"], dtype=np.float32).max(axis=1),
        },
        "obsm": {
            keys.embedding: np.asarray(out["latent"], dtype=np.float32),
            keys.proba: np.asarray(out["proba"], dtype=np.float32),
        },
        "uns": {keys.uns: {"params": {"method": model.method_name, "transferred": True, "n_clusters": int(k)}}},
    }
    assign_fields(target, fields)
    return target if copy else None
