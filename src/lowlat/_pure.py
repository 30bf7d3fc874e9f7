"""Pure-Python twin of :mod:`lowlat._core`: the same names, signatures, errors and docstrings.

This module is the source of truth for the public interface; the compiled core mirrors it.
"""

from __future__ import annotations

import time as _time

from ._errors import PoolExhausted

__all__ = ["PoolExhausted", "now_ns"]


def now_ns() -> int:
    """Return the current time in nanoseconds on the clock of ``time.perf_counter_ns()``."""
    return _time.perf_counter_ns()

from ._pure_shm import *  # noqa: E402,F401,F403
from ._pure_shm import __all__ as _shm_all  # noqa: E402

__all__ += _shm_all
