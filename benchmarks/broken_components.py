"""Do the tests notice a broken component? Runs the real-data tests with one part of every model broken.

    python benchmarks/broken_components.py --break graph [-- extra pytest arguments]

``--break graph``: the cell graph a model trains on (after any method-specific pruning) has its rows shuffled
(each cell is given the neighbours of another, random cell), as a misaligned graph would be; the graph branch
then carries noise instead of structure (``attentionae``, ``scasdc``, ``scdefer``, ``sccagn``; ``scamac`` has no
cell graph). ``--break counts``: the counts of the ZINB loss are shuffled over cells (each cell reconstructs
another cell's counts), as a misaligned count matrix would be (the three methods with a count decoder).
``--break centres``: the fuzzy head's centre update of ``scamac`` keeps the old centres (a no-op update).

The tests (``tests/test_real_data.py`` by default) run unchanged with the break applied in-process through a
pytest plugin; a test that fails has noticed the break. Labels only score, as in the tests themselves.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

BREAKS = ("graph", "counts", "centres")


class BreakPlugin:
    """Applies one break for the whole pytest session."""

    def __init__(self, what: str):
        self.what = what

    def pytest_sessionstart(self, session):
        import scipy.sparse as sp

        from scfuse.models import _base

        if self.what == "graph":
            original = _base.FusionModel._make_data

            def shuffled_graph(model, counts, graph):
                if graph is not None:
                    perm = np.random.default_rng(0).permutation(graph.shape[0])
                    graph = sp.csr_matrix(graph)[perm]  # cell i gets the neighbour list of cell perm[i]
                    graph = sp.csr_matrix((graph + graph.T) / 2)
                return original(model, counts, graph)

            _base.FusionModel._make_data = shuffled_graph
        elif self.what == "counts":
            from scfuse.models import _preprocess

            original_transform = _preprocess.Preprocessor.transform

            def shuffled_counts(self, counts):
                logx, raw, sf = original_transform(self, counts)
                perm = np.random.default_rng(0).permutation(raw.shape[0])
                return logx, raw[perm], sf[perm]

            _preprocess.Preprocessor.transform = shuffled_counts
        elif self.what == "centres":
            from scfuse.nn import _fuzzy

            _fuzzy.AdaptiveFuzzyKMeans.update_centers = staticmethod(lambda z, u, h, centers: centers)


def main(argv=None) -> int:
    import argparse

    import pytest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--break", dest="what", choices=BREAKS, required=True)
    ap.add_argument("pytest_args", nargs="*", default=None)
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tests"))
    targets = args.pytest_args or [str(root / "tests" / "test_real_data.py"), "-q", "-rA", "-p", "no:cacheprovider"]
    return pytest.main(targets, plugins=[BreakPlugin(args.what)])


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "agg")
    sys.exit(main())
