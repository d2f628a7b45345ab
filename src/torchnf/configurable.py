"""Classes rebuilt from their constructor arguments: the mechanism behind safe saving and loading.

A subclass of :class:`Configurable` records the arguments it was constructed with in :attr:`~Configurable.config`
and is registered by class name in the registry of its family (the first class in its ancestry that declares
``registry``; private classes, named with a leading underscore, are not registered), so a saved model is rebuilt
by looking a name up in a fixed registry and calling it with plain values: nothing from a file is ever executed.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

__all__ = ["Configurable"]


class Configurable:
    """A mixin recording constructor arguments; families declare ``registry: ClassVar[dict] = {}``."""

    registry: ClassVar[dict[str, type]]
    _config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "registry" not in cls.__dict__ and not cls.__name__.startswith("_"):
            cls.registry[cls.__name__] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
        except TypeError:  # copy.deepcopy and pickle create the object bare and restore its __dict__, _config too;
            return self  # a call with wrong arguments fails in __init__ with Python's own message
        bound.apply_defaults()
        object.__setattr__(self, "_config", {k: v for k, v in bound.arguments.items() if k != "self"})
        return self

    @property
    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this object: ``type(obj)(**obj.config)``."""
        return dict(self._config)
