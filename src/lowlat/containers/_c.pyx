# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled containers of lowlat: the twin of :mod:`lowlat.containers._py` (same names, signatures, errors).

Every index below is a monotonically increasing position masked into a power-of-two buffer, so
bounds and wrap-around checks are proven by construction and turned off module-wide.
Thread safety comes from the GIL: no method releases it between writing a slot and publishing
the position that makes the slot visible, and every point where Python code can run (a decref,
an allocation, an iterator) leaves the container in a consistent state.
"""

cimport cython
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF, Py_REFCNT, Py_XDECREF
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy

from lowlat._clock cimport LOWLAT_HAVE_TSC, lowlat_rdtsc, monotonic_ns as _now

cimport numpy as cnp
import numpy as np
import os as _os
import struct as _struct
import weakref as _weakref
from types import GenericAlias as _GenericAlias

from lowlat import _validate as _v
from lowlat import _waiting
from lowlat._backend import env_flag as _env_flag
from lowlat._errors import PoolExhausted

cnp.import_array()


__all__ = [
    "ObjectPool",
    "PoolExhausted",
    "PriorityQueue",
    "RecordPool",
    "RecordRing",
    "SpscRing",
    "TimestampedQueue",
    "now_ns",
]


def now_ns():
    """Return the current time in nanoseconds on the clock of ``time.perf_counter_ns()``."""
    return _now()


# Queue stamps that never leave the core (a message's enqueue time, used only to compute its
# latency on dequeue) are read from the CPU's time-stamp counter where the kernel itself keeps
# time with it: 'tsc' clocksource means the counter is invariant and synchronised across cores.
# rdtsc costs a third of clock_gettime here, and two are taken per message. A difference of
# ticks becomes ns through a rate calibrated against CLOCK_MONOTONIC at import (error ~10 ppm,
# i.e. 0.01 ns on a 1 us latency). Anywhere else the ticks *are* CLOCK_MONOTONIC nanoseconds.
cdef bint _use_tsc = False
cdef double _ns_per_tick = 1.0


cdef inline int64_t _ticks() noexcept nogil:
    if _use_tsc:
        return lowlat_rdtsc()
    return _now()


cdef inline int64_t _elapsed_ns(int64_t ticks) noexcept nogil:
    if _use_tsc:
        return <int64_t>(ticks * _ns_per_tick)
    return ticks


cdef (int64_t, int64_t) _bracketed_sample() noexcept nogil:
    # The tick read closest in time to a clock read: the narrowest of a few brackets.
    cdef int64_t best = 1 << 62, ns = 0, ticks = 0, before, after, t
    cdef int i
    for i in range(16):
        before = _now()
        t = lowlat_rdtsc()
        after = _now()
        if after - before < best:
            best = after - before
            ns = before + (after - before) // 2
            ticks = t
    return ns, ticks


def _calibrate_ticks(double seconds=0.005):
    """Choose the stamp clock of the queues; return ``(uses_tsc, ns_per_tick)``."""
    global _use_tsc, _ns_per_tick
    _use_tsc = False
    _ns_per_tick = 1.0
    if not LOWLAT_HAVE_TSC or _env_flag("LOWLAT_NO_TSC"):
        return False, 1.0
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as fh:
            if fh.read().strip() != "tsc":
                return False, 1.0
    except OSError:
        return False, 1.0
    cdef int64_t ns0, ticks0, ns1, ticks1
    ns0, ticks0 = _bracketed_sample()
    while _now() - ns0 < <int64_t>(seconds * 1e9):
        pass
    ns1, ticks1 = _bracketed_sample()
    if ticks1 <= ticks0:
        return False, 1.0
    rate = (ns1 - ns0) / <double>(ticks1 - ticks0)
    if not 0.02 < rate < 10.0:  # 100 MHz .. 50 GHz: anything else is not a usable counter
        return False, 1.0
    _ns_per_tick = rate
    _use_tsc = True
    return True, rate


_calibrate_ticks()


cdef inline Py_ssize_t _limit(object value, str name) except -2:
    return _v.batch_limit(value, name)  # huge counts are clamped: the same result in both backends


@cython.final
@cython.auto_pickle(False)
cdef class SpscRing:
    """SpscRing(capacity)
--

