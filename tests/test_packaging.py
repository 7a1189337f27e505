"""Packaging: one version, every third-party import declared, licence and citation files present."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

import scfuse

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "umap": "umap-learn"}
OPTIONAL = {"IPython"}  # imported inside try/except ImportError


def test_one_version():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "src/scfuse/_version.py"
    from scfuse._version import __version__

    assert scfuse.__version__ == __version__


def test_third_party_imports_are_declared():
    declared = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for d in PYPROJECT["project"]["dependencies"]}
    imported = set()
    for f in (ROOT / "src" / "scfuse").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"scfuse", "__future__"} - OPTIONAL
    missing = {DISTRIBUTION.get(m, m).lower() for m in third_party} - declared
    assert not missing, f"imported but not in pyproject dependencies: {sorted(missing)}"


def test_license_and_citation_files():
    assert PYPROJECT["project"]["license"] == "BSD-3-Clause"
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License\n\nCopyright (c) 2026, scfuse developers")
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "BSD-3-Clause"
    assert len(cff["references"]) == 5 and all(r["authors"] and r["title"] for r in cff["references"])
