"""The one training loop: epochs with a progress bar, optimiser steps, clipping, non-finite checks, history."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import numpy as np
import torch

from .._settings import settings
from .._utils._validate import TrainingError


def show_progress(progress_bar: bool | None) -> bool:
    """``None``: on in notebooks and terminals, unless :attr:`scfuse.settings.progress_bar` is ``False``."""
    if progress_bar is not None:
        return bool(progress_bar)
    if settings.progress_bar is not None:
        return bool(settings.progress_bar)
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            return True
    except ImportError:
        pass
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    clip: float | None = None,
    phase: str = "training",
    epoch: int = 0,
) -> float:
    value = float(loss.detach())
    if not np.isfinite(value):
        raise TrainingError(
            f"The {phase} loss became {value} at epoch {epoch + 1}. Try a lower learning_rate, check the input for "
            "extreme values, or change random_state. adata was not modified."
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return value


class Phase:
    """Runs ``epoch_fn(epoch) -> dict`` for up to ``n_epochs`` epochs with one tqdm bar and records history.

    ``epoch_fn`` returns the epoch's metrics (``"loss"`` at least, plus e.g. ``"delta_label"``) and may set
    ``"stop": True`` to end the phase early.
    """

    def __init__(self, name: str, n_epochs: int, *, progress_bar: bool, history: dict, prefix: str) -> None:
        self.name = name
        self.n_epochs = n_epochs
        self.progress_bar = progress_bar
        self.history = history
        self.prefix = prefix
        self.epochs_run = 0
        self.stopped_early = False

    def run(self, epoch_fn: Callable[[int], dict]) -> Phase:
        from tqdm.auto import tqdm

        bar = tqdm(range(self.n_epochs), desc=self.name, disable=not self.progress_bar, leave=True)
        for epoch in bar:
            metrics = epoch_fn(epoch)
            stop = bool(metrics.pop("stop", False))
            for k, v in metrics.items():
                v = float(v)
                if k == "loss" and not np.isfinite(v):
                    raise TrainingError(f"The {self.name.lower()} loss became {v} at epoch {epoch + 1}.")
                self.history.setdefault(f"{self.prefix}_{k}", []).append(v)
            self.epochs_run = epoch + 1
            bar.set_postfix({k: f"{float(v):.4g}" for k, v in metrics.items()})
            if stop:
                self.stopped_early = True
                break
        bar.close()
        return self


def mean_loss(
    batches: Iterable,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    *,
    clip: float | None,
    phase: str,
    epoch: int,
) -> float:
    """One epoch of optimiser steps over ``batches``; returns the mean loss."""
    total, count = 0.0, 0
    for batch in batches:
        loss = loss_fn(batch)
        total += optimizer_step(loss, optimizer, clip=clip, phase=phase, epoch=epoch)
        count += 1
    return total / max(count, 1)
