# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled half of :mod:`lowlat.batching`: the twin of ``_py`` (same names, signatures, errors).

Pending items live in two preallocated C arrays (an owned object pointer and an int64 stamp per
item), so ``add`` costs one clock read and two stores. Thread safety comes from the GIL: between
reading and writing the pending count no Python code runs, and every call that can run Python
code (allocating the batch list, taking the delivery lock, recording statistics, ``on_batch``)
happens before the state is read or after it is consistent again -- and then the state is read
afresh. Indices are bounded by ``_pending < _max_batch``, an invariant every path keeps (an add
that would fill the batch flushes it instead of storing), so bounds checks are off.
"""

cimport cython
cimport numpy as cnp
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t

from lowlat._clock cimport monotonic_ns as _now
from libc.stdlib cimport free, malloc

import threading as _threading
from types import GenericAlias as _GenericAlias

from lowlat.hist._c import LatencyHistogram
from lowlat.batching import _shared as _s

cnp.import_array()

__all__ = ["AdaptiveBatcher"]

cdef enum:
    _SIZE = 1  # the values of _shared.SIZE, DEADLINE, EXPLICIT
    _DEADLINE = 2
    _EXPLICIT = 3
    _SMALL_BATCH = 16  # _shared.SMALL_BATCH: up to this many, added latencies go through record()

cdef int64_t _INT64_MAX = 0x7FFFFFFFFFFFFFFF

_check_now_ns = _s.check_now_ns

assert (_s.SIZE, _s.DEADLINE, _s.EXPLICIT, _s.SMALL_BATCH) == (_SIZE, _DEADLINE, _EXPLICIT, _SMALL_BATCH)


cdef inline int64_t _deadline(int64_t now, int64_t delay) noexcept nogil:
    # Saturating: an explicit now_ns near 2**63 must not wrap the deadline into the past.
    return _INT64_MAX if now > _INT64_MAX - delay else now + delay


cdef inline int64_t _waited(int64_t now, int64_t stamp) noexcept nogil:
    if now <= stamp:
        return 0
    if stamp < 0 and now > _INT64_MAX + stamp:
        return _INT64_MAX
    return now - stamp


cdef inline int64_t _as_now(object now_ns) except? -1:
    cdef int overflow = 0
    cdef long long value
    if now_ns is None:
        return _now()
    if type(now_ns) is int:  # the common explicit time: converted in C, without the shared check's call
        value = PyLong_AsLongLongAndOverflow(now_ns, &overflow)
        if not overflow:
            return value
    return _check_now_ns(now_ns)  # anything else, or out of range: the shared check's error


@cython.final
@cython.auto_pickle(False)
cdef class AdaptiveBatcher:
    """AdaptiveBatcher(max_batch, max_delay_ns, on_batch=None)
--

