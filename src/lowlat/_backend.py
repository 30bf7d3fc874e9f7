"""The one place that knows the backends and picks one.

Every concept of lowlat is a subpackage holding a pair of modules side by side: ``_c`` (compiled,
Cython) and ``_py`` (its pure-Python twin), e.g. ``lowlat/hist/_c.pyx`` and ``lowlat/hist/_py.py``,
plus plain-Python modules both halves share. :func:`select` imports the compiled half unless
``LOWLAT_PURE_PYTHON`` is set or the compiled half is missing, and says which it took.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

#: The backends, fastest first. Tests, the benchmarks and ``lowlat.__init__`` read them from here.
BACKENDS: tuple[str, ...] = ("cython", "python")

#: The concepts whose public names the top-level ``lowlat`` package exports.
TOP_LEVEL_CONCEPTS: tuple[str, ...] = ("lowlat.containers", "lowlat.hist", "lowlat.shm", "lowlat.batching")

_FALSE = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """Return whether environment variable ``name`` is set to something other than 0/false/no/off."""
    return os.environ.get(name, "").strip().lower() not in _FALSE


def module_name(concept: str, backend: str) -> str:
    """Return the module that implements ``concept`` (``"lowlat.itch"``...) in ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return f"{concept}._c" if backend == "cython" else f"{concept}._py"


_namespaces: dict[str, ModuleType] = {}


def _top_level(backend: str) -> ModuleType:
    """One backend's view of ``lowlat``: every public name of TOP_LEVEL_CONCEPTS, from that backend."""
    if backend not in _namespaces:
        module_name(TOP_LEVEL_CONCEPTS[0], backend)  # validates the name
        namespace = ModuleType(f"lowlat[{backend}]", f"Every public name of lowlat from its {backend} backend.")
        names: list[str] = []
        for concept in TOP_LEVEL_CONCEPTS:
            module = load(concept, backend)
            names.extend(module.__all__)
            vars(namespace).update({name: getattr(module, name) for name in module.__all__})
        namespace.__all__ = names  # type: ignore[attr-defined]
        _namespaces[backend] = namespace
    return _namespaces[backend]


def load(concept: str, backend: str) -> ModuleType:
    """Import ``concept``'s module for ``backend``; ``ImportError`` when it is not built.

    ``concept`` ``"lowlat"`` gives every name the top-level package exports, from that backend.
    """
    if concept == "lowlat":
        return _top_level(backend)
    return importlib.import_module(module_name(concept, backend))


#: Why the compiled half of a concept is not live (``lowlat info`` prints it); empty when it is.
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
