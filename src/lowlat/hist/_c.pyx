# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Latency measurement, compiled: HDR histogram, tracker, timer calibration.

The twin of :mod:`lowlat.hist._py` (the source of truth for names, signatures, docstrings and
errors).
"""

cimport cython
from lowlat._clock cimport monotonic_ns as _now
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.stdlib cimport malloc, calloc, free, qsort
from libc.string cimport memcmp, memset
from libc.math cimport sqrt
from cpython.long cimport PyLong_CheckExact, PyLong_AsLongLongAndOverflow
from cpython.float cimport PyFloat_CheckExact, PyFloat_AS_DOUBLE
from cpython.bytes cimport PyBytes_FromStringAndSize

import sys as _hist_sys

import numpy as _hist_np

from lowlat.hist import codec as _codec, report as _report

__all__ = ["LatencyHistogram", "LatencyTracker", "latency_benchmark", "timer_overhead_ns"]

cdef extern from *:
    int _hist_clzll "__builtin_clzll"(unsigned long long) nogil
    # Exact sums of count * value (each < 2**63, total count < 2**63) fit in 127 bits.
    ctypedef long long _hist_int128 "__int128"

cdef int64_t _HIST_INT64_MAX = 0x7FFFFFFFFFFFFFFF
cdef int _HIST_TIMER_PAIRS = 10001
cdef object _HIST_ONE = 1  # CPython's cached small int: `count is _HIST_ONE` is the default count

cdef inline int64_t _hist_sum8(const int64_t* c) noexcept nogil:
    return ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7]))


_hist_as_int = _codec.as_int  # the slow path of every integer argument: one wording for both backends


cdef inline int64_t _hist_value(object obj, str name) except? -1:
    # Fast path for an exact int; anything else (bool: TypeError) goes through __index__ (numpy
    # integers) or TypeError.
    cdef int overflow = 0
    cdef long long value
    if not PyLong_CheckExact(obj):
        obj = _hist_as_int(obj, name)
    value = PyLong_AsLongLongAndOverflow(obj, &overflow)
    if overflow < 0 or (overflow == 0 and value < 0):
        raise ValueError(f"{name} must be >= 0, got {int(obj)}")
    if overflow > 0:
        raise ValueError(f"{name} must be < 2**63, got {int(obj)}")
    return value


cdef inline double _hist_percentile(object obj) except? -1.0:
    cdef double p
    if PyFloat_CheckExact(obj):
        p = PyFloat_AS_DOUBLE(obj)
    else:
        p = _codec.as_percentile(obj)
    if not (0.0 <= p <= 100.0):  # also rejects NaN
        raise ValueError(f"p must be a percentile in [0, 100], got {obj!r}")
    return p


@cython.final
cdef class LatencyHistogram:
    """LatencyHistogram(lowest=1, highest=3600000000000, significant_figures=3)
--

