"""Argument checks shared by both backends, so the two raise the same errors with the same words."""

from __future__ import annotations

import operator

import numpy as np

MAX_CAPACITY = 1 << 30
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def as_int(value: object, name: str) -> int:
    """Return ``value`` as an int, or raise ``TypeError`` naming the argument (bool is refused)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def as_int64(value: object, name: str) -> int:
    """Return ``value`` as an int that fits a signed 64-bit integer."""
    number = as_int(value, name)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{name} must fit in a signed 64-bit integer, got {number}")
    return number


def ring_capacity(value: object, name: str = "capacity") -> int:
    """Return ``value`` rounded up to a power of two, checking 1 <= value <= 2**30."""
    number = as_int(value, name)
    if not 1 <= number <= MAX_CAPACITY:
        raise ValueError(f"{name} must be between 1 and 2**30, got {number}")
    return 1 << (number - 1).bit_length()


def bounded_count(value: object, name: str, low: int, high: int = MAX_CAPACITY) -> int:
    """Return ``value`` as an int in ``[low, high]``."""
    number = as_int(value, name)
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {number}")
    return number


def optional_limit(value: object, name: str) -> int:
    """Return a non-negative int limit, with ``None`` meaning no limit (``-1``)."""
    if value is None:
        return -1
    number = as_int(value, name)
    if number < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {number}")
    return number


def record_dtype(dtype: object) -> np.dtype:
    """Return ``dtype`` as a numpy dtype of fixed-size records that hold no Python objects."""
    try:
        result = np.dtype(dtype)  # type: ignore[call-overload]
    except Exception as exc:
        raise TypeError(f"dtype must be a numpy dtype or something numpy.dtype() accepts: {exc}") from None
    if result.hasobject:
        raise TypeError(f"dtype must not hold Python objects, got {result}")
    if result.itemsize == 0:
        raise ValueError(f"dtype must have a non-zero size, got {result}")
    return result


def record_array(array: object, dtype: np.dtype, name: str, writable: bool = False) -> np.ndarray:
    """Check that ``array`` is a one-dimensional numpy array of exactly ``dtype``."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype {dtype}, not {type(array).__name__}")
    if array.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got {array.ndim} dimensions")
    if writable and not array.flags.writeable:
        raise ValueError(f"{name} must be writable")
    return array


def callable_or_none(value: object, name: str) -> object:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")
    return value


def histogram_or_none(value: object) -> object:
    if value is not None and not callable(getattr(value, "record", None)):
        raise TypeError(f"histogram must have a record(value_ns) method, not {type(value).__name__}")
    return value
