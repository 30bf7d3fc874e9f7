"""What keeps a pure twin behaving like its compiled half where Python would differ by default."""

from __future__ import annotations

from typing import Any


class Final:
    """Base of a pure class whose compiled twin is a final extension type: refuse subclasses alike."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if Final not in cls.__bases__:
            base = next(b for b in cls.__mro__[1:] if Final in b.__bases__)
            raise TypeError(f"type '{base.__module__}.{base.__qualname__}' is not an acceptable base type")
        super().__init_subclass__(**kwargs)
