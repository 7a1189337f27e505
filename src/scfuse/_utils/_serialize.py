"""Plain-data encoding of nested Python values as JSON plus NumPy arrays: a saved model never holds a pickle.

:func:`encode` turns ``None``, ``bool``, ``int``, ``float`` (NaN and infinities included), ``str``, lists,
tuples, dicts, NumPy arrays and NumPy scalars into a JSON-writable value and a dict of arrays for
:func:`numpy.savez` (read back with ``allow_pickle=False``); :func:`decode` restores the value exactly: tuples stay
tuples, NumPy scalars keep their dtype, arrays their dtype and shape. Anything else (object arrays, arbitrary
objects) raises :class:`TypeError` naming where it sits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_TAG = "__scfuse__"  # marks a JSON object that stands for something JSON has no literal for


def encode(value: Any, arrays: dict[str, np.ndarray], path: str = "") -> Any:
    """JSON-writable form of ``value``; its arrays and NumPy scalars are added to ``arrays``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"{path or 'value'}: object arrays cannot be saved without pickle.")
        key = f"a{len(arrays)}"
        arrays[key] = arr
        return {_TAG: "scalar" if isinstance(value, np.generic) else "array", "key": key}
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {_TAG: "float", "value": repr(float(value))}
    if isinstance(value, list | tuple):
        items = [encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else {_TAG: "tuple", "items": items}
    if isinstance(value, dict):
        if all(isinstance(k, str) and k != _TAG for k in value):
            return {k: encode(v, arrays, f"{path}[{k!r}]") for k, v in value.items()}
        return {
            _TAG: "dict",
            "items": [[encode(k, arrays, path), encode(v, arrays, f"{path}[{k!r}]")] for k, v in value.items()],
        }
    raise TypeError(f"{path or 'value'}: a {type(value).__name__} cannot be saved as plain data.")


def decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: decode(v, arrays) for k, v in value.items()}
    if tag == "array":
        return arrays[value["key"]]
    if tag == "scalar":
        return arrays[value["key"]][()]
    if tag == "float":
        return float(value["value"])
    if tag == "tuple":
        return tuple(decode(v, arrays) for v in value["items"])
    if tag == "dict":
        return {decode(k, arrays): decode(v, arrays) for k, v in value["items"]}
    raise ValueError(f"Unknown entry {tag!r} in saved data.")
