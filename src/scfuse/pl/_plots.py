from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from scfuse._keys import ClusterKeys

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _cluster_record(adata: AnnData, key: str) -> dict:
    if key not in adata.uns or "params" not in adata.uns[key]:
        raise KeyError(f"adata.uns[{key!r}] not found; run scfuse.tl.cluster(adata, key_added={key!r}) first.")
    return adata.uns[key]


def embedding(
    adata: AnnData,
    basis: str = "attentionae",
    *,
    color: str | list[str] | None = None,
    n_neighbors: int = 15,
    random_state: int = 0,
    show: bool | None = None,
    ax: Axes | None = None,
    return_fig: bool | None = None,
    **kwargs: Any,
):
    """Scatter plot of the UMAP of a learned embedding, drawn with :func:`scanpy.pl.embedding`.

    ``basis`` is the ``key_added`` of :func:`scfuse.tl.cluster` (its embedding ``obsm[f"X_{basis}"]``) or any
    ``obsm`` key. When the embedding has more than 2 dimensions its UMAP is computed once (kNN graph of the
    embedding, :func:`scanpy.tl.umap`) and cached in ``obsm[f"X_{basis}_umap"]``, with a digest of the embedding and
    the UMAP's parameters in ``uns["scfuse_umap"]``: when the embedding changes (``tl.cluster`` rerun under the same
    key) or the parameters differ, the UMAP is computed again. ``adata.uns["neighbors"]`` and ``obsm["X_umap"]``
    are left as they were.

    Parameters
    ----------
    adata
        Annotated data matrix.
    basis
        Key of the clustering run or of ``adata.obsm``.
    color
        Keys of ``obs`` or genes to colour by; defaults to the cluster labels ``obs[basis]`` when present.
    n_neighbors, random_state
        Of the cached UMAP.
    show, ax, return_fig, **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata)
    >>> scfuse.tl.cluster(adata, pretrain_epochs=2, max_epochs=2, progress_bar=False)
    >>> ax = scfuse.pl.embedding(adata, "attentionae", color="group", show=False)
    """
    import scanpy as sc

    keys = ClusterKeys(basis)
    if keys.embedding in adata.obsm:
        emb_key = keys.embedding
    elif basis in adata.obsm:
        emb_key = basis
    else:
        raise KeyError(
            f"No embedding for basis={basis!r}: neither obsm[{keys.embedding!r}] nor obsm[{basis!r}] exists."
        )
    if color is None and basis in adata.obs:
        color = basis
    emb = np.asarray(adata.obsm[emb_key])
    if emb.shape[1] == 2:
        plot_key = emb_key
    else:
        plot_key = f"{emb_key}_umap"
        import hashlib

        params = {
            "embedding_digest": hashlib.blake2b(np.ascontiguousarray(emb).tobytes(), digest_size=16).hexdigest(),
            "n_neighbors": int(n_neighbors),
            "random_state": int(random_state),
        }
        cached = adata.uns.get("scfuse_umap", {}).get(plot_key)
        if plot_key not in adata.obsm or cached is None or dict(cached) != params:
            import anndata as ad

            tmp = ad.AnnData(np.zeros((adata.n_obs, 0), dtype=np.float32), obs=adata.obs[[]].copy())
            tmp.obsm["rep"] = emb
            sc.pp.neighbors(tmp, n_neighbors=n_neighbors, use_rep="rep", random_state=random_state)
            sc.tl.umap(tmp, random_state=random_state)
            adata.obsm[plot_key] = tmp.obsm["X_umap"]
            adata.uns.setdefault("scfuse_umap", {})[plot_key] = params
    return sc.pl.embedding(adata, basis=plot_key, color=color, show=show, ax=ax, return_fig=return_fig, **kwargs)