Bounded FIFO of Python objects for one producer thread and one consumer thread.

    ``capacity`` is rounded up to a power of two and the ring holds exactly that many items.
    The producer thread may call ``push`` and ``push_many``; the consumer thread ``pop``,
    ``pop_many``, ``peek`` and ``clear``; both may use ``len()``. With one thread of each, nothing
    is lost, duplicated or reordered. Every operation is O(1) per item and never blocks unless
    given a ``timeout``. The ring holds no reference to an item once it has been popped.

    Re-entrancy: every method that can run Python code (a finaliser on a decref or an allocation,
    an iterator) re-reads the positions after it, so such code may push or pop this same ring;
    misuse by two producers or two consumers is undefined in meaning but never crashes.
    """

    cdef PyObject** _slots
    cdef size_t _capacity
    cdef size_t _mask
    cdef size_t _head  # next position to pop: written by the consumer only
    cdef size_t _tail  # next position to push: written by the producer only

    def __cinit__(self, capacity):
        cdef size_t size = _v.ring_capacity(capacity, "capacity")
        self._slots = <PyObject**>calloc(size, sizeof(PyObject*))
        if self._slots == NULL:
            raise MemoryError()
        self._capacity = size
        self._mask = size - 1

    def __dealloc__(self):
        if self._slots != NULL:
            while self._head != self._tail:
                Py_XDECREF(self._slots[self._head & self._mask])
                self._head += 1
            free(self._slots)

    @property
    def capacity(self):
        """The number of items the ring holds when full (a power of two)."""
        return self._capacity

    def __len__(self):
        return self._tail - self._head

    def __repr__(self):
        return f"SpscRing(capacity={self._capacity}, len={self._tail - self._head})"

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item)

    def empty(self):
        """Return True when the ring holds no item."""
        return self._head == self._tail

    def full(self):
        """Return True when the ring holds ``capacity`` items."""
        return self._tail - self._head == self._capacity

    def push(self, item, /):
        """Append ``item``; return False and store nothing when the ring is full. Producer only."""
        cdef size_t tail = self._tail
        if tail - self._head == self._capacity:
            return False
        Py_INCREF(item)
        self._slots[tail & self._mask] = <PyObject*>item
        self._tail = tail + 1
        return True

    def pop(self, default=None, /, *, timeout=None):
        """Remove and return the oldest item, or ``default`` when the ring is empty. Consumer only.

        With ``timeout`` (seconds) wait that long for an item when the ring is empty: a short spin
        that yields the GIL, then sleeps backing off up to 1 ms. None (the default) never waits.
        """
        cdef size_t head = self._head
        if timeout is not None:
            if not self._wait_for_item(_waiting.deadline(timeout)):
                return default
            head = self._head
        elif head == self._tail:
            return default
        cdef size_t index = head & self._mask
        item = <object>self._slots[index]
        Py_DECREF(item)  # the slot's reference; `item` holds its own
        self._slots[index] = NULL
        self._head = head + 1
        return item

    cdef bint _wait_for_item(self, object until) except -1:
        cdef Py_ssize_t attempt = 0
        while self._head == self._tail:
            if not _waiting.pause(until, attempt):
                return False
            attempt += 1
        return True

    def peek(self, default=None, /):
        """Return the oldest item without removing it, or ``default`` when empty. Consumer only."""
        cdef size_t head = self._head
        if head == self._tail:
            return default
        return <object>self._slots[head & self._mask]

    def push_many(self, items, /):
        """Append items from ``items`` in order until the ring is full; return how many were taken.

        No item beyond the returned count is consumed from an iterator. A list or tuple is
        published at once, after its last item is stored. From any other iterable each item is
        published as soon as it is stored and the positions are re-read after every ``next()``,
        so the iterator may itself push or pop this ring; if it fills the ring, the item it
        returned cannot be stored and ``RuntimeError`` is raised (the items before stay pushed).
        Producer only.
        """
        cdef size_t tail = self._tail
        cdef size_t free_slots = self._capacity - (tail - self._head)
        cdef size_t count = 0
        cdef Py_ssize_t i, n
        cdef PyObject** source
        cdef PyObject* p
        if type(items) is list or type(items) is tuple:
            seq = PySequence_Fast(items, "items")
            n = PySequence_Fast_GET_SIZE(seq)
            if <size_t>n > free_slots:
                n = free_slots
            source = PySequence_Fast_ITEMS(seq)
            for i in range(n):
                p = source[i]
                Py_INCREF(<object>p)
                self._slots[(tail + i) & self._mask] = p
            self._tail = tail + n
            return n
        iterator = iter(items)
        while self._tail - self._head < self._capacity:
            try:
                item = next(iterator)
            except StopIteration:
                break
            tail = self._tail  # next() ran Python code: it may have pushed or popped
            if tail - self._head >= self._capacity:
                raise RuntimeError(
                    "push_many's iterator filled the ring itself: the item it returned was not stored")
            Py_INCREF(item)
            self._slots[tail & self._mask] = <PyObject*>item
            self._tail = tail + 1
            count += 1
        return count

    def pop_many(self, max_items=None, /):
        """Remove and return up to ``max_items`` oldest items (all when None), oldest first. Consumer only.

        A ``max_items`` above 2**30 (more than any ring holds) means all of them.
        """
        cdef Py_ssize_t limit = _limit(max_items, "max_items") if max_items is not None else -1
        cdef size_t head, count
        cdef size_t i, index
        while True:
            head = self._head
            count = self._tail - head
            if limit >= 0 and <size_t>limit < count:
                count = limit
            result = PyList_New(count)  # may run the collector, and a finaliser may pop this ring
            if self._head == head and self._tail - head >= count:
                break  # positions unchanged: the slots are still ours; nothing below runs Python
        for i in range(count):
            index = (head + i) & self._mask
            PyList_SET_ITEM(result, i, <object>self._slots[index])  # steals the slot's reference
            self._slots[index] = NULL
        self._head = head + count
        return result

    def clear(self):
        """Drop every item the ring holds. Consumer only.

        Items pushed by finalisers that ``clear`` itself runs stay in the ring, and a finaliser
        that pops is allowed: the loop ends at the tail seen on entry or as soon as the ring is empty.
        """
        cdef size_t stop = self._tail
        cdef size_t head
        cdef PyObject* p
        while True:
            head = self._head
            if head == self._tail or <Py_ssize_t>(stop - head) <= 0:
                break
            # Unlink before the decref: a finaliser may run Python code, even this ring's.
            p = self._slots[head & self._mask]
            self._slots[head & self._mask] = NULL
            self._head = head + 1
            Py_XDECREF(p)


cdef extern from "numpy/arrayobject.h":
    # Declared here because numpy's .pxd leaves it out: with a NULL base it returns a scalar
    # that owns a copy of the record.
    object _scalar_copy "PyArray_Scalar"(void* data, cnp.dtype descr, PyObject* base)


_STRUCT_CODES = {("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q", ("u", 1): "B", ("u", 2): "H",
                 ("u", 4): "I", ("u", 8): "Q", ("f", 4): "f", ("f", 8): "d"}


def _record_struct(dtype):
    """Return a struct.Struct laying out one record of ``dtype``, or None when it cannot.

    Only plain native integer and float fields in offset order qualify. ``push`` packs a tuple
    (or one Python number) with it and falls back to numpy whenever struct refuses a value, so
    the result is always what numpy's own conversion gives.
    """
    fields = [(dtype, 0)] if dtype.fields is None else [dtype.fields[name][:2] for name in dtype.names]
    parts = []
    position = 0
    for field_type, offset in fields:
        code = _STRUCT_CODES.get((field_type.kind, field_type.itemsize))
        if code is None or field_type.byteorder not in "=|" or field_type.shape or offset < position:
            return None
        if offset > position:
            parts.append(f"{offset - position}x")
        parts.append(code)
        position = offset + field_type.itemsize
    if dtype.itemsize > position:
        parts.append(f"{dtype.itemsize - position}x")
    return _struct.Struct("=" + "".join(parts))


cdef inline cnp.ndarray _checked_array(object array, cnp.dtype dtype, str name, bint writable):
    # What the copies trust is the array's C struct (descr, ndim, dims, strides, flags), never a
    # Python attribute a subclass can override. A plain ndarray is checked here in C; anything else
    # goes through the shared check, which raises the common error or returns a plain ndarray view.
    cdef cnp.ndarray checked
    if type(array) is not np.ndarray:
        array = _v.record_array(array, dtype, name, writable)
        if type(array) is not np.ndarray:
            raise TypeError(f"{name} must be a numpy.ndarray of dtype {dtype}")
    checked = <cnp.ndarray>array
    if (cnp.PyArray_NDIM(checked) == 1
            and <size_t>cnp.PyArray_ITEMSIZE(checked) == <size_t>dtype.itemsize
            and cnp.PyArray_EquivTypes(<cnp.dtype>cnp.PyArray_DESCR(checked), dtype)
            and (not writable or cnp.PyArray_ISWRITEABLE(checked))):
        return checked
    _v.record_array(array, dtype, name, writable)  # raises the error both backends share
    raise TypeError(f"{name} must be a one-dimensional numpy.ndarray of dtype {dtype}")


@cython.final
@cython.no_gc_clear  # finalisers of a collected cycle may still use the ring: keep its storage
@cython.auto_pickle(False)
cdef class RecordRing:
    """RecordRing(dtype, capacity)
