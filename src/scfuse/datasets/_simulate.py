from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def simulate(
    n_cells: int = 1000,
    n_genes: int = 500,
    n_groups: int = 4,
    *,
    de_prob: float = 0.15,
    de_scale: float = 1.0,
    dispersion: float = 0.3,
    dropout: float = 0.2,
    library_size: float = 2000.0,
    library_sd: float = 0.3,
    group_sizes: list[float] | None = None,
    n_subgroups: int = 1,
    sub_de_prob: float | None = None,
    random_state: int = 0,
):
    """Simulate raw UMI counts of cells from ``n_groups`` cell types (zero-inflated negative binomial).

    Each gene has a log-normal base expression; in each group a fraction ``de_prob`` of genes is up- or
    down-regulated by a log-fold change drawn from ``N(0, de_scale)``. Cells get log-normal library sizes,
    counts are negative binomial (``dispersion`` = 1/theta) and a share ``dropout`` of the non-zero entries is
    set to zero. It is the package's demo data and test fixture.

    Parameters
    ----------
    n_cells, n_genes, n_groups
        Size of the data and number of cell types.
    de_prob
        Fraction of genes differentially expressed in each group.
    de_scale
        Standard deviation of the log fold changes.
    dispersion
        Negative binomial dispersion (variance = mu + dispersion * mu^2).
    dropout
        Fraction of non-zero counts set to zero.
    library_size
        Median total counts per cell.
    library_sd
        Standard deviation of the log library sizes (1.0 gives libraries that differ 10-fold and more).
    group_sizes
        Relative group sizes (default equal).
    n_subgroups
        Nested subtypes: each group is split into this many subgroups, each with its own smaller set of
        differentially expressed genes (``sub_de_prob``, default ``de_prob / 3``) on top of the group's. The
        labels in ``obs["group"]`` are then the subgroups (``'g0.1'``), the groups are in
        ``obs["parent_group"]``.
    random_state
        Seed.

    Returns
    -------
    :class:`~anndata.AnnData` with integer counts in ``X`` (CSR, float32) and ``layers["counts"]``, the true
    groups in ``obs["group"]`` (categorical ``'g0'...``) and ``uns["simulation"]`` with the parameters.

    Examples
    --------
    >>> import scfuse
    >>> adata = scfuse.datasets.simulate(n_cells=300, n_genes=200, n_groups=3, random_state=1)
    >>> adata.shape
    (300, 200)
    """
    import anndata as ad

    if n_subgroups < 1 or n_cells < n_groups * n_subgroups or n_groups < 1 or n_genes < 1:
        raise ValueError("Need n_groups >= 1, n_subgroups >= 1, n_genes >= 1 and n_cells >= n_groups * n_subgroups.")
    if library_sd < 0:
        raise ValueError(f"library_sd must be >= 0, got {library_sd}.")
    rng = np.random.default_rng(random_state)
    if group_sizes is None:
        probs = np.full(n_groups, 1.0 / n_groups)
    else:
        probs = np.asarray(group_sizes, dtype=float)
        if probs.shape != (n_groups,) or np.any(probs <= 0):
            raise ValueError("group_sizes must hold n_groups positive numbers.")
        probs = probs / probs.sum()
    counts_per_group = rng.multinomial(n_cells - n_groups, probs) + 1
    groups = np.repeat(np.arange(n_groups), counts_per_group)
    rng.shuffle(groups)

    profile, groups, parents = _profiles(rng, groups, n_genes, de_prob, de_scale, n_subgroups, sub_de_prob)

    lib = rng.lognormal(mean=np.log(library_size), sigma=library_sd, size=n_cells)
    theta = 1.0 / dispersion
    x = _sample_counts(rng, profile, groups, lib, theta, dropout)
    obs = _obs(groups, parents, n_groups, n_subgroups)
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.layers["counts"] = x.copy()
    adata.uns["simulation"] = {
        "n_groups": n_groups,
        "de_prob": de_prob,
        "de_scale": de_scale,
        "dispersion": dispersion,
        "dropout": dropout,
        "library_size": library_size,
        "library_sd": library_sd,
        "n_subgroups": n_subgroups,
        "random_state": random_state,
    }
    return adata


def _sample_counts(rng, profile: np.ndarray, groups: np.ndarray, lib: np.ndarray, theta: float, dropout: float):
    """Negative-binomial counts (gamma-Poisson) with dropout, in blocks of cells: memory O(block x genes)."""
    n_cells, n_genes = groups.size, profile.shape[1]
    blocks = []
    for start in range(0, n_cells, 5000):  # in blocks of cells: memory stays O(block * genes)
        stop = min(start + 5000, n_cells)
        mu = profile[groups[start:stop]] * lib[start:stop, None]
        lam = rng.gamma(shape=theta, scale=mu / theta)
        x = rng.poisson(lam).astype(np.float32)
        if dropout > 0:
            drop = (rng.random(x.shape) < dropout) & (x > 0)
            x[drop] = 0
        empty = x.sum(axis=1) == 0  # no empty cells
        if empty.any():
            x[empty, rng.integers(0, n_genes, empty.sum())] = 1
        blocks.append(sp.csr_matrix(x))
    return sp.vstack(blocks, format="csr")


def _obs(groups: np.ndarray, parents: np.ndarray | None, n_groups: int, n_subgroups: int) -> pd.DataFrame:
    """``obs`` of the simulated cells: ``group`` (and ``parent_group`` with subgroups)."""
    n_cells = groups.size
    if n_subgroups > 1:
        names = [f"g{g}.{s}" for g in range(n_groups) for s in range(n_subgroups)]
        obs = pd.DataFrame(
            {
                "group": pd.Categorical([names[g] for g in groups], categories=names),
                "parent_group": pd.Categorical(
                    [f"g{g}" for g in parents], categories=[f"g{g}" for g in range(n_groups)]
                ),
            },
            index=[f"cell{i}" for i in range(n_cells)],
        )
    else:
        obs = pd.DataFrame(
            {"group": pd.Categorical([f"g{g}" for g in groups], categories=[f"g{g}" for g in range(n_groups)])},
            index=[f"cell{i}" for i in range(n_cells)],
        )
    return obs


def _profiles(rng, groups: np.ndarray, n_genes: int, de_prob, de_scale, n_subgroups: int, sub_de_prob):
    """Expression profiles of the groups (and subgroups), the cells' (sub)group and their parent group."""
    n_groups, n_cells = int(groups.max()) + 1, groups.size
    parents = None
    base = rng.lognormal(mean=0.0, sigma=1.2, size=n_genes)
    log_fc = np.zeros((n_groups, n_genes))
    for g in range(n_groups):
        de = rng.random(n_genes) < de_prob
        log_fc[g, de] = rng.normal(0.0, de_scale, size=de.sum()) + np.sign(rng.normal(size=de.sum())) * 0.5
    if n_subgroups > 1:  # each group's cells split evenly at random into subgroups with their own DE genes
        sub_p = de_prob / 3 if sub_de_prob is None else sub_de_prob
        parents = groups.copy()
        subs = rng.integers(0, n_subgroups, size=n_cells)
        groups = parents * n_subgroups + subs
        log_fc = np.repeat(log_fc, n_subgroups, axis=0)
        for g in range(n_groups * n_subgroups):
            de = rng.random(n_genes) < sub_p
            log_fc[g, de] += rng.normal(0.0, de_scale, size=de.sum()) + np.sign(rng.normal(size=de.sum())) * 0.5
    profile = base[None, :] * np.exp(log_fc)
    profile /= profile.sum(axis=1, keepdims=True)
    return profile, groups, parents
