"""Parameter documentation shared by several functions, written once (as scanpy's ``_docs.py``)."""

from __future__ import annotations

from collections.abc import Callable

doc_train = """\
max_epochs
    Maximum epochs of the clustering stage (method default when ``None``).
pretrain_epochs
    Epochs of pretraining (method default when ``None``).
batch_size
    Cells per mini-batch (method default when ``None``; at most the method's ``max_batch_size``).
learning_rate
    Learning rate of the main optimiser (method default when ``None``).
tol
    The clustering stage stops when fewer than this fraction of labels changes between epochs.
accelerator
    ``"auto"`` picks CUDA, then Apple MPS, then the CPU; or ``"cpu"``, ``"gpu"``, ``"mps"``.
devices
    CUDA device index or ``"auto"``.
progress_bar
    One progress bar per training phase; ``None`` shows them in notebooks and terminals."""


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def doc_params(**docs: str) -> Callable:
    """Decorator: replace ``{name}`` placeholders on lines of their own in a docstring by shared parameter docs.

    A placeholder takes the indentation of its line; other braces of the docstring are left alone.
    """

    def decorate(obj):
        lines = []
        for line in (obj.__doc__ or "").split("\n"):
            key = line.strip()[1:-1] if line.strip().startswith("{") and line.strip().endswith("}") else None
            if key in docs:
                lines.append(_indent(docs[key], len(line) - len(line.lstrip())))
            else:
                lines.append(line)
        obj.__doc__ = "\n".join(lines)
        return obj

    return decorate