--

Bounded FIFO of fixed-size records of a numpy ``dtype``, in one preallocated array.

    ``dtype`` is a scalar dtype such as ``"i8"`` or a structured one such as
    ``[("ts", "i8"), ("px", "f8"), ("qty", "i4")]``; ``capacity`` is rounded up to a power of two.
    One producer thread (``push``, ``write``) and one consumer thread (``pop``, ``read``,
    ``read_into``) may use it at once. ``write`` and ``read`` copy whole batches with at most two
    block copies each.

    Arrays handed to ``write`` and ``read_into`` may be any one-dimensional ``numpy.ndarray`` of
    exactly this dtype, contiguous or strided (a view such as ``a[::2]`` or ``a[::-1]``); their
    dtype, length, strides and writability are taken from the array itself, never from attributes
    a subclass overrides. Re-entrancy: ``push`` guards its conversion (code it runs, such as a
    ``__float__``, that pushes to this ring raises ``RuntimeError``); the consumer methods re-read
    the positions after every allocation, so a finaliser may pop meanwhile.
    """

    cdef cnp.ndarray _records
    cdef object _pin  # a weak reference to _records: numpy refuses to resize an array that has one
    cdef cnp.dtype _dtype
    cdef object _packer  # struct.Struct for the fast tuple path, or None
    cdef object _view  # writable memoryview of the records, for the packer
    cdef Py_ssize_t _nfields
    cdef char* _data
    cdef size_t _itemsize
    cdef size_t _capacity
    cdef size_t _mask
    cdef size_t _head
    cdef size_t _tail
    cdef bint _structured
    cdef bint _scalar_by_value  # numpy scalars of this dtype hold their value inline (bool, numbers)
    cdef bint _producing  # set while push runs a conversion that may call Python code

    def __cinit__(self, dtype, capacity):
        record_type = _v.record_dtype(dtype)
        cdef size_t size = _v.ring_capacity(capacity, "capacity")
        self._records = np.zeros(size, dtype=record_type)
        # _data points into this array for the ring's lifetime: it must never move or shrink.
        self._pin = _weakref.ref(self._records)
        self._dtype = record_type
        self._structured = record_type.fields is not None
        self._scalar_by_value = (<cnp.dtype>record_type).type_num <= cnp.NPY_CLONGDOUBLE
        self._nfields = len(record_type.names) if self._structured else 1
        self._packer = _record_struct(record_type)
        # Bytes, not records: a memoryview of the records fails for dtypes the buffer protocol
        # cannot describe (datetime64...), and only the packer's plain number fields need it.
        self._view = memoryview(self._records.view(np.uint8)) if self._packer is not None else None
        self._data = <char*>cnp.PyArray_DATA(self._records)
        self._itemsize = record_type.itemsize
        self._capacity = size
        self._mask = size - 1

    @property
    def capacity(self):
        """The number of records the ring holds when full (a power of two)."""
        return self._capacity

    @property
    def dtype(self):
        """The numpy dtype of one record."""
        return self._dtype

    def __len__(self):
        return self._tail - self._head

    def __repr__(self):
        return f"RecordRing(dtype={self._dtype}, capacity={self._capacity}, len={self._tail - self._head})"

    def empty(self):
        """Return True when the ring holds no record."""
        return self._head == self._tail

    def full(self):
        """Return True when the ring holds ``capacity`` records."""
        return self._tail - self._head == self._capacity

    def push(self, record, /):
        """Append one record (anything numpy converts to the dtype); False when full. Producer only.

        A conversion that runs Python code (``__float__``, ``__index__``...) must not push to this
        ring: that raises ``RuntimeError`` and nothing is stored.
        """
        cdef size_t tail = self._tail
        if tail - self._head == self._capacity:
            return False
        cdef size_t index = tail & self._mask
        if self._producing:
            raise RuntimeError("RecordRing.push re-entered from a conversion it ran: push from one place at a time")
        self._producing = True
        try:
            if not self._pack(record, index):
                self._records[index] = record  # numpy's conversion, and numpy's errors
        finally:
            self._producing = False
        if self._tail != tail:  # another producer pushed meanwhile (misuse): do not publish over it
            raise RuntimeError("RecordRing.push raced another producer: the record was not stored")
        self._tail = tail + 1
        return True

    cdef bint _pack(self, record, size_t index) except -1:
        # Fast paths that give exactly the bytes numpy's assignment would; False: use numpy.
        cdef char* dest = self._data + index * self._itemsize
        cdef void* source
        cdef cnp.dtype descr
        if isinstance(record, np.generic):
            descr = cnp.PyArray_DescrFromScalar(record)
            if not cnp.PyArray_EquivTypes(descr, self._dtype) or <size_t>descr.itemsize != self._itemsize:
                return False
            if self._scalar_by_value:
                cnp.PyArray_ScalarAsCtype(record, dest)  # a numeric scalar copies its value
                return True
            if descr.type_num == cnp.NPY_VOID:
                cnp.PyArray_ScalarAsCtype(record, &source)  # a void scalar gives its data pointer
                memcpy(dest, source, self._itemsize)
                return True
            return False  # bytes, str, datetime...: numpy converts them
        if self._packer is None:
            return False
        try:
            if self._structured:
                if type(record) is not tuple or len(<tuple>record) != self._nfields:
                    return False
                self._packer.pack_into(self._view, index * self._itemsize, *record)
            elif type(record) is int or type(record) is float:
                self._packer.pack_into(self._view, index * self._itemsize, record)
            else:
                return False
        except (_struct.error, OverflowError, TypeError, ValueError):
            return False
        return True

    def pop(self, default=None, /):
        """Remove and return the oldest record as numpy gives it, or ``default`` when empty.

        A scalar dtype gives a numpy scalar, a structured one a ``numpy.void`` copy that stays valid
        after the slot is reused. Consumer only.
        """
        cdef size_t head
        while True:
            head = self._head
            if head == self._tail:
                return default
            record = _scalar_copy(self._data + (head & self._mask) * self._itemsize, self._dtype, NULL)
            if self._head == head:  # the allocation may have run a finaliser that popped
                break
        self._head = head + 1
        return record

    def write(self, array, /):
        """Copy as many leading records of ``array`` as fit; return how many. Producer only.

        ``array`` must be a one-dimensional numpy array of exactly this ring's dtype (another dtype
        raises ``TypeError``); it may be strided.
        """
        cdef cnp.ndarray source = _checked_array(array, self._dtype, "array", False)
        if self._producing:
            raise RuntimeError("RecordRing.write re-entered from a conversion push ran")
        cdef size_t tail = self._tail
        cdef size_t count = <size_t>cnp.PyArray_DIM(source, 0)
        cdef size_t free_slots = self._capacity - (tail - self._head)
        cdef size_t start, first, i
        cdef Py_ssize_t stride = cnp.PyArray_STRIDE(source, 0)
        cdef char* src = <char*>cnp.PyArray_DATA(source)
        if count > free_slots:
            count = free_slots
        if stride == <Py_ssize_t>self._itemsize or count <= 1:
            start = tail & self._mask
            first = self._capacity - start
            if first > count:
                first = count
            memcpy(self._data + start * self._itemsize, src, first * self._itemsize)
            if count > first:
                memcpy(self._data, src + first * self._itemsize, (count - first) * self._itemsize)
        else:
            for i in range(count):
                memcpy(self._data + ((tail + i) & self._mask) * self._itemsize, src + <Py_ssize_t>i * stride,
                       self._itemsize)
        self._tail = tail + count
        return count

    def read(self, max_records=None, /):
        """Remove up to ``max_records`` records (all when None); return them as a new array, oldest first.

        A ``max_records`` above 2**30 (more than any ring holds) means all of them. Consumer only.
        """
        cdef Py_ssize_t limit = _limit(max_records, "max_records") if max_records is not None else -1
        cdef size_t head, count
        cdef cnp.ndarray out
        while True:
            head = self._head
            count = self._tail - head
            if limit >= 0 and <size_t>limit < count:
                count = limit
            out = np.empty(count, dtype=self._dtype)
            if self._head == head and self._tail - head >= count:
                break  # the allocation ran no finaliser that popped: the records are still ours
        self._copy_out(head, count, <char*>cnp.PyArray_DATA(out), <Py_ssize_t>self._itemsize)
        self._head = head + count
        return out

    def read_into(self, out, /):
        """Move up to ``len(out)`` oldest records into ``out``; return how many. Consumer only.

        ``out`` must be a writable one-dimensional array of this ring's dtype; it may be strided.
        """
        cdef cnp.ndarray target = _checked_array(out, self._dtype, "out", True)
        cdef size_t head = self._head
        cdef size_t count = self._tail - head
        if <size_t>cnp.PyArray_DIM(target, 0) < count:
            count = <size_t>cnp.PyArray_DIM(target, 0)
        if count == 0:
            return 0
        self._copy_out(head, count, <char*>cnp.PyArray_DATA(target), cnp.PyArray_STRIDE(target, 0))
        self._head = head + count
        return count

    cdef void _copy_out(self, size_t head, size_t count, char* dest, Py_ssize_t stride) noexcept:
        cdef size_t start = head & self._mask
        cdef size_t first = self._capacity - start
        cdef size_t i
        if stride != <Py_ssize_t>self._itemsize and count > 1:
            for i in range(count):
                memcpy(dest + <Py_ssize_t>i * stride, self._data + ((head + i) & self._mask) * self._itemsize,
                       self._itemsize)
            return
        if first > count:
            first = count
        memcpy(dest, self._data + start * self._itemsize, first * self._itemsize)
        if count > first:
            memcpy(dest + first * self._itemsize, self._data, (count - first) * self._itemsize)


@cython.final
@cython.freelist(16)
@cython.auto_pickle(False)
cdef class _Borrow:
    """Context manager returned by ``ObjectPool.borrow()``: acquire on enter, release on exit."""

    cdef ObjectPool _pool
    cdef object _item
    cdef bint _entered

    def __cinit__(self, ObjectPool pool not None):
        self._pool = pool

    def __enter__(self):
        if self._entered:
            raise RuntimeError("this borrow() context is already entered")
        self._item = self._pool._acquire()
        self._entered = True
        return self._item

    def __exit__(self, exc_type, exc, tb):
        if self._entered:
            item = self._item
            self._item = None
            self._entered = False
            self._pool._release(item)
        return False


cdef inline size_t _pointer_hash(void* p, int shift) noexcept nogil:
    # Fibonacci hashing of the address: objects are 16-byte aligned, the multiply spreads the rest.
    return (<size_t>p * <size_t>0x9E3779B97F4A7C15ULL) >> shift


@cython.final
@cython.no_gc_clear
@cython.auto_pickle(False)
cdef class ObjectPool:
    """ObjectPool(factory, size, *, reset=None, max_size=None)
