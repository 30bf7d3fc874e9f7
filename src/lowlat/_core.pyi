"""Type stubs for lowlat's public API (``lowlat._core``; ``lowlat._pure`` has the same interface)."""

from __future__ import annotations

from lowlat._errors import PoolExhausted as PoolExhausted

def now_ns() -> int: ...
