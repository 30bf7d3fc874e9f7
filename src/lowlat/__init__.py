"""lowlat: low-latency building blocks for Python trading systems.

Every public name comes from one of two backends with the same interface: the compiled
``lowlat._core`` (Cython over preallocated typed memory) when it is importable, else its
pure-Python twin ``lowlat._pure``. Set ``LOWLAT_PURE_PYTHON=1`` in the environment to force
the pure backend; ``lowlat.BACKEND`` says which one is live (``"cython"`` or ``"python"``).
The choice is made in one place, :mod:`lowlat._backend`.
"""

from ._backend import select as _select

_impl, BACKEND = _select("lowlat")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = ["BACKEND", *_impl.__all__]
__version__ = "0.1.0"
del _select