def history(
    adata: AnnData, key: str = "attentionae", *, show: bool | None = None, return_fig: bool = False
) -> Figure | None:
    """Loss curves of each training phase (the total and its terms), the label change and the clusters in use.

    Besides the losses: the fraction of labels that changed and the number of clusters holding cells, per
    clustering epoch.

    Reads ``adata.uns[key]["history"]`` written by :func:`scfuse.tl.cluster`. Where the clustering stage ran in
    several passes (``scamac``), dotted lines mark the epochs where a new pass starts.

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata)
    >>> scfuse.tl.cluster(adata, pretrain_epochs=3, max_epochs=3, progress_bar=False)
    >>> fig = scfuse.pl.history(adata, "attentionae", show=False, return_fig=True)
    """
    import matplotlib.pyplot as plt

    hist = _cluster_record(adata, key).get("history", {})
    series = {k: np.asarray(v) for k, v in hist.items() if len(np.atleast_1d(v))}
    # the clustering pass of each epoch (scamac) is drawn as dotted lines where a new pass starts, not as a curve
    passes = series.pop("cluster_pass", None)
    starts = [] if passes is None else (np.flatnonzero(np.diff(passes) != 0) + 1.5).tolist()
    if not series:
        raise ValueError(f"adata.uns[{key!r}]['history'] is empty.")
    # one panel per phase's losses (the total and each weighted term of the module's loss), one per other series
    panels: dict[str, dict[str, np.ndarray]] = {}
    for name, vals in sorted(series.items()):
        phase, _, term = name.partition("_")
        panel = (
            f"{phase} loss" if phase in ("pretrain", "cluster") and term not in ("delta_label", "n_clusters") else name
        )
        panels.setdefault(panel, {})[term if panel != name else name] = vals
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    order = {"pretrain loss": 0, "cluster loss": 1}
    panels = dict(sorted(panels.items(), key=lambda kv: order.get(kv[0], 2)))
    for ax, (panel, curves) in zip(axes[0], panels.items(), strict=True):
        for label, vals in sorted(curves.items(), key=lambda kv: kv[0] != "loss"):
            ax.plot(np.arange(1, len(vals) + 1), vals, marker="." if len(vals) < 50 else None, label=label)
        n = max(len(v) for v in curves.values())
        if passes is not None and panel.startswith("cluster") and n == len(passes):
            for x in starts:
                ax.axvline(x, color="0.6", linestyle=":", linewidth=1)
        ax.set_title(panel.replace("_", " "))
        ax.set_xlabel("epoch")
        if len(curves) > 1:
            ax.legend(fontsize="small")
        vals = np.concatenate([v for v in curves.values() if np.all(np.isfinite(v))] or [np.ones(1)])
        if "loss" in panel and np.all(vals > 0) and vals.max() / max(vals.min(), 1e-12) > 20:
            ax.set_yscale("log")
    fig.suptitle(f"scfuse {key} training history")
    fig.tight_layout()
    if show or (show is None and not return_fig):
        plt.show()
    return fig if return_fig else None


def cluster_proba(
    adata: AnnData, key: str = "attentionae", *, show: bool | None = None, return_fig: bool = False
) -> Figure | None:
    """Heat map of the soft assignments ``obsm[f"{key}_proba"]``, cells sorted by cluster and confidence.

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3)
    >>> scfuse.pp.build_graph(adata)
    >>> scfuse.tl.cluster(adata, pretrain_epochs=2, max_epochs=2, progress_bar=False)
    >>> fig = scfuse.pl.cluster_proba(adata, show=False, return_fig=True)
    """
    import matplotlib.pyplot as plt

    keys = ClusterKeys(key)
    if keys.proba not in adata.obsm:
        raise KeyError(f"adata.obsm[{keys.proba!r}] not found; run scfuse.tl.cluster(adata, key_added={key!r}).")
    proba = np.asarray(adata.obsm[keys.proba])
    labels = proba.argmax(axis=1)
    order = np.lexsort((-proba.max(axis=1), labels))
    fig, ax = plt.subplots(figsize=(max(3.0, 0.4 * proba.shape[1] + 2), 4.0))
    im = ax.imshow(proba[order], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.set_xlabel("cluster")
    ax.set_ylabel("cells (sorted)")
    ax.set_yticks([])
    ax.set_xticks(range(proba.shape[1]))
    fig.colorbar(im, ax=ax, label="assignment probability")
    ax.set_title(f"{key}: soft assignments")
    fig.tight_layout()
    if show or (show is None and not return_fig):
        plt.show()
    return fig if return_fig else None