An HDR histogram of integer nanoseconds: constant memory, fixed relative precision.

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

    cdef int64_t* _counts
    cdef Py_ssize_t _counts_len
    cdef int64_t _lowest, _highest, _total, _min, _max, _overflow, _sub_mask, _sub_half
    cdef int _figures, _unit_magnitude, _half_magnitude
    cdef double _overflow_sum, _overflow_sumsq

    def __cinit__(self):
        self._counts = NULL
        self._counts_len = 0

    def __dealloc__(self):
        free(self._counts)

    def __init__(self, lowest=1, highest=3_600_000_000_000, significant_figures=3):
        """Create an empty histogram tracking ``lowest`` to ``highest`` ns at ``significant_figures`` digits.

        ``lowest`` >= 1 is the smallest value distinguished from 0 (rounded down to a power of 2);
        ``highest`` must be >= 2 * ``lowest`` and <= 2**62; ``significant_figures`` is 1 to 5.
        Raise ``TypeError`` for a non-integer argument and ``ValueError`` for one out of range.
        """
        lowest, highest, significant_figures, unit_magnitude, half_magnitude, bucket_count = _codec.checked_layout(
            lowest, highest, significant_figures
        )
        cdef Py_ssize_t counts_len = _codec.counts_length(bucket_count, half_magnitude)
        cdef int64_t* counts = <int64_t*>calloc(counts_len, sizeof(int64_t))
        if counts == NULL:
            raise MemoryError(f"cannot allocate {counts_len * 8} bytes of histogram counters")
        free(self._counts)  # __init__ called again on a live object
        self._counts = counts
        self._counts_len = counts_len
        self._lowest = lowest
        self._highest = highest
        self._figures = significant_figures
        self._unit_magnitude = unit_magnitude
        self._half_magnitude = half_magnitude
        self._sub_half = (<int64_t>1) << self._half_magnitude
        self._sub_mask = _codec.sub_bucket_mask(unit_magnitude, half_magnitude)
        self._clear()

    cdef inline void _clear(self) noexcept:
        if self._counts != NULL:
            memset(self._counts, 0, self._counts_len * sizeof(int64_t))
        self._total = 0
        self._min = _HIST_INT64_MAX
        self._max = 0
        self._overflow = 0
        self._overflow_sum = 0.0
        self._overflow_sumsq = 0.0

    cdef inline int _ready(self) except -1:
        if self._counts == NULL:
            raise ValueError("LatencyHistogram is not initialised (__init__ was not called)")
        return 0

    # ----------------------------------------------------------------- layout helpers
    cdef inline Py_ssize_t _index(self, int64_t value) noexcept nogil:
        # Caller guarantees 0 <= value <= highest, so the index is inside the counts array.
        cdef int bucket = (64 - _hist_clzll(<uint64_t>(value | self._sub_mask))) - self._unit_magnitude \
            - (self._half_magnitude + 1)
        return ((<Py_ssize_t>(bucket + 1)) << self._half_magnitude) \
            + <Py_ssize_t>(value >> (bucket + self._unit_magnitude)) - <Py_ssize_t>self._sub_half

    cdef inline int _shift(self, Py_ssize_t index) noexcept nogil:
        cdef Py_ssize_t bucket = (index >> self._half_magnitude) - 1
        if bucket < 0:
            bucket = 0
        return <int>bucket + self._unit_magnitude

    cdef inline int64_t _low(self, Py_ssize_t index) noexcept nogil:
        cdef Py_ssize_t bucket = (index >> self._half_magnitude) - 1
        cdef int64_t sub = (index & (self._sub_half - 1)) + self._sub_half
        if bucket < 0:
            sub -= self._sub_half
            bucket = 0
        return sub << (bucket + self._unit_magnitude)

    cdef inline int _check_total(self, int64_t added, str name) except -1:
        if added > _HIST_INT64_MAX - self._total:
            raise ValueError(f"{name} would overflow the histogram's 64-bit total count")
        return 0

    cdef inline void _add_overflow(self, int64_t value, int64_t count) noexcept nogil:
        cdef double fv = <double>value
        self._overflow += count
        self._overflow_sum += fv * <double>count
        self._overflow_sumsq += fv * fv * <double>count

    cdef inline void _add(self, int64_t value, int64_t count) noexcept nogil:
        # count >= 1, 0 <= value < 2**63, total already checked.
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
    def record(self, value, count=1):
        """Record ``count`` occurrences of ``value`` ns; O(1), the histogram's memory never grows.

        A value above ``highest`` is counted in ``overflow`` (and ``count``, ``max``), never lost.
        ``count == 0`` records nothing. Raise ``TypeError`` if an argument is not an integer,
        ``ValueError`` if ``value`` or ``count`` is negative or >= 2**63, or if the total count
        would pass 2**63 - 1; nothing is recorded then.
        """
        cdef int64_t v = _hist_value(value, "value")
        cdef int64_t c = 1 if count is _HIST_ONE else _hist_value(count, "count")  # skip converting the default
        self._ready()
        if c == 0:
            return
        self._check_total(c, "count")
        self._add(v, c)

    def record_many(self, values):
        """Record every value of an integer array (any shape, read in C order), vectorised.

        ``values`` is a numpy integer array or anything ``numpy.asarray`` turns into one. The whole
        call is validated first: a non-integer dtype raises ``TypeError``; a negative value or one
        >= 2**63 raises ``ValueError``; nothing is recorded then. O(len(values)).
        """
        self._ready()
        array = _hist_np.asarray(values)
        if array.dtype.kind not in "iu":
            raise TypeError(f"values must be an integer array, not dtype {array.dtype}")
        flat = array.ravel()
        if flat.size == 0:
            return
        if flat.dtype.kind == "u" and flat.dtype.itemsize == 8 and int(flat.max()) > _HIST_INT64_MAX:
            raise ValueError(f"values must be < 2**63, got {int(flat.max())}")
        cdef const int64_t[::1] view = _hist_np.ascontiguousarray(flat, dtype=_hist_np.int64)
        cdef Py_ssize_t n = view.shape[0], i
        cdef const int64_t* data = &view[0]
        cdef int64_t low = data[0], high = data[0], v
        for i in range(1, n):  # pass 1: validate before touching anything
            v = data[i]
            low = v if v < low else low
            high = v if v > high else high
        if low < 0:
            raise ValueError(f"values must be >= 0, got {low}")
        self._check_total(n, "values")
        cdef int64_t* counts = self._counts
        cdef int64_t highest = self._highest, mask = self._sub_mask, half = self._sub_half
        cdef int unit = self._unit_magnitude, half_magnitude = self._half_magnitude
        cdef int top = unit + half_magnitude + 1, bucket
        for i in range(n):  # pass 2: count; overflow is the rare branch
            v = data[i]
            if v <= highest:
                bucket = (64 - _hist_clzll(<uint64_t>(v | mask))) - top
                counts[((<Py_ssize_t>(bucket + 1)) << half_magnitude) + <Py_ssize_t>(v >> (bucket + unit)) - half] += 1
            else:
                self._add_overflow(v, 1)
        self._total += n
        if low < self._min:
            self._min = low
        if high > self._max:
            self._max = high

    def record_corrected(self, value, expected_interval):
        """Record ``value`` and, as HdrHistogram's ``recordCorrectedValue`` does, the samples it hid.

        Coordinated-omission correction: when ``value`` exceeds ``expected_interval`` (the expected
        time between samples), also record ``value - k * expected_interval`` for every k >= 1 that
        leaves a value > 0 -- ceil(value / expected_interval) values in all. ``expected_interval``
        0 records ``value`` alone. Cost O(number of buckets spanned), not O(values added). Raise
        ``TypeError``/``ValueError`` as ``record()`` does (``expected_interval`` must be >= 0).
        """
        cdef int64_t v = _hist_value(value, "value")
        cdef int64_t interval = _hist_value(expected_interval, "expected_interval")
        self._ready()
        if interval == 0 or v <= interval:
            self._check_total(1, "value")
            self._add(v, 1)
            return
        cdef int64_t n = (v - 1) // interval + 1  # ceil(v / interval), without overflow
        self._check_total(n, "value")
        cdef int64_t smallest = v - (n - 1) * interval
        cdef int64_t current = smallest, remaining = n, top, in_bucket
        cdef Py_ssize_t index
        while remaining and current <= self._highest:
            index = self._index(current)
            top = self._low(index) + ((<int64_t>1) << self._shift(index)) - 1
            if top > self._highest:
                top = self._highest
            in_bucket = (top - current) // interval + 1
            if in_bucket > remaining:
                in_bucket = remaining
            self._counts[index] += in_bucket
            remaining -= in_bucket
            if remaining:
                current += in_bucket * interval
        cdef double fc, fi, fr, pairs, squares
        if remaining:  # the rest lie above highest: an arithmetic series starting at `current`
            fc = <double>current
            fi = <double>interval
            fr = <double>remaining
            pairs = fr * (fr - 1.0) / 2.0
            squares = (fr - 1.0) * fr * (2.0 * fr - 1.0) / 6.0
            self._overflow += remaining
            self._overflow_sum += fr * fc + fi * pairs
            self._overflow_sumsq += fr * fc * fc + 2.0 * fc * fi * pairs + fi * fi * squares
        self._total += n
        if smallest < self._min:
            self._min = smallest
        if v > self._max:
            self._max = v

    # ----------------------------------------------------------------- queries
    cdef inline int64_t _target(self, double p) noexcept:
        cdef double t = p * <double>self._total / 100.0 + 0.5
        cdef int64_t target
        if t >= 9.2e18:
            return self._total
        target = <int64_t>t
        if target < 1:
            target = 1
        if target > self._total:
            target = self._total
        return target

    cdef inline Py_ssize_t _first_index(self) noexcept:
        # No bucket below min's can be non-empty (min is exact, or a bucket bound after decode(),
        # which may also leave counts above `highest`, in buckets from highest's up).
        return self._index(self._min if self._min <= self._highest else self._highest)

    cdef inline Py_ssize_t _last_index(self) noexcept:
        # decode() may leave counts above `highest` (another implementation's top bucket): scan those.
        return self._index(self._max) if self._max <= self._highest else self._counts_len - 1

    cdef inline int64_t _value_of(self, Py_ssize_t i, double p) noexcept:
        if p != 0.0:
            return self._low(i) + ((<int64_t>1) << self._shift(i)) - 1
        return self._low(i)

    cdef inline int64_t _value_at(self, double p) noexcept:
        # The first bucket whose cumulative count reaches the target rank. High ranks are found
        # walking down from max's bucket, so p99.9 touches the tail only.
        cdef int64_t target = self._target(p), in_range = self._total - self._overflow, seen = 0, room, block
        cdef Py_ssize_t i
        cdef int64_t* counts = self._counts
        if target > in_range:
            return self._max  # the rank lies among overflow values
        cdef Py_ssize_t end = self._counts_len
        if 2 * (target - 1) < in_range:
            i = self._first_index()
            while i + 8 <= end:  # skip whole blocks of 8 buckets (counts >= 0: no rank inside is missed)
                block = _hist_sum8(counts + i)
                if seen + block >= target:
                    break
                seen += block
                i += 8
            while i < end:
                seen += counts[i]
                if seen >= target:
                    return self._value_of(i, p)
                i += 1
            return self._max  # unreachable: the in-range counts lie in the buckets
        room = in_range - target  # counts that may lie strictly above the answer's bucket
        i = self._last_index()
        while i >= 8:  # consume blocks counts[i-7..i] that fit entirely, never bucket 0
            block = _hist_sum8(counts + i - 7)
            if seen + block > room:
                break
            seen += block
            i -= 8
        while i > 0 and seen + counts[i] <= room:
            seen += counts[i]
            i -= 1
        return self._value_of(i, p)

    def percentile(self, p):
        """Return the value at percentile ``p`` (0 to 100) as HdrHistogram's ``getValueAtPercentile`` does.

        That is the highest value equivalent to the recorded value of rank
        ``max(1, int(p / 100 * count + 0.5))`` (the lowest equivalent value for ``p == 0``); ``max``
        when that rank is an overflow value; 0 when the histogram is empty. O(number of buckets).
        Raise ``TypeError`` for a non-number and ``ValueError`` outside [0, 100] or for NaN.
        """
        cdef double q = _hist_percentile(p)
        self._ready()
        if self._total == 0:
            return 0
        return self._value_at(q)

    def percentiles(self, ps):
        """Return ``{p: percentile(p)}`` for every ``p`` of ``ps`` (in their order).

        Raise as ``percentile()`` does for any bad ``p`` (before computing anything).
        """
        self._ready()
        items = list(ps)
        cdef Py_ssize_t n = len(items), k
        checked = [_hist_percentile(p) for p in items]
        if self._total == 0:
            return {p: 0 for p in items}
        # Each query walks from the nearer end of the distribution (see _value_at).
        return {items[k]: self._value_at(checked[k]) for k in range(n)}

    @property
    def count(self):
        """Number of values recorded, overflow included."""
        self._ready()
        return self._total

    @property
    def overflow(self):
        """Number of values recorded above ``highest`` (kept out of the buckets, never lost)."""
        self._ready()
        return self._overflow

    @property
    def min(self):
        """Smallest value recorded, exactly (0 when empty; a bucket bound after ``decode()``)."""
        self._ready()
        return self._min if self._total else 0

    @property
    def max(self):
        """Largest value recorded, exactly, overflow included (0 when empty; a bucket bound after ``decode()``)."""
        self._ready()
        return self._max if self._total else 0

    cdef double _mean(self) noexcept:
        cdef _hist_int128 total = 0
        cdef Py_ssize_t i
        cdef int shift
        for i in range(self._first_index(), self._last_index() + 1):  # the non-empty span
            if self._counts[i]:
                shift = self._shift(i)
                total += <_hist_int128>self._counts[i] * <_hist_int128>(self._low(i) + (((<int64_t>1) << shift) >> 1))
        return (<double>total + self._overflow_sum) / <double>self._total

    @property
    def mean(self):
        """Mean value as HdrHistogram computes it: each value at its bucket's middle (0.0 when empty).

        Overflow values count at their exact values. Within the histogram's precision of the exact
        mean; equal to the ``hdrhistogram`` package's ``get_mean_value()`` without overflow.
        """
        self._ready()
        if self._total == 0:
            return 0.0
        return self._mean()

    @property
    def stdev(self):
        """Population standard deviation, computed like ``mean`` (HdrHistogram's ``getStdDeviation``)."""
        self._ready()
        if self._total == 0:
            return 0.0
        cdef double mean = self._mean(), total = 0.0, deviation
        cdef Py_ssize_t i
        for i in range(self._first_index(), self._last_index() + 1):  # the non-empty span
            if self._counts[i]:
                deviation = <double>(self._low(i) + (((<int64_t>1) << self._shift(i)) >> 1)) - mean
                total += deviation * deviation * <double>self._counts[i]
        if self._overflow:
            total += self._overflow_sumsq - 2.0 * mean * self._overflow_sum + <double>self._overflow * mean * mean
        if total < 0.0:
            total = 0.0
        return sqrt(total / <double>self._total)

    @property
    def lowest(self):
        """Smallest value distinguished from 0, as given to the constructor."""
        self._ready()
        return self._lowest

    @property
    def highest(self):
        """Highest value counted in the buckets; larger values go to ``overflow``."""
        self._ready()
        return self._highest

    @property
    def significant_figures(self):
        """Decimal digits of precision kept for every value."""
        self._ready()
        return self._figures

    @property
    def nbytes(self):
        """Bytes of counter memory, fixed at construction (8 per bucket)."""
        self._ready()
        return self._counts_len * 8

    def __reduce__(self):
        return (_codec.histogram_from_bytes, (self.to_bytes(),))

    def __eq__(self, other):
        """Return whether ``other`` is a histogram of this backend with the same settings, counts and totals."""
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        cdef LatencyHistogram that = other
        self._ready()
        that._ready()
        if self._state_for_bytes() != that._state_for_bytes() or self._counts_len != that._counts_len:
            return False
        return memcmp(self._counts, that._counts, self._counts_len * sizeof(int64_t)) == 0

    __hash__ = None  # mutable

    def buckets(self):
        """Return the non-empty buckets, lowest first, as ``(lowest value, highest value, count)`` tuples.

        Values above ``highest`` are not in any bucket (see ``overflow``).
        """
        self._ready()
        cdef Py_ssize_t index
        cdef int64_t low
        result = []
        for index in range(self._counts_len):
            if self._counts[index]:
                low = self._low(index)
                result.append((low, low + ((<int64_t>1) << self._shift(index)) - 1, self._counts[index]))
        return result

    def output_percentile_distribution(self, file=None, ticks_per_half_distance=5, value_scale=1.0):
        """Write HdrHistogram's percentile distribution (the ``.hgrm`` text its plotting tools read) to ``file``.

        ``file`` is a text stream (default stdout); values are divided by ``value_scale`` (e.g. 1000.0
        for microseconds); ``ticks_per_half_distance`` sets how many rows each halving of the distance
        to 100% gets (HdrHistogram's default 5).
        """
        text = _report.percentile_distribution(self, ticks_per_half_distance, value_scale)
        (_hist_sys.stdout if file is None else file).write(text)

    # ----------------------------------------------------------------- hdrhistogram's names
    def record_value(self, value, count=1):
        """``hdrhistogram``'s name for ``record``; returns True (a value is never refused, see ``overflow``)."""
        self.record(value, count)
        return True

    def record_corrected_value(self, value, expected_interval):
        """``hdrhistogram``'s name for ``record_corrected``; returns True."""
        self.record_corrected(value, expected_interval)
        return True

    def get_value_at_percentile(self, percentile):
        """``hdrhistogram``'s name for ``percentile``."""
        return self.percentile(percentile)

    def get_percentile_to_value_dict(self, percentile_list):
        """``hdrhistogram``'s name for ``percentiles``."""
        return self.percentiles(percentile_list)

    def get_total_count(self):
        """``hdrhistogram``'s name for ``count``."""
        return self.count

    def get_min_value(self):
        """``hdrhistogram``'s name for ``min``."""
        return self.min

    def get_max_value(self):
        """``hdrhistogram``'s name for ``max``."""
        return self.max

    def get_mean_value(self):
        """``hdrhistogram``'s name for ``mean``."""
        return self.mean

    def get_stddev(self):
        """``hdrhistogram``'s name for ``stdev``."""
        return self.stdev

    def add(self, LatencyHistogram other not None):
        """``hdrhistogram``'s name for ``merge``."""
        self.merge(other)

    def __repr__(self):
        if self._counts == NULL:
            return "<uninitialised LatencyHistogram>"
        return (
            f"LatencyHistogram(lowest={self._lowest}, highest={self._highest}, "
            f"significant_figures={self._figures}) with {self._total} values"
        )

    # ----------------------------------------------------------------- combining
    def merge(self, LatencyHistogram other not None):
        """Add every value of ``other`` to this histogram, as if each had been recorded here.

        ``other`` must have the same ``lowest``, ``highest`` and ``significant_figures``
        (``ValueError`` otherwise; ``TypeError`` if it is not a ``LatencyHistogram`` of this
        backend). ``other`` is unchanged. O(number of buckets).
        """
        self._ready()
        other._ready()
        mine = (self._lowest, self._highest, self._figures)
        theirs = (other._lowest, other._highest, other._figures)
        if mine != theirs:
            raise ValueError(
                f"other has a different layout (lowest, highest, significant_figures) {theirs}, expected {mine}"
            )
        if other._total == 0:
            return
        self._check_total(other._total, "other")
        cdef Py_ssize_t i
        for i in range(self._counts_len):
            self._counts[i] += other._counts[i]
        self._total += other._total
        if other._min < self._min:
            self._min = other._min
        if other._max > self._max:
            self._max = other._max
        self._overflow += other._overflow
        self._overflow_sum += other._overflow_sum
        self._overflow_sumsq += other._overflow_sumsq

    def reset(self):
        """Forget every recorded value; the memory stays allocated. O(number of buckets)."""
        self._ready()
        self._clear()

    def copy(self):
        """Return an independent histogram with the same layout and contents."""
        self._ready()
        cdef LatencyHistogram clone = LatencyHistogram(self._lowest, self._highest, self._figures)
        clone.merge(self)
        return clone

    # ----------------------------------------------------------------- serialisation
    cdef bytes _v2_payload(self):
        self._ready()
        cdef Py_ssize_t limit = self._counts_len, i = 0, written = 0
        while limit > 0 and self._counts[limit - 1] == 0:
            limit -= 1
        cdef uint8_t* out = <uint8_t*>malloc(9 * limit + 1)
        if out == NULL:
            raise MemoryError()
        cdef int64_t count, zeros
        cdef uint64_t v
        cdef int k
        try:
            while i < limit:
                count = self._counts[i]
                i += 1
                if count == 0:
                    zeros = 1
                    while i < limit and self._counts[i] == 0:
                        zeros += 1
                        i += 1
                    count = -zeros  # a run of zeros, as hdrh writes it (a single zero too)
                v = (<uint64_t>count << 1) ^ <uint64_t>(count >> 63)
                for k in range(8):
                    if v < 0x80:
                        break
                    out[written] = <uint8_t>((v & 0x7F) | 0x80)
                    written += 1
                    v >>= 7
                out[written] = <uint8_t>v  # the final byte (the ninth carries the last 8 bits)
                written += 1
            body = PyBytes_FromStringAndSize(<char*>out, written)
        finally:
            free(out)
        return _codec.v2_payload(body, self._figures, self._lowest, self._highest)

    def encode(self):
        """Return HdrHistogram's compressed base64 V2 form of this histogram (an ASCII ``str``).

        Readable by the ``hdrhistogram`` package (``HdrHistogram.decode``), HdrHistogram's Java and
        C libraries and their log tools. The V2 form carries the buckets only: overflow values
        and the exact ``min``/``max`` are not in it (use ``to_bytes()`` to keep them).
        """
        return _codec.v2_text(self._v2_payload())

    @classmethod
    def decode(cls, text):
        """Return a new histogram from HdrHistogram's compressed base64 V2 form (``str`` or ``bytes``).

        Its layout is the one in the encoding. As V2 carries no exact extremes, ``min`` and ``max``
        become the bounds of the lowest and highest non-empty buckets, as in HdrHistogram. Raise
        ``TypeError`` if ``text`` is not ``str``/``bytes`` and ``ValueError`` for anything that is
        not a valid V2 histogram (bad base64, cookie, length, zlib stream or counts).
        """
        cdef LatencyHistogram histogram = _hist_from_v2_payload(_codec.v2_payload_of_text(text), "text")[0]
        cdef Py_ssize_t first = 0, last = histogram._counts_len - 1
        if histogram._total:
            while histogram._counts[first] == 0:
                first += 1
            while histogram._counts[last] == 0:
                last -= 1
            histogram._min = histogram._low(first)
            histogram._max = histogram._low(last) + ((<int64_t>1) << histogram._shift(last)) - 1
        return histogram

    def to_bytes(self):
        """Return a compact, versioned binary form of this histogram, overflow and exact extremes included.

        ``LatencyHistogram.from_bytes`` of either backend reads it. Layout: a little-endian header
        (``b"LLHG"``, version 1, figures, lowest, highest, count, min, max, overflow, overflow sums)
        followed by HdrHistogram's zlib-compressed V2 payload of the buckets.
        """
        self._ready()
        return _codec.pack_to_bytes(self, self._v2_payload())

    def _state_for_bytes(self):
        return (
            self._figures, self._lowest, self._highest, self._total, self._min, self._max,
            self._overflow, self._overflow_sum, self._overflow_sumsq,
        )

    @classmethod
    def from_bytes(cls, data):
        """Return the histogram that ``to_bytes()`` encoded (by either backend).

        Raise ``TypeError`` if ``data`` is not bytes-like and ``ValueError`` if it is not a valid
        ``to_bytes()`` output (wrong magic or version, truncated, corrupt or inconsistent).
        """
        header, payload = _codec.unpack_to_bytes(data)
        histogram, in_range = _hist_from_v2_payload(payload, "data")
        cdef LatencyHistogram h = histogram
        cdef Py_ssize_t first = 0, last = h._counts_len - 1
        bounds_first = bounds_last = None
        if in_range:
            while h._counts[first] == 0:
                first += 1
            while h._counts[last] == 0:
                last -= 1
            bounds_first = (h._low(first), (<int64_t>1) << h._shift(first))
            bounds_last = (h._low(last), (<int64_t>1) << h._shift(last))
        _codec.check_restored(h, header, in_range, bounds_first, bounds_last)
        total, low, high, overflow, ovf_sum, ovf_sumsq = header[3:]
        h._total = total
        h._min = low if total else _HIST_INT64_MAX
        h._max = high if total else 0
        h._overflow = overflow
        h._overflow_sum = ovf_sum
        h._overflow_sumsq = ovf_sumsq
        return h

    cdef int64_t _fill_from_v2(self, const uint8_t[::1] body, str name) except -1:
        # Decode ZigZag LEB128 counts into this (empty) histogram; bounds-checked against body and counts.
        cdef Py_ssize_t size = self._counts_len, index = 0, position = 0, end = body.shape[0]
        cdef int64_t total = 0, count
        cdef uint64_t value
        cdef uint8_t byte
        cdef int k
        while position < end:
            value = 0
            for k in range(9):
                if position >= end:
                    raise ValueError(f"{name} is truncated inside a count")
                byte = body[position]
                position += 1
                if k == 8:
                    value |= (<uint64_t>byte) << 56
                    break
                value |= (<uint64_t>(byte & 0x7F)) << (7 * k)
                if byte < 0x80:
                    break
            count = <int64_t>(value >> 1) ^ -<int64_t>(value & 1)
            if count < 0:  # a run of -count zeros; compared without negating (count may be INT64_MIN)
                if count < -(<int64_t>(size - index)):
                    raise ValueError(f"{name} has more counts than its layout holds")
                index -= <Py_ssize_t>count
                continue
            if index >= size:
                raise ValueError(f"{name} has more counts than its layout holds")
            if count > _HIST_INT64_MAX - total:
                raise ValueError(f"{name} has a total count above 2**63 - 1")
            total += count
            self._counts[index] = count
            index += 1
        self._total = total
        return total


