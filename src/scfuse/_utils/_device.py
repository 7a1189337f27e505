from __future__ import annotations

import torch


def resolve_device(accelerator: str = "auto", devices: int | str = "auto") -> torch.device:
    """Pick the torch device for ``accelerator`` (``"auto"``, ``"cpu"``, ``"gpu"``/``"cuda"``, ``"mps"``).

    ``"auto"`` takes CUDA when available, then Apple MPS, else the CPU. ``devices`` picks the CUDA device index
    (``"auto"`` means 0); multi-GPU training is not supported.
    """
    acc = str(accelerator).lower()
    if acc not in {"auto", "cpu", "gpu", "cuda", "mps"}:
        raise ValueError(f"accelerator must be one of 'auto', 'cpu', 'gpu', 'cuda', 'mps'; got {accelerator!r}.")
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if acc == "auto":
        acc = "cuda" if torch.cuda.is_available() else ("mps" if mps_ok else "cpu")
    if acc == "gpu":
        acc = "cuda"
    if acc == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("accelerator='gpu' was requested but CUDA is not available; use accelerator='cpu'.")
        if devices in ("auto", None):
            index = 0
        elif isinstance(devices, int) and devices >= 0:
            index = devices
        else:
            raise ValueError(f"devices must be 'auto' or a single non-negative device index, got {devices!r}.")
        return torch.device("cuda", index)
    if acc == "mps":
        if not mps_ok:
            raise RuntimeError("accelerator='mps' was requested but MPS is not available; use accelerator='cpu'.")
        return torch.device("mps")
    return torch.device("cpu")
