"""Training with default settings on a real benchmark dataset (skipped when SCFUSE_DATA_DIR has no data)."""

from __future__ import annotations

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