def _hist_from_v2_payload(compressed, name):
    histogram, body = _codec.open_v2_payload(compressed, name, LatencyHistogram)
    total = (<LatencyHistogram>histogram)._fill_from_v2(body, name) if body else 0
    return histogram, total


# --------------------------------------------------------------------- timing
cdef int64_t _hist_timer_overhead = -1


cdef int _hist_compare_int64(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const int64_t*>a)[0], y = (<const int64_t*>b)[0]
    return (x > y) - (x < y)


def timer_overhead_ns():
    """Return the cost in ns of one timestamp pair, as ``LatencyTracker.measure()`` takes them.

    Calibrated once per process (the first call; later calls return the cached figure): the median
    of 10,001 back-to-back pairs of the backend's clock reads. ``measure()`` subtracts nothing;
    compare small latencies with this figure.
    """
    global _hist_timer_overhead
    cdef int64_t* samples
    cdef int64_t start
    cdef int i
    if _hist_timer_overhead < 0:
        samples = <int64_t*>malloc(_HIST_TIMER_PAIRS * sizeof(int64_t))
        if samples == NULL:
            raise MemoryError()
        for i in range(_HIST_TIMER_PAIRS):
            start = _now()
            samples[i] = _now() - start
        qsort(samples, _HIST_TIMER_PAIRS, sizeof(int64_t), _hist_compare_int64)
        _hist_timer_overhead = samples[_HIST_TIMER_PAIRS // 2]
        free(samples)
    return _hist_timer_overhead


cdef class LatencyTracker


@cython.final
@cython.freelist(8)
cdef class _Measurement:
    """Context manager returned by ``LatencyTracker.measure()``: times one ``with`` block."""

    cdef LatencyTracker _tracker
    cdef int64_t _start

    def __enter__(self):
        self._start = _now()

    def __exit__(self, exc_type, exc, tb):
        cdef int64_t end = _now()
        if self._tracker is None:  # made by type(m)() rather than measure()
            raise ValueError("this measurement was not made by LatencyTracker.measure()")
        if exc_type is None:
            self._tracker._record_sample(end - self._start)
        return False


@cython.final
cdef class LatencyTracker:
    """LatencyTracker(name, warmup_iterations=100, *, histogram=None)
--

Time operations into a :class:`LatencyHistogram`: constant memory however many samples arrive.

    Compatible with the seed's tracker: ``measure()``, ``record()``, ``get_statistics()`` (the same
    keys, plus ``p9999_ns`` and ``timer_overhead_ns``) and ``print_report()``. The first
    ``warmup_iterations`` samples are dropped (JIT-less Python still warms caches and allocators).
    ``histogram`` lets callers choose the layout or share one histogram; by default a new
    ``LatencyHistogram()`` (1 ns to 1 hour, 3 figures). Not thread-safe: one tracker per thread.
    """

    cdef str _name
    cdef int64_t _warmup, _skipped
    cdef LatencyHistogram _histogram

    def __init__(self, name, warmup_iterations=100, *, histogram=None):
        """Create a tracker called ``name`` that skips its first ``warmup_iterations`` samples.

        Raise ``TypeError`` if ``name`` is not a ``str``, ``warmup_iterations`` not an integer or
        ``histogram`` not a ``LatencyHistogram`` of this backend, ``ValueError`` if
        ``warmup_iterations`` is negative.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        warmup = _hist_as_int(warmup_iterations, "warmup_iterations")
        if warmup < 0:
            raise ValueError(f"warmup_iterations must be >= 0, got {warmup}")
        if warmup > _HIST_INT64_MAX:
            raise ValueError(f"warmup_iterations must be < 2**63, got {warmup}")
        if histogram is None:
            histogram = LatencyHistogram()
        elif not isinstance(histogram, LatencyHistogram):
            raise TypeError(f"histogram must be a LatencyHistogram or None, not {type(histogram).__name__}")
        self._name = name
        self._warmup = warmup
        self._histogram = histogram
        self._skipped = 0

    @property
    def name(self):
        """The name shown in reports."""
        self._ready()
        return self._name

    @property
    def warmup_iterations(self):
        """How many of the first samples are dropped."""
        self._ready()
        return self._warmup

    @property
    def histogram(self):
        """The histogram the samples go to (after warm-up)."""
        self._ready()
        return self._histogram

    @property
    def count(self):
        """Number of samples recorded after warm-up."""
        self._ready()
        return self._histogram._total

    cdef inline int _ready(self) except -1:
        if self._histogram is None:
            raise ValueError("LatencyTracker is not initialised (__init__ was not called)")
        return 0

    cdef inline int _record_sample(self, int64_t latency_ns) except -1:
        self._ready()
        if self._skipped < self._warmup:
            self._skipped += 1
            return 0
        if latency_ns < 0:  # a clock that steps back (cannot happen with CLOCK_MONOTONIC)
            raise ValueError(f"latency_ns must be >= 0, got {latency_ns}")
        self._histogram._ready()
        self._histogram._check_total(1, "count")
        self._histogram._add(latency_ns, 1)
        return 0

    def measure(self):
        """Return a context manager that records the wall time of its ``with`` block, in ns.

        Two clock reads (``now_ns()``'s clock) around the block; nothing is subtracted (see
        ``timer_overhead_ns()``). A block that raises is not recorded. Each call returns a new
        object, so measurements may nest.
        """
        cdef _Measurement measurement = _Measurement.__new__(_Measurement)
        measurement._tracker = self
        return measurement

    def record(self, latency_ns):
        """Record one latency in ns (dropped while warming up). Raise as ``LatencyHistogram.record``."""
        self._record_sample(_hist_value(latency_ns, "latency_ns"))

    def reset(self):
        """Forget all samples and start warming up again."""
        self._ready()
        self._histogram.reset()
        self._skipped = 0

    def get_statistics(self):
        """Return the seed's statistics dict, computed from the histogram.

        Keys: ``name``, ``count``, ``mean_ns``, ``median_ns``, ``std_ns``, ``min_ns``, ``max_ns``,
        ``p50_ns``, ``p90_ns``, ``p99_ns``, ``p999_ns``, ``p9999_ns`` and ``timer_overhead_ns``.
        Percentiles are HdrHistogram's (3 significant figures by default) capped at the exact
        ``max_ns`` (a bucket's highest value can pass it by up to the bucket width); ``min_ns`` and
        ``max_ns`` are exact; ``mean_ns``/``std_ns`` are floats. With no samples every figure is
        ``None``.
        """
        self._ready()
        return _report.statistics(self._name, self._histogram, timer_overhead_ns())

    def print_report(self, file=None):
        """Print the seed's report table (one line per figure, in ns) to ``file`` (default stdout)."""
        print(_report.report_text(self.get_statistics(), self._warmup), file=_hist_sys.stdout if file is None else file)

    def __repr__(self):
        if self._histogram is None:
            return "<uninitialised LatencyTracker>"
        count = self._histogram._total
        return f"LatencyTracker({self._name!r}, warmup_iterations={self._warmup}) with {count} samples"


@cython.binding(True)  # the wrapper it makes must take attributes (functools.wraps, .benchmark)
def latency_benchmark(warmup=100, iterations=10000):
    """Return a decorator that adds a latency benchmark to a function, the seed's ``latency_benchmark``.

    The decorated function runs normally when called. Its ``benchmark(*args, **kwargs)`` attribute
    calls it ``warmup + iterations`` times with those arguments, each call timed by a fresh
    ``LatencyTracker(func.__qualname__, warmup)``, and returns ``get_statistics()``
    (``iterations`` samples); the same dict is kept as ``last_statistics`` (``None`` before the
    first run). Raise ``TypeError``/``ValueError`` for a non-integer or negative ``warmup`` or an
    ``iterations`` below 1.
    """
    return _report.benchmark_decorator(LatencyTracker, warmup, iterations)
