"""Simulated robustness scenarios, loadable by name next to the real datasets (``--datasets robustness``).

Each is a fixed simulation (``random_state=0``) of shapes the five real datasets do not cover well: rare types
(under 2% of cells), nested subtypes (labels are the subtypes), very unequal library sizes, many (32) and few
(2 and 3) types. A rule of the clustering start must also hold here (docs/benchmarks.md, protocol).
"""

from __future__ import annotations

LABEL_KEY = "cell_type"

_COMMON = {"n_genes": 1000, "de_prob": 0.1}
SCENARIOS: dict[str, dict] = {
    "sim_rare_types": dict(n_cells=3000, n_groups=6, group_sizes=[30, 30, 20, 17, 1.5, 1.5], **_COMMON),
    "sim_nested_subtypes": dict(n_cells=3000, n_groups=3, n_subgroups=3, **_COMMON),
    "sim_unequal_libraries": dict(n_cells=3000, n_groups=6, library_sd=1.0, **_COMMON),
    "sim_many_types": dict(n_cells=6400, n_groups=32, **_COMMON),
    "sim_two_types": dict(n_cells=2000, n_groups=2, **_COMMON),
    "sim_three_types": dict(n_cells=2000, n_groups=3, **_COMMON),
}


def expand(names: list[str]) -> list[str]:
    """``all``: the real datasets found; ``robustness``: the simulated scenarios; other names as given."""
    import scfuse

    out = []
    for name in names:
        out += scfuse.datasets.available() if name == "all" else list(SCENARIOS) if name == "robustness" else [name]
    return out


def load(name: str):
    """A real dataset by name, or a simulated scenario with its labels in ``obs["cell_type"]``."""
    import scfuse

    if name not in SCENARIOS:
        return scfuse.datasets.load(name)
    adata = scfuse.datasets.simulate(**SCENARIOS[name], random_state=0)
    adata.obs[LABEL_KEY] = adata.obs["group"]
    return adata
