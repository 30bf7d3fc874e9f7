"""How a container waits when asked to (``timeout=``): shared by both backends.

A blocking call first yields the GIL a few dozen times (the other thread usually supplies the item
within microseconds), then sleeps with an exponential backoff from 1 us up to 1 ms, so a long wait
costs almost no CPU and a short one almost no latency. ``None`` means do not wait at all.
"""

from __future__ import annotations

import math
import time

_SPINS = 64  # sched_yield-like passes (time.sleep(0) releases the GIL) before the first real sleep
_FIRST_SLEEP = 1e-6
_LONGEST_SLEEP = 1e-3


def deadline(timeout: object, name: str = "timeout") -> int:
    """Return the ``time.perf_counter_ns()`` at which a wait of ``timeout`` seconds ends.

    ``timeout`` is an int or float >= 0 (``math.inf`` waits for ever); anything else raises
    ``TypeError`` (bool, str...) or ``ValueError`` (negative, NaN), naming the argument.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {timeout}")
    if math.isinf(timeout) or timeout > 1e9:
        return 1 << 62
    return time.perf_counter_ns() + int(timeout * 1e9)


def pause(until_ns: int, attempt: int) -> bool:
    """Wait a little (attempt number ``attempt`` of a backoff); return False once ``until_ns`` passed."""
    if time.perf_counter_ns() >= until_ns:
        return False
    if attempt < _SPINS:
        time.sleep(0)
    else:
        time.sleep(min(_FIRST_SLEEP * (1 << min(attempt - _SPINS, 20)), _LONGEST_SLEEP))
    return True
