"""Resolve references to third-party objects without network access.

The docs build must pass with ``-W`` on machines that cannot download intersphinx inventories (CI runners here
have no internet). References such as :class:`anndata.AnnData` or :func:`scanpy.tl.leiden` that no inventory
resolved are turned into plain links to the object's page in its project's documentation, following each
project's URL layout. Anything not covered below is left alone, so ``nitpicky`` still reports real mistakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docutils import nodes

if TYPE_CHECKING:
    from sphinx.application import Sphinx

PY = "https://docs.python.org/3/"
_BUILTINS = {
    "int": "library/functions.html#int",
    "float": "library/functions.html#float",
    "str": "library/stdtypes.html#str",
    "bool": "library/functions.html#bool",
    "dict": "library/stdtypes.html#dict",
    "list": "library/stdtypes.html#list",
    "tuple": "library/stdtypes.html#tuple",
    "None": "library/constants.html#None",
    "Ellipsis": "library/constants.html#Ellipsis",
    "object": "library/functions.html#object",
    "type": "library/functions.html#type",
}


def _python(target: str) -> str | None:
    if target in _BUILTINS:
        return PY + _BUILTINS[target]
    if target.startswith("typing."):
        return PY + f"library/typing.html#{target}"
    if target.startswith("os."):
        return PY + f"library/os.html#{target}"
    if target.startswith("pathlib."):
        return PY + f"library/pathlib.html#{target}"
    if target.startswith("collections.abc."):
        return PY + f"library/collections.abc.html#{target}"
    return None


def _external(target: str) -> str | None:
    top = target.split(".", 1)[0]
    if top == "anndata":
        return f"https://anndata.readthedocs.io/en/stable/generated/{target}.html"
    if top == "scanpy":
        return f"https://scanpy.readthedocs.io/en/stable/generated/{target}.html"
    if top == "pandas":
        return f"https://pandas.pydata.org/docs/reference/api/{target}.html"
    if top == "numpy":
        return f"https://numpy.org/doc/stable/reference/generated/{target}.html"
    if top == "scipy":
        return f"https://docs.scipy.org/doc/scipy/reference/generated/{target}.html"
    if top == "matplotlib":
        return f"https://matplotlib.org/stable/api/_as_gen/{target}.html"
    if top == "torch":
        return f"https://docs.pytorch.org/docs/stable/generated/{target}.html"
    return _python(target)


_ALIASES = {
    "AnnData": "anndata.AnnData",
    "np.ndarray": "numpy.ndarray",
    "pd.DataFrame": "pandas.DataFrame",
    "Axes": "matplotlib.axes.Axes",
    "Figure": "matplotlib.figure.Figure",
    "Path": "pathlib.Path",
    "Any": "typing.Any",
    "Literal": "typing.Literal",
    "PathLike": "os.PathLike",
}


def missing_reference(app: Sphinx, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    target = _ALIASES.get(target, target)
    url = _external(target)
    if url is None:
        return None
    ref = nodes.reference("", "", internal=False, refuri=url, reftitle=target)
    ref.append(contnode)
    return ref


def setup(app: Sphinx) -> dict:
    app.connect("missing-reference", missing_reference, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
