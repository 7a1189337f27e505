"""The registry of methods: the one place that lists them (``tl.cluster``, ``tl.show_methods`` and the CLI read it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._base import FusionModel

_REGISTRY: dict[str, type[FusionModel]] = {}


def register(cls: type[FusionModel]) -> type[FusionModel]:
    """Class decorator: make a model available as ``scfuse.tl.cluster(method=cls.method_name)``.

    Examples
    --------
    A new method is a model class with a unique ``method_name``, decorated with ``register``::

        @scfuse.models.register
        class MyMethod(scfuse.models.TwoStageModel):
            method_name = "mymethod"
            ...
    """
    name = cls.method_name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{cls.__name__}.method_name must be a lower-case identifier, got {name!r}.")
    other = _REGISTRY.get(name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"Method {name!r} is already registered by {other.__qualname__}.")
    _REGISTRY[name] = cls
    return cls


def unregister(method: str) -> None:
    """Remove ``method`` from the registry (a method registered for a test or a session)."""
    _REGISTRY.pop(method, None)


def get_model_class(method: str) -> type[FusionModel]:
    """The model class registered under ``method`` (a name of :func:`scfuse.tl.show_methods`).

    Examples
    --------
    >>> import scfuse
    >>> scfuse.models.get_model_class("attentionae").__name__
    'AttentionAE'
    >>> scfuse.models.get_model_class("attentionae").graph_method  # weights for scfuse.pp.build_graph(method=...)
    'gauss'
    """
    if method not in _REGISTRY:
        raise ValueError(f"Unknown method {method!r}. Known methods: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[method]


def registered_methods() -> dict[str, type[FusionModel]]:
    """All registered methods: ``{method name: model class}``.

    Examples
    --------
    >>> import scfuse
    >>> "attentionae" in scfuse.models.registered_methods()
    True
    """
    return dict(_REGISTRY)