--

Pool of reusable objects made by ``factory()``; ``size`` of them are made up front.

    ``acquire()`` hands out a pooled object, or when none is left a new ``factory()`` one (counted
    in ``.allocated``) unless ``max_size`` objects exist already: then it raises
    ``PoolExhausted``. ``release(obj)`` calls ``reset(obj)`` when given and takes the object back.
    Objects are tracked by identity, so they need not be hashable. One thread at a time.

    Re-entrancy: ``factory`` and ``reset`` may use this pool; the pool re-checks its state after
    calling them. If its internals are tampered with from outside (say through
    ``gc.get_referents``), every method raises ``RuntimeError`` instead of misbehaving.
    """

    cdef object _factory
    cdef object _reset
    cdef int64_t _max_size
    # Every object the pool made, by index, in a list the cycle collector can see (a pooled
    # object that refers back to its pool must not make the pair immortal). The pool keeps them
    # alive, so an address can never be reused by another object: an identity table is exact.
    cdef list _objects
    cdef Py_ssize_t _count
    cdef Py_ssize_t _room
    cdef Py_ssize_t* _free  # stack of free indices
    cdef Py_ssize_t _nfree
    cdef unsigned char* _out  # 1 while handed out
    cdef Py_ssize_t* _table  # open addressing: address -> index, -1 when empty
    cdef int _shift
    cdef size_t _table_mask
    cdef Py_ssize_t _allocated
    # A borrow() context kept for reuse: handed out again only while nothing but the pool holds
    # it, which saves a third of a `with pool.borrow()` block.
    cdef _Borrow _spare

    def __cinit__(self, factory, size, *, reset=None, max_size=None):
        if not callable(factory):
            raise TypeError(f"factory must be callable, not {type(factory).__name__}")
        cdef Py_ssize_t count = _v.bounded_count(size, "size", 0)
        self._reset = _v.callable_or_none(reset, "reset")
        if max_size is None:
            self._max_size = -1
        else:
            self._max_size = _v.bounded_count(max_size, "max_size", max(count, 1), _v.INT64_MAX)
        self._factory = factory
        self._objects = []
        self._grow(count if count > 8 else 8)
        cdef Py_ssize_t i
        for i in range(count):
            self._adopt(factory())
        for i in range(count):
            self._free[i] = count - 1 - i
        self._nfree = count

    def __dealloc__(self):
        free(self._free)
        free(self._out)
        free(self._table)

    cdef int _grow(self, Py_ssize_t room) except -1:
        cdef Py_ssize_t i
        cdef size_t table_size = 16
        cdef int bits = 4
        cdef void* p
        p = realloc(self._free, room * sizeof(Py_ssize_t))
        if p == NULL:
            raise MemoryError()
        self._free = <Py_ssize_t*>p
        p = realloc(self._out, room)
        if p == NULL:
            raise MemoryError()
        self._out = <unsigned char*>p
        self._room = room
        while table_size < <size_t>(2 * room):
            table_size <<= 1
            bits += 1
        p = malloc(table_size * sizeof(Py_ssize_t))
        if p == NULL:
            raise MemoryError()
        free(self._table)
        self._table = <Py_ssize_t*>p
        self._table_mask = table_size - 1
        self._shift = 64 - bits
        for i in range(<Py_ssize_t>table_size):
            self._table[i] = -1
        for i in range(self._count):
            self._insert(i)
        return 0

    cdef inline void _insert(self, Py_ssize_t index) noexcept:
        cdef size_t h = _pointer_hash(PyList_GET_ITEM(self._objects, index), self._shift)
        while self._table[h] != -1:
            h = (h + 1) & self._table_mask
        self._table[h] = index

    cdef inline Py_ssize_t _find(self, PyObject* p) noexcept:
        cdef size_t h = _pointer_hash(p, self._shift)
        cdef Py_ssize_t index = self._table[h]
        while index != -1:
            if index < PyList_GET_SIZE(self._objects) and PyList_GET_ITEM(self._objects, index) == p:
                return index
            h = (h + 1) & self._table_mask
            index = self._table[h]
        return -1

    cdef inline int _check_intact(self) except -1:
        # The object list is visible to the collector, so code from outside can reach and mutate
        # it; every index this pool trusts is below its recorded length.
        if type(self._objects) is not list or PyList_GET_SIZE(self._objects) != self._count:
            raise RuntimeError("this pool's internal list was changed from outside: the pool is unusable")
        return 0

    cdef Py_ssize_t _adopt(self, item) except -1:
        self._check_intact()
        if self._find(<PyObject*>item) != -1:
            raise ValueError("factory returned an object this pool already holds")
        if self._count == self._room:
            self._grow(2 * self._room)
        cdef Py_ssize_t index = self._count
        self._objects.append(item)
        self._out[index] = 0
        self._count = index + 1
        self._insert(index)
        return index

    @property
    def allocated(self):
        """How many objects ``acquire()`` had to make because the pool was empty."""
        return self._allocated

    @property
    def in_use(self):
        """How many objects are handed out now."""
        return self._count - self._nfree

    def __len__(self):
        return self._nfree

    def __repr__(self):
        return f"ObjectPool(available={self._nfree}, in_use={self._count - self._nfree}, allocated={self._allocated})"

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item)

    cdef inline object _acquire(self):
        cdef Py_ssize_t index
        self._check_intact()
        if self._nfree:
            self._nfree -= 1
            index = self._free[self._nfree]
        else:
            if 0 <= self._max_size <= self._count:
                raise PoolExhausted(f"all {self._count} objects of this pool are in use (max_size)")
            item = self._factory()  # may re-enter this pool: _adopt re-checks what it relies on
            index = self._adopt(item)
            self._allocated += 1
        self._out[index] = 1
        return <object>PyList_GET_ITEM(self._objects, index)

    cdef inline int _release(self, obj) except -1:
        self._check_intact()
        cdef Py_ssize_t index = self._find(<PyObject*>obj)
        if index < 0:
            raise ValueError("object was not handed out by this pool")
        if not self._out[index]:
            raise ValueError("object released twice: it is not in use")
        if self._reset is not None:
            self._reset(obj)
            self._check_intact()
            index = self._find(<PyObject*>obj)  # reset may have re-entered this pool
            if index < 0 or not self._out[index]:
                raise ValueError("object released twice: it is not in use")
        self._out[index] = 0
        self._free[self._nfree] = index
        self._nfree += 1
        return 0

    def acquire(self, *, timeout=None):
        """Return a free pooled object, making a new one when none is free.

        Raises ``PoolExhausted`` when none is free and ``max_size`` objects exist already. With
        ``timeout`` (seconds) first wait that long for another thread to release one (a short spin
        that yields the GIL, then sleeps backing off up to 1 ms); None (the default) never waits.
        """
        cdef object until
        cdef Py_ssize_t attempt = 0
        if timeout is not None:
            until = _waiting.deadline(timeout)
            while self._nfree == 0 and 0 <= self._max_size <= self._count:
                if not _waiting.pause(until, attempt):
                    break
                attempt += 1
        return self._acquire()

    def release(self, obj, /):
        """Take back ``obj``, calling ``reset(obj)`` first when a reset was given.

        Raises ``ValueError`` (pool unchanged) for an object this pool did not hand out or one
        released twice. If ``reset`` raises, the exception propagates and the object stays out.
        """
        self._release(obj)

    def borrow(self):
        """Return a context manager that acquires on enter and releases on exit, even on exceptions."""
        cdef _Borrow context = self._spare
        if context is not None and Py_REFCNT(context) == 2 and not context._entered:
            return context  # two references: the pool's and `context`: nobody else can reach it
        context = _Borrow.__new__(_Borrow, self)
        if self._spare is None:
            self._spare = context
        return context


@cython.final
@cython.auto_pickle(False)
cdef class RecordPool:
    """RecordPool(dtype, size)
