"""lowlat: low-latency building blocks for Python trading systems.

Every concept is a compiled half (Cython over preallocated typed memory) and a pure-Python twin
with the same interface; :mod:`lowlat._backend` takes the compiled one when it imports. Set
``LOWLAT_PURE_PYTHON=1`` in the environment to force the pure backend; ``lowlat.BACKEND`` says
which one is live (``"cython"`` or ``"python"``). The top level exports the containers
(:mod:`lowlat.containers`), the latency histogram (:mod:`lowlat.hist`), the shared-memory
rings (:mod:`lowlat.shm`) and the adaptive batcher (:mod:`lowlat.batching`).
"""

from ._backend import select as _select

_impl, BACKEND = _select("lowlat")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = ["BACKEND", *_impl.__all__]
__version__ = "0.1.0"
del _select
