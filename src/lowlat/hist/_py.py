"""Latency measurement, pure-Python twin of ``lowlat.hist._c``: HDR histogram, tracker, timer calibration.

This module is the source of truth for the names, signatures, docstrings and errors of
:class:`LatencyHistogram`, :class:`LatencyTracker`, :func:`timer_overhead_ns` and
:func:`latency_benchmark`; the compiled core mirrors it.

The histogram follows HdrHistogram's bucket layout and percentile rules exactly (it is checked
against the ``hdrhistogram`` package), so its answers can be compared with other HdrHistogram
tools, and its ``encode()`` output is HdrHistogram's compressed base64 V2 form.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Literal, TypeVar

import numpy as np

from . import codec as _codec, report as _report
from .._twins import Final as _Final

__all__ = ["LatencyHistogram", "LatencyTracker", "latency_benchmark", "timer_overhead_ns"]

_INT64_MAX = _codec.INT64_MAX

_TIMER_PAIRS = 10001

_F = TypeVar("_F", bound=Callable[..., Any])


_as_int = _codec.as_int
_as_value = _codec.as_value
_as_percentile = _codec.as_percentile


def _is_set(obj: object, slot: str) -> bool:
    """Whether ``obj``'s slot ``slot`` holds a value (False for an object made by ``__new__`` alone)."""
    try:
        object.__getattribute__(obj, slot)
    except AttributeError:
        return False
    return True