--

``size`` slots of a numpy ``dtype`` in one array, handed out by index.

    ``acquire()`` returns a free slot's index (``PoolExhausted`` when none is free); the record is
    ``pool.records[index]``. ``release(index)`` frees it. One thread at a time; O(1) each.
    """

    cdef cnp.ndarray _records
    cdef Py_ssize_t _size
    cdef Py_ssize_t* _free
    cdef Py_ssize_t _nfree
    cdef unsigned char* _in_use

    def __cinit__(self, dtype, size):
        record_type = _v.record_dtype(dtype)
        cdef Py_ssize_t count = _v.bounded_count(size, "size", 1)
        self._records = np.zeros(count, dtype=record_type)
        self._free = <Py_ssize_t*>malloc(count * sizeof(Py_ssize_t))
        self._in_use = <unsigned char*>calloc(count, 1)
        if self._free == NULL or self._in_use == NULL:
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(count):
            self._free[i] = count - 1 - i
        self._size = count
        self._nfree = count

    def __dealloc__(self):
        free(self._free)
        free(self._in_use)

    @property
    def records(self):
        """The whole array of records; slot ``i`` is ``records[i]``."""
        return self._records

    def __len__(self):
        return self._nfree

    def __repr__(self):
        return f"RecordPool(dtype={self._records.dtype}, size={self._size}, free={self._nfree})"

    def acquire(self):
        """Return the index of a free slot; raise ``PoolExhausted`` when every slot is in use."""
        if self._nfree == 0:
            raise PoolExhausted(f"all {self._size} slots of this pool are in use")
        self._nfree -= 1
        cdef Py_ssize_t index = self._free[self._nfree]
        self._in_use[index] = 1
        return index

    def release(self, index, /):
        """Free slot ``index``; ``ValueError`` when it is out of range or already free."""
        cdef Py_ssize_t slot
        number = index if type(index) is int else _v.as_int(index, "index")
        if not 0 <= number < self._size:
            raise ValueError(f"index {number} is out of range for a pool of {self._size} slots")
        slot = number
        if not self._in_use[slot]:
            raise ValueError(f"slot {slot} is already free")
        self._in_use[slot] = 0
        self._free[self._nfree] = slot
        self._nfree += 1


cdef struct _Stamped:
    int64_t stamp  # ticks (see _ticks), or CLOCK_MONOTONIC ns when the caller gave the stamp
    PyObject* message
    bint given


@cython.final
@cython.auto_pickle(False)
cdef class TimestampedQueue:
    """TimestampedQueue(capacity=65536, *, histogram=None)