Collect items one at a time and hand them on in batches, by size or by deadline.

    A batch is flushed when it reaches ``max_batch`` items (by the ``add`` that fills it) or when
    its oldest item has waited ``max_delay_ns`` (``max_delay_ns=0``: every ``add`` flushes). The
    deadline is honoured even when no item arrives: call ``poll()`` from the owner's loop, or let
    the timer thread of ``start()`` do it. ``flush()`` flushes whatever is pending.

    Delivery. With ``on_batch`` every batch is passed to ``on_batch(batch)`` as a new list, and
    ``add``/``poll``/``flush`` return None. Without it the call that flushes returns the batch:
    ``add``/``poll`` return a list or None, ``flush`` a list (``[]`` when nothing is pending).
    Each item is in exactly one batch, in the order added. A batch leaves the batcher before
    ``on_batch`` sees it, so ``on_batch`` may call back into the batcher (a batch it flushes is
    delivered by a nested call). If ``on_batch`` raises, the batch still counts as delivered
    (``errors`` counts the failure) and the exception propagates to the caller; nothing is retried.

    Threads. Any thread may call any method. Every flush holds one reentrant lock, so batches
    reach ``on_batch`` in the order they were formed and never two at once; an ``add`` that must
    flush waits while another thread's ``on_batch`` runs (an ``add`` that only appends never
    waits). ``on_batch`` must not wait for a thread that adds to the same batcher. ``start()``
    needs ``on_batch``; its thread sleeps until the pending batch's deadline and flushes it,
    late by the operating system's wake-up time (tens of microseconds).

    Times are integer ns on lowlat's clock (``lowlat.now_ns()``, ``time.perf_counter_ns()``); an
    omitted ``now_ns`` reads it. Explicit times (simulations, tests) must not go backwards and do
    not mix with the timer thread. Statistics take constant memory: ``batch_sizes`` (items per
    batch) and ``added_latency`` (ns each item waited from its ``add`` to its flush) are
    ``LatencyHistogram``s, plus counters. ``add`` and ``poll`` are O(1); a flush is O(batch).
    """

    cdef PyObject** _items  # owned references, [0, _pending)
    cdef int64_t* _stamps  # each pending item's add time
    cdef Py_ssize_t _pending
    cdef Py_ssize_t _max_batch
    cdef int64_t _max_delay_ns
    cdef int64_t _due  # the oldest pending item's deadline; meaningful only while _pending > 0
    cdef object _on_batch
    cdef object _deliver  # RLock held by every flush, across on_batch
    cdef object _timer
    cdef object _sizes  # lowlat.hist._c.LatencyHistogram (no .pxd: called through Python, once per batch)
    cdef object _latency
    cdef int64_t _items_added, _items_flushed, _batches
    cdef int64_t _size_flushes, _deadline_flushes, _explicit_flushes, _errors

    def __cinit__(self):
        self._items = NULL
        self._stamps = NULL
        self._pending = 0
        self._max_batch = 0

    def __dealloc__(self):
        self._drop_pending()
        free(self._items)
        free(self._stamps)

    cdef void _drop_pending(self) noexcept:
        cdef PyObject* p
        while self._pending > 0:
            # Unlink before the decref: a finaliser may run Python code, even this batcher's.
            self._pending -= 1
            p = self._items[self._pending]
            self._items[self._pending] = NULL
            Py_XDECREF(p)

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item)

    def __init__(self, max_batch, max_delay_ns, on_batch=None):
        """Create a batcher of at most ``max_batch`` items (1 to 2**20) whose items wait at most ``max_delay_ns`` (>= 0).

        ``on_batch`` is a callable taking one list, or None to have batches returned. Raise
        ``TypeError`` for a non-integer size or delay or a non-callable ``on_batch``, and
        ``ValueError`` for a size or delay out of range.
        """
        cdef Py_ssize_t size = _s.check_max_batch(max_batch)
        cdef int64_t delay = _s.check_max_delay_ns(max_delay_ns)
        on_batch = _s.check_on_batch(on_batch)
        sizes = _s.batch_size_histogram(LatencyHistogram, size)
        latency = LatencyHistogram()
        deliver = _threading.RLock()
        cdef PyObject** items = <PyObject**>malloc(size * sizeof(PyObject*))
        cdef int64_t* stamps = <int64_t*>malloc(size * sizeof(int64_t))
        if items == NULL or stamps == NULL:
            free(items)
            free(stamps)
            raise MemoryError(f"cannot allocate the item buffer of max_batch={size}")
        self._drop_pending()  # __init__ called again on a live object
        free(self._items)
        free(self._stamps)
        self._items = items
        self._stamps = stamps
        self._max_batch = size
        self._max_delay_ns = delay
        self._on_batch = on_batch
        self._deliver = deliver
        self._timer = None
        self._sizes = sizes
        self._latency = latency
        self._items_added = self._items_flushed = self._batches = 0
        self._size_flushes = self._deadline_flushes = self._explicit_flushes = self._errors = 0

    cdef inline int _ready(self) except -1:
        if self._items == NULL:
            raise ValueError("AdaptiveBatcher is not initialised (__init__ was not called)")
        return 0

    @property
    def max_batch(self):
        """The number of items that flushes a batch at once."""
        return self._max_batch

    @property
    def max_delay_ns(self):
        """How long (ns) the oldest pending item may wait before its batch is flushed."""
        return self._max_delay_ns

    @property
    def on_batch(self):
        """The callable batches are delivered to, or None when flushing calls return them."""
        return self._on_batch

    @property
    def deadline_ns(self):
        """When the pending batch is due (ns on lowlat's clock), or None when nothing is pending."""
        return self._due if self._pending else None

    @property
    def running(self):
        """Whether the timer thread of ``start()`` is running."""
        return self._timer is not None and self._timer.thread.is_alive()

    @property
    def batch_sizes(self):
        """A ``LatencyHistogram`` of the number of items in each batch flushed (exact up to 2,048)."""
        return self._sizes

    @property
    def added_latency(self):
        """A ``LatencyHistogram`` of the ns each flushed item waited between its ``add`` and its flush."""
        return self._latency

    @property
    def items_added(self):
        """How many items ``add`` has taken."""
        return self._items_added

    @property
    def items_flushed(self):
        """How many items have left in batches."""
        return self._items_flushed

    @property
    def batches(self):
        """How many non-empty batches have been flushed."""
        return self._batches

    @property
    def size_flushes(self):
        """How many batches were flushed because they reached ``max_batch``."""
        return self._size_flushes

    @property
    def deadline_flushes(self):
        """How many batches were flushed because their oldest item reached ``max_delay_ns``."""
        return self._deadline_flushes

    @property
    def explicit_flushes(self):
        """How many non-empty batches ``flush()`` (or ``close()``) flushed."""
        return self._explicit_flushes

    @property
    def errors(self):
        """How many calls of ``on_batch`` raised."""
        return self._errors

    def __len__(self):
        return self._pending

    def __repr__(self):
        return (
            f"AdaptiveBatcher(max_batch={self._max_batch}, max_delay_ns={self._max_delay_ns}, "
            f"pending={self._pending}, batches={self._batches})"
        )

    def add(self, item, /, now_ns=None):
        """Add ``item`` (stamped ``now_ns``, default now); flush if that fills the batch or the oldest is due.

        Return the flushed batch (a list, ``item`` last) when there is no ``on_batch``, else None;
        None when nothing was flushed. Raise ``TypeError``/``ValueError`` for a ``now_ns`` that is
        not an int64, and whatever ``on_batch`` raises. O(1), O(batch) when it flushes.
        """
        cdef int64_t now = _as_now(now_ns)  # may run Python code: read the state after it
        self._ready()
        cdef Py_ssize_t pending = self._pending
        cdef int64_t due = self._due if pending else _deadline(now, self._max_delay_ns)
        if pending + 1 < self._max_batch and now < due:
            Py_INCREF(item)
            self._items[pending] = <PyObject*>item
            self._stamps[pending] = now
            self._due = due
            self._pending = pending + 1
            self._items_added += 1
            if pending == 0 and self._timer is not None:
                self._timer.notify()
            return None
        return self._flush(now, _SIZE, item, True)

    def poll(self, now_ns=None):
        """Flush the pending batch if its deadline has passed at ``now_ns`` (default now).

        Return the flushed batch when there is no ``on_batch``, else None; None when nothing was
        due. Call it from the owner's loop when no item arrives. O(1) when nothing is due.
        """
        if self._pending == 0:
            return None
        cdef int64_t now = _as_now(now_ns)
        if now < self._due:
            return None
        return self._flush(now, _DEADLINE, None, False)

    def flush(self, now_ns=None):
        """Flush every pending item now (``now_ns``, default now, ends their added latency).

        Return the batch (``[]`` when nothing is pending) when there is no ``on_batch``, else None.
        """
        cdef int64_t now = _as_now(now_ns)
        self._ready()
        batch = self._flush(now, _EXPLICIT, None, False)
        if batch is None and self._on_batch is None:
            return []
        return batch

    def start(self):
        """Start the timer thread that flushes each batch when its deadline passes.

        Raise ``ValueError`` without ``on_batch`` (the thread has nowhere to return a batch) and
        ``RuntimeError`` if it is already running. Stop it with ``stop()`` or ``close()``.
        """
        self._ready()
        if self._on_batch is None:
            raise ValueError("start() needs on_batch: a timer thread has nowhere to return a batch")
        if self.running:
            raise RuntimeError("the timer thread is already running")
        timer = _s.DeadlineTimer(self)
        self._timer = timer
        timer.start()

    def stop(self):
        """Stop the timer thread and wait for it (not when called from ``on_batch`` on that thread).

        Pending items stay pending. Does nothing when no timer runs.
        """
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.stop()

    def close(self):
        """Stop the timer thread and flush what is pending; return what ``flush()`` returns.

        Leaving a ``with`` block calls ``stop()``, then ``flush()`` when there is an ``on_batch``;
        without one, pending items stay for the owner to ``flush()``.
        """
        self.stop()
        return self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()
        if self._on_batch is not None:
            self.flush()

    def statistics(self):
        """Return the counters and the p50/p99 (and p99.9 of added latency) of both histograms as a dict."""
        return _s.statistics(self)

    def reset_statistics(self):
        """Zero the counters and both histograms; pending items stay pending."""
        self._ready()
        self._deliver.acquire()
        try:
            self._sizes.reset()
            self._latency.reset()
            self._items_added = self._items_flushed = self._batches = 0
            self._size_flushes = self._deadline_flushes = self._explicit_flushes = self._errors = 0
        finally:
            self._deliver.release()

    cdef object _flush(self, int64_t now, int reason, object item, bint has_item):
        # Every flush holds _deliver from taking the batch to delivering it: batches are formed and
        # delivered in one order, and the statistics are written by one thread at a time.
        deliver = self._deliver
        deliver.acquire()
        try:
            return self._flush_locked(now, reason, item, has_item)
        finally:
            deliver.release()

    cdef object _flush_locked(self, int64_t now, int reason, object item, bint has_item):
        cdef Py_ssize_t pending, total, i
        cdef int64_t due
        cdef int64_t small[_SMALL_BATCH]
        cdef int64_t* waited
        cdef cnp.npy_intp dims[1]
        cdef cnp.ndarray waited_array = None
        cdef list batch
        while True:
            pending = self._pending
            if has_item:  # an add: look again, another flush may have run while we waited
                due = self._due if pending else _deadline(now, self._max_delay_ns)
                if pending + 1 < self._max_batch and now < due:
                    Py_INCREF(item)
                    self._items[pending] = <PyObject*>item
                    self._stamps[pending] = now
                    self._due = due
                    self._pending = pending + 1
                    self._items_added += 1
                    if pending == 0 and self._timer is not None:
                        self._timer.notify()
                    return None
                total = pending + 1
                if total < self._max_batch:
                    reason = _DEADLINE
            elif pending == 0 or (reason == _DEADLINE and now < self._due):
                return None
            else:
                total = pending
            # Allocating may run the collector, and so any Python code: other threads may append
            # (never flush: we hold _deliver). Allocate first, then take only if nothing moved.
            batch = PyList_New(total)
            if total > _SMALL_BATCH:
                dims[0] = total
                waited_array = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
            if self._pending == pending:
                break
        # From here to the end of the move no Python code runs: under the GIL it is atomic.
        if total <= _SMALL_BATCH:
            waited = &small[0]
        else:
            waited = <int64_t*>cnp.PyArray_DATA(waited_array)
        for i in range(pending):
            PyList_SET_ITEM(batch, i, <object>self._items[i])  # steals the buffer's reference
            self._items[i] = NULL
            waited[i] = _waited(now, self._stamps[i])
        if has_item:
            Py_INCREF(item)
            PyList_SET_ITEM(batch, pending, item)
            waited[pending] = 0
            self._items_added += 1
        self._pending = 0
        self._items_flushed += total
        self._batches += 1
        if reason == _SIZE:
            self._size_flushes += 1
        elif reason == _DEADLINE:
            self._deadline_flushes += 1
        else:
            self._explicit_flushes += 1
        # The batch is out; from here Python code may run again.
        self._sizes.record(total)
        if total <= _SMALL_BATCH:
            record = self._latency.record
            for i in range(total):
                record(waited[i])
        else:
            self._latency.record_many(waited_array)
        on_batch = self._on_batch
        if on_batch is None:
            return batch
        try:
            on_batch(batch)
        except BaseException:
            self._errors += 1
            raise
        return None
