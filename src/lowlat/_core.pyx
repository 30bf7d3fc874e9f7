# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
"""Compiled core of lowlat: the twin of :mod:`lowlat._pure` (same names, signatures, errors)."""

from libc.stdint cimport int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from lowlat._errors import PoolExhausted

__all__ = ["PoolExhausted", "now_ns"]


cdef inline int64_t _now() noexcept nogil:
    # CLOCK_MONOTONIC is the clock behind time.perf_counter_ns() on Linux, so stamps mix.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def now_ns():
    """Return the current time in nanoseconds on the clock of ``time.perf_counter_ns()``."""
    return _now()

include "_shm.pxi"
