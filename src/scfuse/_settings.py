"""Package-wide settings (``scfuse.settings``)."""

from __future__ import annotations

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
    """

    def __init__(self) -> None:
        self.seed: int = 0
        self.progress_bar: bool | None = None
        self._data_dir: Path | None = None

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
        return f"ScfuseConfig(seed={self.seed}, progress_bar={self.progress_bar}, data_dir={str(self.data_dir)!r})"


settings = ScfuseConfig()
