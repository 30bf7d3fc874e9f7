"""The one place that knows the backends and picks one.

Every concept of lowlat is a pair of modules side by side: ``_c`` (compiled, Cython) and ``_py``
(its pure-Python twin), e.g. ``lowlat/itch/_c.pyx`` and ``lowlat/itch/_py.py``. The core
containers are the pair ``lowlat._core`` / ``lowlat._pure``. :func:`select` imports the compiled
half unless ``LOWLAT_PURE_PYTHON`` is set or the compiled half is missing, and says which it took.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

#: The backends, fastest first. Tests, the benchmarks and ``lowlat.__init__`` read them from here.
BACKENDS: tuple[str, ...] = ("cython", "python")

_FALSE = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """Return whether environment variable ``name`` is set to something other than 0/false/no/off."""
    return os.environ.get(name, "").strip().lower() not in _FALSE


def module_name(concept: str, backend: str) -> str:
    """Return the module that implements ``concept`` (``"lowlat.itch"``...) in ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if concept == "lowlat":
        return "lowlat._core" if backend == "cython" else "lowlat._pure"
    return f"{concept}._c" if backend == "cython" else f"{concept}._py"


def load(concept: str, backend: str) -> ModuleType:
    """Import ``concept``'s module for ``backend``; ``ImportError`` when it is not built."""
    return importlib.import_module(module_name(concept, backend))


#: Why the compiled backend is not live, or None when it is (``lowlat info`` prints it).
WHY_NOT_COMPILED: dict[str, str] = {}


def select(concept: str) -> tuple[ModuleType, str]:
    """Return ``(module, backend)`` for ``concept``: compiled when importable and not forced off."""
    if env_flag("LOWLAT_PURE_PYTHON"):
        WHY_NOT_COMPILED[concept] = "LOWLAT_PURE_PYTHON is set"
        return load(concept, "python"), "python"
    try:
        return load(concept, "cython"), "cython"
    except ImportError as exc:
        WHY_NOT_COMPILED[concept] = f"{type(exc).__name__}: {exc}"
        return load(concept, "python"), "python"