--

Bounded FIFO of messages stamped with their enqueue time and a sequence number.

    One producer thread (``enqueue``) and one consumer thread (``dequeue``). ``capacity`` is rounded
    up to a power of two. Sequence numbers and stamps live beside the message slots; when a
    ``histogram`` (anything with ``record(value_ns)``) is given, every dequeue records its latency
    there (a stamp in the future records 0). If ``record`` raises, the exception propagates and
    the message stays queued; the next ``dequeue`` delivers that message without recording it, so
    a failing histogram loses no message and never wedges the queue.

    Re-entrancy: ``dequeue`` guards the ``record`` call: a histogram that dequeues from this
    queue makes that inner call raise ``RuntimeError`` (and the outer one with it; nothing is
    lost). Every other method runs no Python code between reading and publishing a position.
    """

    cdef _Stamped* _slots
    cdef size_t _capacity
    cdef size_t _mask
    cdef size_t _head  # == dequeue count; consumer only
    cdef size_t _tail  # == enqueue count == next sequence number; producer only
    cdef size_t _drops  # producer only
    cdef object _histogram
    cdef bint _recording  # set while histogram.record() runs
    cdef int64_t _unrecorded  # the head position whose record() raised (delivered unrecorded next), or -1

    def __cinit__(self, capacity=65536, *, histogram=None):
        cdef size_t size = _v.ring_capacity(capacity, "capacity")
        self._histogram = _v.histogram_or_none(histogram)
        self._unrecorded = -1
        self._slots = <_Stamped*>calloc(size, sizeof(_Stamped))
        if self._slots == NULL:
            raise MemoryError()
        self._capacity = size
        self._mask = size - 1

    def __dealloc__(self):
        if self._slots != NULL:
            while self._head != self._tail:
                Py_XDECREF(self._slots[self._head & self._mask].message)
                self._head += 1
            free(self._slots)

    @property
    def capacity(self):
        """The number of messages the queue holds when full (a power of two)."""
        return self._capacity

    @property
    def stats(self):
        """Counters: ``{"enqueue_count", "dequeue_count", "drops"}``."""
        return {"enqueue_count": self._tail, "dequeue_count": self._head, "drops": self._drops}

    def __len__(self):
        return self._tail - self._head

    def __repr__(self):
        return f"TimestampedQueue(capacity={self._capacity}, len={self._tail - self._head})"

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item)

    def empty(self):
        """Return True when the queue holds no message."""
        return self._head == self._tail

    def full(self):
        """Return True when the queue holds ``capacity`` messages."""
        return self._tail - self._head == self._capacity

    def enqueue(self, message, /, timestamp_ns=None):
        """Stamp ``message`` (with ``now_ns()`` unless ``timestamp_ns`` is given) and append it.

        ``timestamp_ns`` is a ``now_ns()`` reading, between 0 and 2**62 (``ValueError`` outside).
        The message gets the next sequence number (0, 1, 2, ... over accepted messages). When the
        queue is full, return False and count a drop. Producer only.
        """
        cdef int64_t stamp
        cdef bint given = timestamp_ns is not None
        if given:
            stamp = _v.stamp_ns(timestamp_ns, "timestamp_ns")
        else:
            stamp = _ticks()
        cdef size_t tail = self._tail
        if tail - self._head == self._capacity:
            self._drops += 1
            return False
        cdef _Stamped* slot = &self._slots[tail & self._mask]
        Py_INCREF(message)
        slot.message = <PyObject*>message
        slot.stamp = stamp
        slot.given = given
        self._tail = tail + 1
        return True

    cdef inline int64_t _latency(self, _Stamped* slot) noexcept:
        if slot.given:
            return _now() - slot.stamp
        return _elapsed_ns(_ticks() - slot.stamp)

    def peek(self):
        """Return what ``dequeue`` would, ``(seq, message, queue_latency_ns)``, without removing it.

        None when empty. Nothing is recorded in the histogram. Consumer only.
        """
        cdef size_t head = self._head
        if head == self._tail:
            return None
        cdef _Stamped* slot = &self._slots[head & self._mask]
        return (head, <object>slot.message, self._latency(slot))

    def dequeue(self, *, timeout=None):
        """Remove the oldest message; return ``(seq, message, queue_latency_ns)`` or None when empty.

        The latency is ``now_ns()`` minus the enqueue stamp. With ``timeout`` (seconds) wait that
        long for a message when empty (a short spin that yields the GIL, then sleeps backing off
        up to 1 ms); None (the default) never waits. Consumer only.
        """
        cdef size_t head = self._head
        cdef Py_ssize_t attempt = 0
        if timeout is not None:
            until = _waiting.deadline(timeout)
            while self._head == self._tail:
                if not _waiting.pause(until, attempt):
                    return None
                attempt += 1
            head = self._head
        elif head == self._tail:
            return None
        cdef _Stamped* slot = &self._slots[head & self._mask]
        cdef int64_t latency = self._latency(slot)
        if self._histogram is not None and <int64_t>head != self._unrecorded:
            if self._recording:
                raise RuntimeError("TimestampedQueue.dequeue re-entered from its histogram's record()")
            # Before the message leaves: if record() raises, the message stays queued (once).
            self._recording = True
            try:
                self._histogram.record(latency if latency > 0 else 0)
            except BaseException:
                self._unrecorded = head
                raise
            finally:
                self._recording = False
            slot = &self._slots[head & self._mask]
        message = <object>slot.message
        Py_DECREF(message)  # the slot's reference; `message` holds its own
        slot.message = NULL
        self._head = head + 1
        return (head, message, latency)


cdef struct _Entry:
    int64_t priority
    uint64_t sequence
    int64_t stamp
    PyObject* message


cdef inline bint _before(_Entry* a, _Entry* b) noexcept nogil:
    return a.priority < b.priority or (a.priority == b.priority and a.sequence < b.sequence)


@cython.final
@cython.auto_pickle(False)
cdef class PriorityQueue:
    """PriorityQueue(capacity=None)
