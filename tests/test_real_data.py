"""Training with default settings on a real benchmark dataset (skipped when SCFUSE_DATA_DIR has no data)."""

from __future__ import annotations

import pytest
from helpers import needs_data
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import scfuse


@needs_data
def test_attentionae_baron_mouse1_defaults():
    adata = scfuse.datasets.load("baron_mouse1")
    truth = adata.obs.pop("cell_type")  # the model never sees the labels
    scfuse.pp.build_graph(adata)
    scfuse.tl.cluster(adata, method="attentionae", random_state=0, progress_bar=False)
    ari = adjusted_rand_score(truth, adata.obs["attentionae"])
    nmi = normalized_mutual_info_score(truth, adata.obs["attentionae"])
    k = adata.uns["attentionae"]["n_clusters"]
    # measured with these settings: ARI 0.81, NMI 0.88, 8 clusters (13 annotated types, 5 of them < 20 cells)
    assert ari > 0.6 and nmi > 0.75, (ari, nmi, k)
    assert 5 <= k <= 20


# (method, dataset, n_clusters, measured ARI with these settings by benchmarks/run.py, seed 0)
OTHER_METHODS = [
    ("scdefer", "baron_mouse1", None, 0.797),
    ("scasdc", "baron_mouse2", None, 0.885),
    ("sccagn", "baron_mouse2", 13, 0.875),  # collapsed to 1 cluster before the latent rescaling
    ("scamac", "han_mouse_bladder_top2000", 16, 0.632),  # 0.460 with one clustering pass
]


@needs_data
@pytest.mark.parametrize(("method", "dataset", "n_clusters", "measured"), OTHER_METHODS)
def test_method_defaults_on_real_data(method, dataset, n_clusters, measured):
    adata = scfuse.datasets.load(dataset)
    truth = adata.obs.pop("cell_type")
    # one torch thread, as benchmarks/run.py --threads 1 measured it: a different thread count sums in another
    # order, and on these seeds that alone once moved scasdc's ARI from 0.907 to 0.596 (2 threads, earlier default)
    scfuse.pp.build_graph(adata, method=scfuse.models.get_model_class(method).graph_method, random_state=0)
    threads, scfuse.settings.n_threads = scfuse.settings.n_threads, 1
    try:
        scfuse.tl.cluster(adata, method=method, n_clusters=n_clusters, random_state=0, progress_bar=False)
    finally:
        scfuse.settings.n_threads = threads
    assert adata.uns[method]["params"]["torch_threads"] == 1
    ari = adjusted_rand_score(truth, adata.obs[method])
    # a broken model (collapse, random labels) gives an ARI near 0; the margin allows for library-version noise
    assert ari > measured - 0.2, (method, dataset, ari)
    assert adata.obs[method].nunique() >= 4
