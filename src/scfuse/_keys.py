"""The one place that builds the names of the fields scfuse writes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraphKeys:
    key: str

    @property
    def connectivities(self) -> str:
        return f"{self.key}_connectivities"

    @property
    def distances(self) -> str:
        return f"{self.key}_distances"

    @property
    def pca(self) -> str:
        return f"X_{self.key}_pca"


@dataclass(frozen=True)
class ClusterKeys:
    key: str

    @property
    def labels(self) -> str:  # adata.obs
        return self.key

    @property
    def embedding(self) -> str:  # adata.obsm
        return f"X_{self.key}"

    @property
    def proba(self) -> str:  # adata.obsm
        return f"{self.key}_proba"

    @property
    def genes(self) -> str:  # adata.var, the genes the model used
        return f"{self.key}_genes"

    @property
    def uns(self) -> str:
        return self.key

    @property
    def umap(self) -> str:  # adata.obsm, cached by scfuse.pl.embedding
        return f"X_{self.key}_umap"