--

Priority queue of messages: lowest ``priority`` first, FIFO among equal priorities.

    A binary heap, O(log n) per operation. ``capacity`` None means unbounded; otherwise
    ``enqueue`` returns False when full. Each message is stamped on enqueue. One thread at a time
    (``dequeue(timeout=...)`` waits for another thread's ``enqueue``). No method runs Python code
    between reading and updating the heap, so finalisers may use the queue at any time.
    """

    cdef _Entry* _heap
    cdef Py_ssize_t _len
    cdef Py_ssize_t _room
    cdef Py_ssize_t _capacity  # -1: unbounded
    cdef uint64_t _sequence

    def __cinit__(self, capacity=None):
        self._capacity = -1 if capacity is None else _v.bounded_count(capacity, "capacity", 1)
        self._room = 64 if self._capacity < 0 or self._capacity > 64 else self._capacity
        self._heap = <_Entry*>malloc(self._room * sizeof(_Entry))
        if self._heap == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._heap != NULL:
            for i in range(self._len):
                Py_XDECREF(self._heap[i].message)
            free(self._heap)

    @property
    def capacity(self):
        """The bound on the number of messages, or None when unbounded."""
        return None if self._capacity < 0 else self._capacity

    def __len__(self):
        return self._len

    def __repr__(self):
        return f"PriorityQueue(capacity={self.capacity}, len={self._len})"

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item)

    def empty(self):
        """Return True when the queue holds no message."""
        return self._len == 0

    def full(self):
        """Return True when the queue is bounded and holds ``capacity`` messages."""
        return self._len == self._capacity

    def peek(self):
        """Return what ``dequeue`` would, ``(priority, message, latency_ns)``, without removing it; None when empty."""
        if self._len == 0:
            return None
        cdef _Entry* top = &self._heap[0]
        return (top.priority, <object>top.message, _elapsed_ns(_ticks() - top.stamp))

    def enqueue(self, priority, message, /):
        """Add ``message`` with int ``priority`` (lower leaves first); False when bounded and full."""
        cdef int64_t key
        if type(priority) is int:
            try:
                key = priority
            except OverflowError:
                key = _v.as_int64(priority, "priority")  # raises ValueError naming the argument
        else:
            key = _v.as_int64(priority, "priority")
        if self._len == self._capacity:
            return False
        cdef Py_ssize_t room
        cdef void* p
        if self._len == self._room:
            room = self._room * 2
            if self._capacity >= 0 and room > self._capacity:
                room = self._capacity
            p = realloc(self._heap, room * sizeof(_Entry))
            if p == NULL:
                raise MemoryError()
            self._heap = <_Entry*>p
            self._room = room
        cdef _Entry entry
        entry.priority = key
        entry.sequence = self._sequence
        entry.stamp = _ticks()
        entry.message = <PyObject*>message
        Py_INCREF(message)
        self._sequence += 1
        # Sift up with a hole: move parents down until the entry's place is found.
        cdef _Entry* heap = self._heap
        cdef Py_ssize_t pos = self._len
        cdef Py_ssize_t parent
        while pos > 0:
            parent = (pos - 1) >> 1
            if not _before(&entry, &heap[parent]):
                break
            heap[pos] = heap[parent]
            pos = parent
        heap[pos] = entry
        self._len += 1
        return True

    def dequeue(self, *, timeout=None):
        """Remove the first message; return ``(priority, message, latency_ns)`` or None when empty.

        With ``timeout`` (seconds) wait that long for a message when empty (a short spin that
        yields the GIL, then sleeps backing off up to 1 ms); None (the default) never waits.
        """
        cdef Py_ssize_t attempt = 0
        if timeout is not None:
            until = _waiting.deadline(timeout)
            while self._len == 0:
                if not _waiting.pause(until, attempt):
                    return None
                attempt += 1
        elif self._len == 0:
            return None
        cdef _Entry* heap = self._heap
        cdef _Entry top = heap[0]
        cdef Py_ssize_t n = self._len - 1
        cdef _Entry last = heap[n]
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t child
        self._len = n
        # Sift the last entry down from the root with a hole.
        while True:
            child = 2 * pos + 1
            if child >= n:
                break
            if child + 1 < n and _before(&heap[child + 1], &heap[child]):
                child += 1
            if not _before(&heap[child], &last):
                break
            heap[pos] = heap[child]
            pos = child
        if n > 0:
            heap[pos] = last
        message = <object>top.message
        Py_DECREF(message)  # the heap's reference; `message` holds its own
        return (top.priority, message, _elapsed_ns(_ticks() - top.stamp))
