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


def batch_limit(value: object, name: str) -> int:
    """Return a batch size limit: ``-1`` for None (no limit), else an int >= 0.

    Limits above ``MAX_CAPACITY`` (the most any ring holds) are clamped to it, so a huge count such
    as ``2**63`` means "everything", in both backends.
    """
    if value is None:
        return -1
    number = as_int(value, name)
    if number < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {number}")
    return number if number <= MAX_CAPACITY else MAX_CAPACITY


#: The range of a caller's ``timestamp_ns``: a CLOCK_MONOTONIC reading in ns (about 146 years),
#: so that ``now - stamp`` always fits a signed 64-bit integer.
STAMP_MAX = 1 << 62


def stamp_ns(value: object, name: str) -> int:
    """Return ``value`` as a clock stamp in ``[0, 2**62]`` ns; ``ValueError`` outside, naming it."""
    number = as_int(value, name)
    if not 0 <= number <= STAMP_MAX:
        raise ValueError(f"{name} must be between 0 and 2**62 ns (a now_ns() reading), got {number}")
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
    """Check that ``array`` is a one-dimensional numpy array of exactly ``dtype``; return it as a base ndarray.

    Dtype, dimensions and writability are read through ``numpy.ndarray``'s own descriptors, never
    through attributes a subclass may override, and a subclass comes back as a plain ndarray view
    of the same memory (so no overridden ``__setitem__`` or ``shape`` takes part in a copy).
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype {dtype}, not {type(array).__name__}")
    if type(array) is not np.ndarray:
        array = np.ndarray.view(array, np.ndarray)
    actual = _DTYPE(array)
    if actual != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {actual}")
    ndim = _NDIM(array)
    if ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got {ndim} dimensions")
    if writable and not _FLAGS(array).writeable:
        raise ValueError(f"{name} must be writable")
    return array


_DTYPE = np.ndarray.dtype.__get__
_NDIM = np.ndarray.ndim.__get__
_FLAGS = np.ndarray.flags.__get__


def callable_or_none(value: object, name: str) -> object:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")
    return value


def histogram_or_none(value: object) -> object:
    if value is not None and not callable(getattr(value, "record", None)):
        raise TypeError(f"histogram must have a record(value_ns) method, not {type(value).__name__}")
    return value
