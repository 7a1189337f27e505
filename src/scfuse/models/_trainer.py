"""The one training loop: epochs with a progress bar, optimiser steps, clipping, non-finite checks, history."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scanpy import logging as logg

from scfuse._settings import settings
from scfuse._utils._validate import TrainingError, check_positive_int


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


class ScheduleMixin:
    """The training schedule of :class:`~scfuse.models.FusionModel`: epochs, steps per epoch, mini-batches."""

    def _phase_batches(self, batch_size: int, phase: str):
        """Index arrays of one epoch of ``phase`` (``"pretrain"`` or ``"cluster"``): graph-local mini-batches.

        At most the phase's steps per epoch of the default schedule (:meth:`default_schedule`).
        """
        gen = self.data.epoch_batches(
            batch_size, self.rng, neighbors_per_seed=self.hparams.get("neighbors_per_seed", 3)
        )
        return itertools.islice(gen, self._epoch_steps.get(phase))

    def _training_schedule(self, max_epochs, pretrain_epochs, batch_size, learning_rate) -> dict[str, Any]:
        """Epochs, mini-batch size, steps per epoch and learning rate of :meth:`train`, checked, defaults filled."""
        n = self.data.n
        if batch_size is None:
            batch_size = self.default_batch_size
        batch_size = check_positive_int(batch_size, "batch_size", minimum=2)
        if batch_size > self.max_batch_size:
            logg.warning(f"batch_size={batch_size} is capped to {self.max_batch_size} cells per mini-batch.")
            batch_size = self.max_batch_size
        self._epoch_steps = {}
        if max_epochs is None:
            max_epochs, self._epoch_steps["cluster"] = self.default_schedule(
                n, batch_size, self.default_cluster_steps, self.default_cluster_epoch_range
            )
        max_epochs = check_positive_int(max_epochs, "max_epochs", minimum=0)
        if pretrain_epochs is None:
            pretrain_epochs, self._epoch_steps["pretrain"] = self.default_schedule(
                n, batch_size, self.default_pretrain_steps, self.default_pretrain_epoch_range
            )
        pretrain_epochs = check_positive_int(pretrain_epochs, "pretrain_epochs", minimum=0)
        learning_rate = self.default_learning_rate if learning_rate is None else float(learning_rate)
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}.")
        if self.n_clusters_requested is not None and self.n_clusters_requested > n:
            raise ValueError(f"n_clusters={self.n_clusters_requested} exceeds the number of cells ({n}).")
        return {
            "max_epochs": max_epochs,
            "pretrain_epochs": pretrain_epochs,
            "batch_size": batch_size,
            "steps_per_epoch": {k: v for k, v in self._epoch_steps.items() if v is not None},
            "learning_rate": learning_rate,
        }

    @classmethod
    def default_schedule(
        cls, n: int, batch_size: int, steps: int, epoch_range: tuple[int, int]
    ) -> tuple[int, int | None]:
        """``(epochs, steps per epoch)`` of a phase's default schedule on ``n`` cells (``None``: whole epochs).

        Up to ``fixed_budget_cells`` cells: whole epochs, about ``steps`` mini-batch steps in all, clipped to
        ``epoch_range``. Above it the budget is ``steps`` whatever ``n``: whole epochs while one epoch is short
        enough, else the lower end of ``epoch_range`` epochs of ``ceil(steps / lower end)`` mini-batches each
        (so training time stops growing with ``n`` and each cell is seen about ``steps * batch_size / n`` times).
        """
        per_epoch = max(1, int(np.ceil(n / batch_size)))
        lo, hi = epoch_range
        epochs = int(min(hi, max(lo, int(np.ceil(steps / per_epoch)))))
        if n <= cls.fixed_budget_cells or per_epoch * lo <= steps:
            return epochs, None
        return lo, int(np.ceil(steps / lo))
