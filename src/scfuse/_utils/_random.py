from __future__ import annotations

import random

import numpy as np
import torch

from scfuse._settings import settings


def resolve_seed(random_state: int | None) -> int:
    """Return ``random_state`` or, when it is ``None``, :attr:`scfuse.settings.seed`."""
    seed = settings.seed if random_state is None else random_state
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"random_state must be an int or None, got {type(random_state).__name__}.")
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) and ask cuDNN for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


class deterministic_algorithms:
    """Context manager: torch's deterministic kernels on the CPU.

    Some CPU reductions, e.g. in the backward pass of sparse matmuls, otherwise depend on thread timing. The
    previous setting is restored on exit. On GPUs nothing changes: results there are not bit-exact.
    """

    def __init__(self, device: torch.device) -> None:
        self.active = device.type == "cpu"

    def __enter__(self) -> deterministic_algorithms:
        if self.active:
            self._prev = torch.are_deterministic_algorithms_enabled()
            self._prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
            torch.use_deterministic_algorithms(True, warn_only=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            torch.use_deterministic_algorithms(self._prev, warn_only=self._prev_warn)


class torch_threads:
    """Context manager: torch runs on :attr:`scfuse.settings.n_threads` CPU threads inside.

    The previous count is restored on exit (nothing changes when the setting is ``None``).
    """

    def __enter__(self) -> int:
        self._prev = torch.get_num_threads()
        if settings.n_threads is not None:
            torch.set_num_threads(settings.n_threads)
        return torch.get_num_threads()

    def __exit__(self, *exc) -> None:
        if torch.get_num_threads() != self._prev:
            torch.set_num_threads(self._prev)
