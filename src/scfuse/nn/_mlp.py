from __future__ import annotations

from torch import nn


def dense_block(
    in_features: int,
    out_features: int,
    *,
    activation: type[nn.Module] | None = nn.ReLU,
    batch_norm: str | None = "after",
    dropout: float = 0.0,
    bn_kwargs: dict | None = None,
) -> nn.Sequential:
    """Linear layer with optional activation, batch norm (``"before"``/``"after"`` the activation) and dropout."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    bn = nn.BatchNorm1d(out_features, **(bn_kwargs or {})) if batch_norm else None
    if bn is not None and batch_norm == "before":
        layers.append(bn)
    if activation is not None:
        layers.append(activation())
    if bn is not None and batch_norm == "after":
        layers.append(bn)
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
