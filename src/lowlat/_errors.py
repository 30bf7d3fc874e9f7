"""Exceptions shared by both backends, so ``except lowlat.PoolExhausted`` works whichever is live."""

__all__ = ["PoolExhausted"]


class PoolExhausted(RuntimeError):
    """Raised by a pool that has no free object or slot left and may not grow."""
