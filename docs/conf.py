"""Sphinx configuration of the scfuse documentation (scverse cookiecutter style)."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from datetime import datetime
from importlib.metadata import metadata
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

# The tutorials live in ../tutorials (executed notebooks, outputs committed). Sphinx only reads files inside the
# docs folder, so they are copied to docs/tutorials/ (git-ignored) at every build.
_TUTORIALS = HERE.parent / "tutorials"
for _nb in sorted(_TUTORIALS.glob("*.ipynb")):
    _dst = HERE / "tutorials" / _nb.name
    if not _dst.exists() or _dst.read_bytes() != _nb.read_bytes():
        shutil.copyfile(_nb, _dst)

# -- Project information -----------------------------------------------------
info = metadata("scfuse")
project = info["Name"]
author = "scfuse developers"
copyright = f"{datetime.now():%Y}, {author}"
version = info["Version"]
release = version
repository_url = "https://github.com/scfuse/scfuse"

# -- General configuration ---------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
    "sphinxcontrib.bibtex",
    "offline_xref",
    "method_table",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".ipynb": "myst-nb", ".md": "myst-nb"}
master_doc = "index"
default_role = "literal"
bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

# the tutorials live in ../tutorials; they are copied next to the docs sources by the hook below
nb_execution_mode = "off"  # notebooks are committed with their outputs
nb_merge_streams = True
nb_output_stderr = "remove"  # progress bars and warnings written to stderr are not rendered
myst_enable_extensions = ["amsmath", "colon_fence", "deflist", "dollarmath", "html_image"]
myst_heading_anchors = 3
myst_url_schemes = ("http", "https", "mailto")

# -- autodoc / autosummary / napoleon ----------------------------------------
autosummary_generate = True
autodoc_member_order = "groupwise"
autoclass_content = "class"
autodoc_inherit_docstrings = False  # torch.nn.Module docstrings are not ours to render
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True  # having a separate entry generally helps readability
napoleon_use_param = True
napoleon_custom_sections = [("Params", "Parameters")]
typehints_defaults = "braces"
always_document_param_types = False
typehints_use_signature = False
typehints_use_signature_return = False

# Intersphinx needs network access to download the inventories. It is off by default so the build passes
# offline (CI); references to other projects are then linked by the local ``offline_xref`` extension.
# Set SCFUSE_DOCS_INTERSPHINX=1 to use the real inventories.
intersphinx_mapping = (
    {
        "python": ("https://docs.python.org/3", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
    }
    if os.environ.get("SCFUSE_DOCS_INTERSPHINX") == "1"
    else {}
)

# -- HTML output -------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_static_path: list[str] = []
html_title = project
html_theme_options = {
    "repository_url": repository_url,
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
pygments_style = "default"

# -- nitpicky: every cross-reference must resolve ------------------------------
nitpicky = True
nitpick_ignore = [
    # private or third-party names without an intersphinx target
    ("py:class", "scfuse.models._data.CellData"),
    ("py:class", "ClassVar"),
]

# sphinx-autodoc-typehints 3.x calls an API that Sphinx 9 deprecates; the notice is not ours to fix
warnings.filterwarnings("ignore", message=".*set_application.*", category=DeprecationWarning)


def _readme_links(app, relative_path, parent_docname, content):
    """The README links ``CHANGELOG.md`` (a file outside docs/); point it at the changelog page instead."""
    if relative_path.name == "README.md":
        content[0] = content[0].replace("](CHANGELOG.md)", "](docs/changelog.md)")


def setup(app):
    app.connect("include-read", _readme_links)
