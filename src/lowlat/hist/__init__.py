"""Latency measurement: LatencyHistogram, LatencyTracker, timer_overhead_ns, latency_benchmark.

The compiled half is ``_c`` and its pure-Python twin ``_py``; :mod:`lowlat._backend` picks one.
"""

from .._backend import select as _select

_impl, BACKEND = _select("lowlat.hist")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = list(_impl.__all__)
del _select