class LatencyHistogram(_Final):
    """An HDR histogram of integer nanoseconds: constant memory, fixed relative precision.

    Values in ``[0, highest]`` are counted in HdrHistogram's bucket layout: every value
    is kept to ``significant_figures`` decimal digits -- a bucket is at most 1/1024 of its value
    wide at 3 figures (1/128 at 2, 1/16384 at 4) -- and buckets are one unit (``lowest`` rounded
    down to a power of 2) wide up to at least ``10**significant_figures * lowest``: with the
    defaults every value below 2,048 ns is kept exactly.
    ``percentile()`` follows HdrHistogram's ``getValueAtPercentile``: it returns the highest value
    equivalent to the recorded value at rank ``max(1, int(p / 100 * count + 0.5))`` (the lowest
    equivalent one for ``p == 0``), so its answers equal the ``hdrhistogram`` package's on the same
    records.

    A value above ``highest`` is not lost: it is counted in ``count`` and ``overflow``, enters
    ``min``/``max``/``mean``/``stdev`` exactly, and a percentile whose rank falls among such values
    is reported as ``max``. Overflow values are not part of HdrHistogram's V2 encoding
    (``encode()``), but ``to_bytes()`` keeps them.

    All memory (``nbytes``, one int64 counter per bucket) is allocated at construction: 1 ns to
    1 hour at 3 figures is 33,792 counters, 270,336 bytes. Not thread-safe: use one histogram per
    writer thread (or a lock) and combine them with ``merge()``.
    """

    __slots__ = (
        "_lowest",
        "_highest",
        "_figures",
        "_unit_magnitude",
        "_half_magnitude",
        "_sub_half",
        "_sub_mask",
        "_counts",
        "_total",
        "_min",
        "_max",
        "_overflow",
        "_overflow_sum",
        "_overflow_sumsq",
    )

    def __init__(self, lowest: int = 1, highest: int = 3_600_000_000_000, significant_figures: int = 3) -> None:
        """Create an empty histogram tracking ``lowest`` to ``highest`` ns at ``significant_figures`` digits.

        ``lowest`` >= 1 is the smallest value distinguished from 0 (rounded down to a power of 2);
        ``highest`` must be >= 2 * ``lowest`` and <= 2**62; ``significant_figures`` is 1 to 5.
        Raise ``TypeError`` for a non-integer argument and ``ValueError`` for one out of range.
        """
        lowest, highest, significant_figures, unit_magnitude, half_magnitude, bucket_count = _codec.checked_layout(
            lowest, highest, significant_figures
        )
        self._lowest = lowest
        self._highest = highest
        self._figures = significant_figures
        self._unit_magnitude = unit_magnitude
        self._half_magnitude = half_magnitude
        self._sub_half = 1 << half_magnitude
        self._sub_mask = _codec.sub_bucket_mask(unit_magnitude, half_magnitude)
        self._counts = np.zeros(_codec.counts_length(bucket_count, half_magnitude), dtype=np.int64)
        self._total = 0
        self._min = _INT64_MAX
        self._max = 0
        self._overflow = 0
        self._overflow_sum = 0.0
        self._overflow_sumsq = 0.0

    def __getattr__(self, name: str) -> Any:
        # Reached only when a slot was never set: made by __new__ without __init__. The compiled
        # class says the same (it checks a NULL counter pointer) instead of an AttributeError.
        if name in LatencyHistogram.__slots__:
            raise ValueError("LatencyHistogram is not initialised (__init__ was not called)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ----------------------------------------------------------------- layout helpers
    def _index(self, value: int) -> int:
        return _codec.counts_index(value, self._unit_magnitude, self._half_magnitude)

    def _bucket_bounds(self, index: int) -> tuple[int, int]:
        """Return (lowest equivalent value, width) of counts slot ``index``."""
        return _codec.bucket_bounds(index, self._unit_magnitude, self._half_magnitude)

    def _check_total(self, added: int, name: str) -> None:
        if self._total + added > _INT64_MAX:
            raise ValueError(f"{name} would overflow the histogram's 64-bit total count")

    def _add_overflow(self, value: int, count: int) -> None:
        fv = float(value)
        self._overflow += count
        self._overflow_sum += fv * float(count)
        self._overflow_sumsq += fv * fv * float(count)

    def _add(self, value: int, count: int) -> None:
        """Count ``count`` (>= 1) occurrences of ``value`` (0 <= value < 2**63); totals already checked."""
        if value <= self._highest:
            self._counts[self._index(value)] += count
        else:
            self._add_overflow(value, count)
        self._total += count
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value

    # ----------------------------------------------------------------- recording
    def record(self, value: int, count: int = 1) -> None:
        """Record ``count`` occurrences of ``value`` ns; O(1), the histogram's memory never grows.

        A value above ``highest`` is counted in ``overflow`` (and ``count``, ``max``), never lost.
        ``count == 0`` records nothing. Raise ``TypeError`` if an argument is not an integer,
        ``ValueError`` if ``value`` or ``count`` is negative or >= 2**63, or if the total count
        would pass 2**63 - 1; nothing is recorded then.
        """
        value = _as_value(value, "value")
        count = _as_value(count, "count")
        if count == 0:
            return
        self._check_total(count, "count")
        self._add(value, count)

    def record_many(self, values: Any) -> None:
        """Record every value of an integer array (any shape, read in C order), vectorised.

        ``values`` is a numpy integer array or anything ``numpy.asarray`` turns into one. The whole
        call is validated first: a non-integer dtype raises ``TypeError``; a negative value or one
        >= 2**63 raises ``ValueError``; nothing is recorded then. O(len(values)).
        """
        array = np.asarray(values)
        if array.dtype.kind not in "iu":
            raise TypeError(f"values must be an integer array, not dtype {array.dtype}")
        flat = array.ravel()
        if flat.size == 0:
            return
        if flat.dtype.kind == "i" and int(flat.min()) < 0:
            raise ValueError(f"values must be >= 0, got {int(flat.min())}")
        if flat.dtype.kind == "u" and int(flat.max()) > _INT64_MAX:
            raise ValueError(f"values must be < 2**63, got {int(flat.max())}")
        self._check_total(int(flat.size), "values")
        flat = flat.astype(np.int64, copy=False)
        in_range = flat <= self._highest
        if not bool(in_range.all()):
            for value in flat[~in_range].tolist():  # rare: keep the C backend's summation order
                self._add_overflow(value, 1)
            flat = flat[in_range]
        if flat.size:
            # bit_length via the float exponent, corrected where rounding reached the next power of 2.
            masked = flat | self._sub_mask
            exponent = np.frexp(masked.astype(np.float64))[1].astype(np.int64)
            exponent -= (masked >> (exponent - 1)) == 0
            bucket = exponent - self._unit_magnitude - (self._half_magnitude + 1)
            index = ((bucket + 1) << self._half_magnitude) + (flat >> (bucket + self._unit_magnitude)) - self._sub_half
            self._counts += np.bincount(index, minlength=self._counts.size).astype(np.int64, copy=False)
        self._total += int(array.size)
        low, high = int(array.min()), int(array.max())
        self._min = min(self._min, low)
        self._max = max(self._max, high)

    def record_corrected(self, value: int, expected_interval: int) -> None:
        """Record ``value`` and, as HdrHistogram's ``recordCorrectedValue`` does, the samples it hid.

        Coordinated-omission correction: when ``value`` exceeds ``expected_interval`` (the expected
        time between samples), also record ``value - k * expected_interval`` for every k >= 1 that
        leaves a value > 0 -- ceil(value / expected_interval) values in all. ``expected_interval``
        0 records ``value`` alone. Cost O(number of buckets spanned), not O(values added). Raise
        ``TypeError``/``ValueError`` as ``record()`` does (``expected_interval`` must be >= 0).
        """
        value = _as_value(value, "value")
        interval = _as_value(expected_interval, "expected_interval")
        if interval == 0 or value <= interval:
            self._check_total(1, "value")
            self._add(value, 1)
            return
        n = -(-value // interval)  # ceil: values value, value - i, ..., down to the last one > 0
        self._check_total(n, "value")
        smallest = value - (n - 1) * interval
        current, remaining = smallest, n
        while remaining and current <= self._highest:
            index = self._index(current)
            low, width = self._bucket_bounds(index)
            top = min(low + width - 1, self._highest)
            in_bucket = min((top - current) // interval + 1, remaining)
            self._counts[index] += in_bucket
            current += in_bucket * interval
            remaining -= in_bucket
        if remaining:  # the rest lie above highest: an arithmetic series starting at `current`
            fc, fi, fr = float(current), float(interval), float(remaining)
            pairs = fr * (fr - 1.0) / 2.0
            squares = (fr - 1.0) * fr * (2.0 * fr - 1.0) / 6.0
            self._overflow += remaining
            self._overflow_sum += fr * fc + fi * pairs
            self._overflow_sumsq += fr * fc * fc + 2.0 * fc * fi * pairs + fi * fi * squares
        self._total += n
        self._min = min(self._min, smallest)
        self._max = max(self._max, value)

    # ----------------------------------------------------------------- queries
    def _value_at_count(self, target: int, percentile: float, cumulative: Any) -> int:
        index = int(np.searchsorted(cumulative, target, side="left"))
        if index >= self._counts.size:
            return self._max  # the rank lies among overflow values
        low, width = self._bucket_bounds(index)
        return low + width - 1 if percentile else low

    def _target(self, percentile: float) -> int:
        return min(max(int(percentile * self._total / 100 + 0.5), 1), self._total)

    def percentile(self, p: float) -> int:
        """Return the value at percentile ``p`` (0 to 100) as HdrHistogram's ``getValueAtPercentile`` does.

        That is the highest value equivalent to the recorded value of rank
        ``max(1, int(p / 100 * count + 0.5))`` (the lowest equivalent value for ``p == 0``); ``max``
        when that rank is an overflow value; 0 when the histogram is empty. O(number of buckets).
        Raise ``TypeError`` for a non-number and ``ValueError`` outside [0, 100] or for NaN.
        """
        p = _as_percentile(p)
        if self._total == 0:
            return 0
        return self._value_at_count(self._target(p), p, np.cumsum(self._counts))

    def percentiles(self, ps: Iterable[float]) -> dict[float, int]:
        """Return ``{p: percentile(p)}`` for every ``p`` of ``ps`` (in their order).

        Raise as ``percentile()`` does for any bad ``p`` (before computing anything).
        """
        items = list(ps)
        checked = [_as_percentile(p) for p in items]
        if self._total == 0:
            return {p: 0 for p in items}
        cumulative = np.cumsum(self._counts)
        return {p: self._value_at_count(self._target(c), c, cumulative) for p, c in zip(items, checked)}

    @property
    def count(self) -> int:
        """Number of values recorded, overflow included."""
        return self._total

    @property
    def overflow(self) -> int:
        """Number of values recorded above ``highest`` (kept out of the buckets, never lost)."""
        return self._overflow

    @property
    def min(self) -> int:
        """Smallest value recorded, exactly (0 when empty; a bucket bound after ``decode()``)."""
        return self._min if self._total else 0

    @property
    def max(self) -> int:
        """Largest value recorded, exactly, overflow included (0 when empty; a bucket bound after ``decode()``)."""
        return self._max if self._total else 0

    def _nonzero(self) -> tuple[list[int], list[int]]:
        indices = np.flatnonzero(self._counts)
        return indices.tolist(), self._counts[indices].tolist()

    @property
    def mean(self) -> float:
        """Mean value as HdrHistogram computes it: each value at its bucket's middle (0.0 when empty).

        Overflow values count at their exact values. Within the histogram's precision of the exact
        mean; equal to the ``hdrhistogram`` package's ``get_mean_value()`` without overflow.
        """
        if self._total == 0:
            return 0.0
        total = 0
        for index, count in zip(*self._nonzero()):
            low, width = self._bucket_bounds(index)
            total += count * (low + (width >> 1))
        return (float(total) + self._overflow_sum) / self._total

    @property
    def stdev(self) -> float:
        """Population standard deviation, computed like ``mean`` (HdrHistogram's ``getStdDeviation``)."""
        if self._total == 0:
            return 0.0
        mean = self.mean
        total = 0.0
        for index, count in zip(*self._nonzero()):
            low, width = self._bucket_bounds(index)
            deviation = float(low + (width >> 1)) - mean
            total += deviation * deviation * float(count)
        if self._overflow:
            total += self._overflow_sumsq - 2.0 * mean * self._overflow_sum + float(self._overflow) * mean * mean
        return math.sqrt(max(total, 0.0) / self._total)

    @property
    def lowest(self) -> int:
        """Smallest value distinguished from 0, as given to the constructor."""
        return self._lowest

    @property
    def highest(self) -> int:
        """Highest value counted in the buckets; larger values go to ``overflow``."""
        return self._highest

    @property
    def significant_figures(self) -> int:
        """Decimal digits of precision kept for every value."""
        return self._figures

    @property
    def nbytes(self) -> int:
        """Bytes of counter memory, fixed at construction (8 per bucket)."""
        return int(self._counts.size) * 8

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_codec.histogram_from_bytes, (self.to_bytes(),))

    def __eq__(self, other: object) -> bool:
        """Return whether ``other`` is a histogram of this backend with the same settings, counts and totals."""
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self._state_for_bytes() == other._state_for_bytes() and bool(np.array_equal(self._counts, other._counts))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def buckets(self) -> list[tuple[int, int, int]]:
        """Return the non-empty buckets, lowest first, as ``(lowest value, highest value, count)`` tuples.

        Values above ``highest`` are not in any bucket (see ``overflow``).
        """
        result = []
        for index in np.flatnonzero(self._counts).tolist():
            low, width = self._bucket_bounds(index)
            result.append((low, low + width - 1, int(self._counts[index])))
        return result

    def output_percentile_distribution(self, file: Any = None, ticks_per_half_distance: int = 5, value_scale: float = 1.0) -> None:
        """Write HdrHistogram's percentile distribution (the ``.hgrm`` text its plotting tools read) to ``file``.

        ``file`` is a text stream (default stdout); values are divided by ``value_scale`` (e.g. 1000.0
        for microseconds); ``ticks_per_half_distance`` sets how many rows each halving of the distance
        to 100% gets (HdrHistogram's default 5).
        """
        text = _report.percentile_distribution(self, ticks_per_half_distance, value_scale)
        (sys.stdout if file is None else file).write(text)

    # ----------------------------------------------------------------- hdrhistogram's names
    def record_value(self, value: int, count: int = 1) -> bool:
        """``hdrhistogram``'s name for ``record``; returns True (a value is never refused, see ``overflow``)."""
        self.record(value, count)
        return True

    def record_corrected_value(self, value: int, expected_interval: int) -> bool:
        """``hdrhistogram``'s name for ``record_corrected``; returns True."""
        self.record_corrected(value, expected_interval)
        return True

    def get_value_at_percentile(self, percentile: float) -> int:
        """``hdrhistogram``'s name for ``percentile``."""
        return self.percentile(percentile)

    def get_percentile_to_value_dict(self, percentile_list: Iterable[float]) -> dict[float, int]:
        """``hdrhistogram``'s name for ``percentiles``."""
        return self.percentiles(percentile_list)

    def get_total_count(self) -> int:
        """``hdrhistogram``'s name for ``count``."""
        return self.count

    def get_min_value(self) -> int:
        """``hdrhistogram``'s name for ``min``."""
        return self.min

    def get_max_value(self) -> int:
        """``hdrhistogram``'s name for ``max``."""
        return self.max

    def get_mean_value(self) -> float:
        """``hdrhistogram``'s name for ``mean``."""
        return self.mean

    def get_stddev(self) -> float:
        """``hdrhistogram``'s name for ``stdev``."""
        return self.stdev

    def add(self, other: LatencyHistogram) -> None:
        """``hdrhistogram``'s name for ``merge``."""
        self.merge(other)

    def __repr__(self) -> str:
        if not _is_set(self, "_counts"):
            return "<uninitialised LatencyHistogram>"
        return (
            f"LatencyHistogram(lowest={self._lowest}, highest={self._highest}, "
            f"significant_figures={self._figures}) with {self._total} values"
        )

    # ----------------------------------------------------------------- combining
    def _same_layout(self, other: LatencyHistogram) -> None:
        if not isinstance(other, LatencyHistogram):
            raise TypeError(f"other must be a LatencyHistogram, not {type(other).__name__}")
        mine = (self._lowest, self._highest, self._figures)
        theirs = (other._lowest, other._highest, other._figures)
        if mine != theirs:
            raise ValueError(
                f"other has a different layout (lowest, highest, significant_figures) {theirs}, expected {mine}"
            )

    def merge(self, other: LatencyHistogram) -> None:
        """Add every value of ``other`` to this histogram, as if each had been recorded here.

        ``other`` must have the same ``lowest``, ``highest`` and ``significant_figures``
        (``ValueError`` otherwise; ``TypeError`` if it is not a ``LatencyHistogram`` of this
        backend). ``other`` is unchanged. O(number of buckets).
        """
        self._same_layout(other)
        if other._total == 0:
            return
        self._check_total(other._total, "other")
        self._counts += other._counts
        self._total += other._total
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        self._overflow += other._overflow
        self._overflow_sum += other._overflow_sum
        self._overflow_sumsq += other._overflow_sumsq

    def reset(self) -> None:
        """Forget every recorded value; the memory stays allocated. O(number of buckets)."""
        self._counts.fill(0)
        self._total = 0
        self._min = _INT64_MAX
        self._max = 0
        self._overflow = 0
        self._overflow_sum = 0.0
        self._overflow_sumsq = 0.0

    def copy(self) -> LatencyHistogram:
        """Return an independent histogram with the same layout and contents."""
        clone = LatencyHistogram(self._lowest, self._highest, self._figures)
        clone.merge(self)
        return clone

    # ----------------------------------------------------------------- serialisation
    def _v2_payload(self) -> bytes:
        """Return the zlib-compressed V2 payload (header + ZigZag LEB128 counts) of the in-range counts."""
        nonzero = np.flatnonzero(self._counts)
        limit = int(nonzero[-1]) + 1 if nonzero.size else 0
        body = _codec.zigzag_counts(self._counts[:limit].tolist())
        return _codec.v2_payload(body, self._figures, self._lowest, self._highest)

    def encode(self) -> str:
        """Return HdrHistogram's compressed base64 V2 form of this histogram (an ASCII ``str``).

        Readable by the ``hdrhistogram`` package (``HdrHistogram.decode``), HdrHistogram's Java and
        C libraries and their log tools. The V2 form carries the buckets only: overflow values
        and the exact ``min``/``max`` are not in it (use ``to_bytes()`` to keep them).
        """
        return _codec.v2_text(self._v2_payload())

    @classmethod
    def decode(cls, text: str | bytes) -> LatencyHistogram:
        """Return a new histogram from HdrHistogram's compressed base64 V2 form (``str`` or ``bytes``).

        Its layout is the one in the encoding. As V2 carries no exact extremes, ``min`` and ``max``
        become the bounds of the lowest and highest non-empty buckets, as in HdrHistogram. Raise
        ``TypeError`` if ``text`` is not ``str``/``bytes`` and ``ValueError`` for anything that is
        not a valid V2 histogram (bad base64, cookie, length, zlib stream or counts).
        """
        histogram, _ = _from_v2_payload(_codec.v2_payload_of_text(text), "text")
        histogram._set_extremes_from_buckets()
        return histogram

    def _set_extremes_from_buckets(self) -> None:
        nonzero = np.flatnonzero(self._counts)
        if nonzero.size:
            self._min = self._bucket_bounds(int(nonzero[0]))[0]
            low, width = self._bucket_bounds(int(nonzero[-1]))
            self._max = low + width - 1

    def to_bytes(self) -> bytes:
        """Return a compact, versioned binary form of this histogram, overflow and exact extremes included.

        ``LatencyHistogram.from_bytes`` of either backend reads it. Layout: a little-endian header
        (``b"LLHG"``, version 1, figures, lowest, highest, count, min, max, overflow, overflow sums)
        followed by HdrHistogram's zlib-compressed V2 payload of the buckets.
        """
        return _codec.pack_to_bytes(self, self._v2_payload())

    def _state_for_bytes(self) -> tuple[Any, ...]:
        return (
            self._figures, self._lowest, self._highest, self._total, self._min, self._max,
            self._overflow, self._overflow_sum, self._overflow_sumsq,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> LatencyHistogram:
        """Return the histogram that ``to_bytes()`` encoded (by either backend).

        Raise ``TypeError`` if ``data`` is not bytes-like and ``ValueError`` if it is not a valid
        ``to_bytes()`` output (wrong magic or version, truncated, corrupt or inconsistent).
        """
        header, payload = _codec.unpack_to_bytes(data)
        histogram, in_range = _from_v2_payload(payload, "data")
        nonzero = np.flatnonzero(histogram._counts)
        first = histogram._bucket_bounds(int(nonzero[0])) if nonzero.size else None
        last = histogram._bucket_bounds(int(nonzero[-1])) if nonzero.size else None
        _codec.check_restored(histogram, header, in_range, first, last)
        total, low, high, overflow, ovf_sum, ovf_sumsq = header[3:]
        histogram._total = total
        histogram._min = low if total else _INT64_MAX
        histogram._max = high if total else 0
        histogram._overflow = overflow
        histogram._overflow_sum = ovf_sum
        histogram._overflow_sumsq = ovf_sumsq
        return histogram


def _from_v2_payload(compressed: bytes, name: str) -> tuple[LatencyHistogram, int]:
    """Decompress and decode a V2 payload into a new histogram; return it and its in-range count."""
    histogram, body = _codec.open_v2_payload(compressed, name, LatencyHistogram)
    total = _codec.read_counts(body, histogram._counts, name)
    histogram._total = total
    return histogram, total


# --------------------------------------------------------------------- timing
_timer_overhead: int | None = None


def timer_overhead_ns() -> int:
    """Return the cost in ns of one timestamp pair, as ``LatencyTracker.measure()`` takes them.

    Calibrated once per process (the first call; later calls return the cached figure): the median
    of 10,001 back-to-back pairs of the backend's clock reads. ``measure()`` subtracts nothing;
    compare small latencies with this figure.
    """
    global _timer_overhead
    if _timer_overhead is None:
        clock = time.perf_counter_ns
        samples = []
        for _ in range(_TIMER_PAIRS):
            start = clock()
            samples.append(clock() - start)
        _timer_overhead = int(statistics.median_low(samples))
    return _timer_overhead


class _Measurement:
    """Context manager returned by ``LatencyTracker.measure()``: times one ``with`` block."""

    __slots__ = ("_tracker", "_start")

    def __init__(self, tracker: LatencyTracker) -> None:
        self._tracker = tracker
        self._start = 0

    def __enter__(self) -> None:
        self._start = time.perf_counter_ns()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        end = time.perf_counter_ns()
        tracker = getattr(self, "_tracker", None)
        if tracker is None:  # made by __new__ rather than measure()
            raise ValueError("this measurement was not made by LatencyTracker.measure()")
        if exc_type is None:
            tracker._record_sample(end - self._start)
        return False


class LatencyTracker(_Final):
    """Time operations into a :class:`LatencyHistogram`: constant memory however many samples arrive.

    Compatible with the seed's tracker: ``measure()``, ``record()``, ``get_statistics()`` (the same
    keys, plus ``p9999_ns`` and ``timer_overhead_ns``) and ``print_report()``. The first
    ``warmup_iterations`` samples are dropped (JIT-less Python still warms caches and allocators).
    ``histogram`` lets callers choose the layout or share one histogram; by default a new
    ``LatencyHistogram()`` (1 ns to 1 hour, 3 figures). Not thread-safe: one tracker per thread.
    """

    __slots__ = ("_name", "_warmup", "_histogram", "_skipped")

    def __init__(self, name: str, warmup_iterations: int = 100, *, histogram: LatencyHistogram | None = None) -> None:
        """Create a tracker called ``name`` that skips its first ``warmup_iterations`` samples.

        Raise ``TypeError`` if ``name`` is not a ``str``, ``warmup_iterations`` not an integer or
        ``histogram`` not a ``LatencyHistogram`` of this backend, ``ValueError`` if
        ``warmup_iterations`` is negative.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        warmup = _as_int(warmup_iterations, "warmup_iterations")
        if warmup < 0:
            raise ValueError(f"warmup_iterations must be >= 0, got {warmup}")
        if histogram is None:
            histogram = LatencyHistogram()
        elif not isinstance(histogram, LatencyHistogram):
            raise TypeError(f"histogram must be a LatencyHistogram or None, not {type(histogram).__name__}")
        self._name = name
        self._warmup = warmup
        self._histogram = histogram
        self._skipped = 0

    def __getattr__(self, name: str) -> Any:
        # Reached only when a slot was never set: made by __new__ without __init__. The compiled
        # class says the same (it checks a NULL counter pointer) instead of an AttributeError.
        if name in LatencyTracker.__slots__:
            raise ValueError("LatencyTracker is not initialised (__init__ was not called)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def name(self) -> str:
        """The name shown in reports."""
        return self._name

    @property
    def warmup_iterations(self) -> int:
        """How many of the first samples are dropped."""
        return self._warmup

    @property
    def histogram(self) -> LatencyHistogram:
        """The histogram the samples go to (after warm-up)."""
        return self._histogram

    @property
    def count(self) -> int:
        """Number of samples recorded after warm-up."""
        return self._histogram.count

    def _record_sample(self, latency_ns: int) -> None:
        if self._skipped < self._warmup:
            self._skipped += 1
            return
        self._histogram.record(latency_ns)

    def measure(self) -> _Measurement:
        """Return a context manager that records the wall time of its ``with`` block, in ns.

        Two clock reads (``now_ns()``'s clock) around the block; nothing is subtracted (see
        ``timer_overhead_ns()``). A block that raises is not recorded. Each call returns a new
        object, so measurements may nest.
        """
        return _Measurement(self)

    def record(self, latency_ns: int) -> None:
        """Record one latency in ns (dropped while warming up). Raise as ``LatencyHistogram.record``."""
        latency_ns = _as_value(latency_ns, "latency_ns")
        self._record_sample(latency_ns)

    def reset(self) -> None:
        """Forget all samples and start warming up again."""
        self._histogram.reset()
        self._skipped = 0

    def get_statistics(self) -> dict[str, Any]:
        """Return the seed's statistics dict, computed from the histogram.

        Keys: ``name``, ``count``, ``mean_ns``, ``median_ns``, ``std_ns``, ``min_ns``, ``max_ns``,
        ``p50_ns``, ``p90_ns``, ``p99_ns``, ``p999_ns``, ``p9999_ns`` and ``timer_overhead_ns``.
        Percentiles are HdrHistogram's (3 significant figures by default) capped at the exact
        ``max_ns`` (a bucket's highest value can pass it by up to the bucket width); ``min_ns`` and
        ``max_ns`` are exact; ``mean_ns``/``std_ns`` are floats. With no samples every figure is
        ``None``.
        """
        return _report.statistics(self._name, self._histogram, timer_overhead_ns())

    def print_report(self, file: Any = None) -> None:
        """Print the seed's report table (one line per figure, in ns) to ``file`` (default stdout)."""
        print(_report.report_text(self.get_statistics(), self._warmup), file=sys.stdout if file is None else file)

    def __repr__(self) -> str:
        if not _is_set(self, "_histogram"):
            return "<uninitialised LatencyTracker>"
        return f"LatencyTracker({self._name!r}, warmup_iterations={self._warmup}) with {self.count} samples"


def latency_benchmark(warmup: int = 100, iterations: int = 10000) -> Callable[[_F], _F]:
    """Return a decorator that adds a latency benchmark to a function, the seed's ``latency_benchmark``.

    The decorated function runs normally when called. Its ``benchmark(*args, **kwargs)`` attribute
    calls it ``warmup + iterations`` times with those arguments, each call timed by a fresh
    ``LatencyTracker(func.__qualname__, warmup)``, and returns ``get_statistics()``
    (``iterations`` samples); the same dict is kept as ``last_statistics`` (``None`` before the
    first run). Raise ``TypeError``/``ValueError`` for a non-integer or negative ``warmup`` or an
    ``iterations`` below 1.
    """
    return _report.benchmark_decorator(LatencyTracker, warmup, iterations)  # type: ignore[return-value]
