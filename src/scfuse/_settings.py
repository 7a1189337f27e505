"""Package-wide settings (``scfuse.settings``)."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

_DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"


class ScfuseConfig:
    """Global settings of scfuse.

    Attributes
    ----------
    seed
        Fallback seed used when a function is called with ``random_state=None``.
    progress_bar
        ``None`` shows progress bars in notebooks and terminals, ``False`` never, ``True`` always.
    data_dir
        Folder of the benchmark ``.h5ad`` files read by :func:`scfuse.datasets.load`.
        Defaults to the environment variable ``SCFUSE_DATA_DIR``, else ``../shared/data`` beside the checkout.
    n_threads
        CPU threads torch uses while a model trains or infers (restored afterwards); ``None`` keeps torch's
        current setting. CPU results are reproducible for the same seed and the same thread count, and the count
        torch has can change behind the user's back: scanpy's numba-compiled preprocessing (e.g.
        ``sc.pp.normalize_total``) can raise the shared OpenMP runtime to all cores. Set this to pin it.
    """

    def __init__(self) -> None:
        self.seed: int = 0
        self.progress_bar: bool | None = None
        self._data_dir: Path | None = None
        self._n_threads: int | None = None

    @property
    def n_threads(self) -> int | None:
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"n_threads must be a positive int or None, got {value!r}.")
        self._n_threads = None if value is None else int(value)

    @property
    def data_dir(self) -> Path:
        if self._data_dir is not None:
            return self._data_dir
        env = os.environ.get("SCFUSE_DATA_DIR")
        if env:
            return Path(env).expanduser()
        return _DEFAULT_DATA_DIR.resolve()

    @data_dir.setter
    def data_dir(self, value: str | os.PathLike | None) -> None:
        self._data_dir = None if value is None else Path(value).expanduser()

    def __repr__(self) -> str:
        return (
            f"ScfuseConfig(seed={self.seed}, progress_bar={self.progress_bar}, data_dir={str(self.data_dir)!r}, "
            f"n_threads={self.n_threads})"
        )


settings = ScfuseConfig()
