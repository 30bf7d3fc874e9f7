"""Pure-Python twin of :mod:`lowlat.containers._c`: the same names, signatures, errors and docstrings.

This module is the source of truth for the public interface; the compiled core mirrors it. Each
container is safe for the threading pattern its docstring names *because of the GIL*: every
position update is a single attribute store, made after the slot it publishes is written.
"""

from __future__ import annotations

import heapq as _heapq
import time as _time
import weakref as _weakref
from types import GenericAlias as _GenericAlias
from typing import Any, Callable, Iterable, Literal, NoReturn, Optional, Protocol, SupportsIndex

import numpy as np

from .. import _validate as _v, _waiting
from .._errors import PoolExhausted
from .._twins import Final as _Final

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

_now = _time.perf_counter_ns


def now_ns() -> int:
    """Return the current time in nanoseconds on the clock of ``time.perf_counter_ns()``."""
    return _now()


def _not_picklable(self: object, protocol: SupportsIndex = 0) -> NoReturn:
    raise TypeError(f"cannot pickle {type(self).__name__!r} object")


def _generic_alias(cls: type[Any], item: Any) -> _GenericAlias:
    return _GenericAlias(cls, item)


class _Recorder(Protocol):
    """What a ``TimestampedQueue`` histogram must have: ``record(value_ns)``."""

    def record(self, value_ns: int, /) -> object: ...


class SpscRing(_Final):
    """Bounded FIFO of Python objects for one producer thread and one consumer thread.

    ``capacity`` is rounded up to a power of two and the ring holds exactly that many items.
    The producer thread may call ``push`` and ``push_many``; the consumer thread ``pop``,
    ``pop_many``, ``peek`` and ``clear``; both may use ``len()``. With one thread of each, nothing
    is lost, duplicated or reordered. Every operation is O(1) per item and never blocks unless
    given a ``timeout``. The ring holds no reference to an item once it has been popped.

    Re-entrancy: every method that can run Python code (a finaliser on a decref or an allocation,
    an iterator) re-reads the positions after it, so such code may push or pop this same ring;
    misuse by two producers or two consumers is undefined in meaning but never crashes.
    """

    __slots__ = ("_slots", "_capacity", "_mask", "_head", "_tail")
    __reduce_ex__ = _not_picklable
    __class_getitem__ = classmethod(_generic_alias)

    def __init__(self, capacity: int) -> None:
        size = _v.ring_capacity(capacity, "capacity")
        self._slots: list[Any] = [None] * size
        self._capacity = size
        self._mask = size - 1
        self._head = 0  # next position to pop: written by the consumer only
        self._tail = 0  # next position to push: written by the producer only

    @property
    def capacity(self) -> int:
        """The number of items the ring holds when full (a power of two)."""
        return self._capacity

    def __len__(self) -> int:
        return self._tail - self._head

    def __repr__(self) -> str:
        return f"SpscRing(capacity={self._capacity}, len={self._tail - self._head})"

    def empty(self) -> bool:
        """Return True when the ring holds no item."""
        return self._head == self._tail

    def full(self) -> bool:
        """Return True when the ring holds ``capacity`` items."""
        return self._tail - self._head == self._capacity

    def push(self, item: Any, /) -> bool:
        """Append ``item``; return False and store nothing when the ring is full. Producer only."""
        tail = self._tail
        if tail - self._head == self._capacity:
            return False
        self._slots[tail & self._mask] = item
        self._tail = tail + 1
        return True

    def pop(self, default: Any = None, /, *, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest item, or ``default`` when the ring is empty. Consumer only.

        With ``timeout`` (seconds) wait that long for an item when the ring is empty: a short spin
        that yields the GIL, then sleeps backing off up to 1 ms. None (the default) never waits.
        """
        head = self._head
        if timeout is not None:
            until = _waiting.deadline(timeout)
            attempt = 0
            while self._head == self._tail:
                if not _waiting.pause(until, attempt):
                    return default
                attempt += 1
            head = self._head
        elif head == self._tail:
            return default
        slots = self._slots
        index = head & self._mask
        item = slots[index]
        slots[index] = None
        self._head = head + 1
        return item

    def peek(self, default: Any = None, /) -> Any:
        """Return the oldest item without removing it, or ``default`` when empty. Consumer only."""
        head = self._head
        if head == self._tail:
            return default
        return self._slots[head & self._mask]

    def push_many(self, items: Iterable[Any], /) -> int:
        """Append items from ``items`` in order until the ring is full; return how many were taken.

        No item beyond the returned count is consumed from an iterator. A list or tuple is
        published at once, after its last item is stored. From any other iterable each item is
        published as soon as it is stored and the positions are re-read after every ``next()``,
        so the iterator may itself push or pop this ring; if it fills the ring, the item it
        returned cannot be stored and ``RuntimeError`` is raised (the items before stay pushed).
        Producer only.
        """
        capacity, mask, slots = self._capacity, self._mask, self._slots
        if type(items) is list or type(items) is tuple:
            while True:
                tail = self._tail
                count = min(len(items), capacity - (tail - self._head))
                start = tail & mask
                first = min(count, capacity - start)
                head_part = items[:first]  # copies may run the collector: positions re-read below
                rest_part = items[first:count]
                if self._tail == tail:
                    break
            slots[start : start + first] = head_part
            if rest_part:
                slots[: count - first] = rest_part
            self._tail = tail + count
            return count
        iterator = iter(items)
        count = 0
        while self._tail - self._head < capacity:
            try:
                item = next(iterator)
            except StopIteration:
                break
            tail = self._tail  # next() ran Python code: it may have pushed or popped
            if tail - self._head >= capacity:
                raise RuntimeError(
                    "push_many's iterator filled the ring itself: the item it returned was not stored")
            slots[tail & mask] = item
            self._tail = tail + 1
            count += 1
        return count

    def pop_many(self, max_items: Optional[int] = None, /) -> list:
        """Remove and return up to ``max_items`` oldest items (all when None), oldest first. Consumer only.

        A ``max_items`` above 2**30 (more than any ring holds) means all of them.
        """
        limit = _v.batch_limit(max_items, "max_items")
        slots = self._slots
        while True:
            head = self._head
            count = self._tail - head
            if 0 <= limit < count:
                count = limit
            start = head & self._mask
            first = min(count, self._capacity - start)
            rest = count - first
            items = slots[start : start + first]  # allocations may run a finaliser that pops
            if rest:
                items += slots[:rest]
            blanks = [None] * first
            blanks_rest = [None] * rest if rest else blanks
            if self._head == head and self._tail - head >= count:
                break  # nothing popped meanwhile: below, no allocation runs the collector
        slots[start : start + first] = blanks
        if rest:
            slots[:rest] = blanks_rest
        self._head = head + count
        return items

    def clear(self) -> None:
        """Drop every item the ring holds. Consumer only.

        Items pushed by finalisers that ``clear`` itself runs stay in the ring, and a finaliser
        that pops is allowed: the loop ends at the tail seen on entry or as soon as the ring is empty.
        """
        stop = self._tail
        slots, mask = self._slots, self._mask
        while True:
            head = self._head
            if head == self._tail or stop - head <= 0:
                break
            # Unlink before the decref: a finaliser may run Python code, even this ring's.
            item = slots[head & mask]
            slots[head & mask] = None
            self._head = head + 1
            del item


class RecordRing(_Final):
    """Bounded FIFO of fixed-size records of a numpy ``dtype``, in one preallocated array.

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

    __slots__ = ("_records", "_pin", "_dtype", "_capacity", "_mask", "_head", "_tail", "_structured", "_producing")
    __reduce_ex__ = _not_picklable

    def __init__(self, dtype: Any, capacity: int) -> None:
        record_type = _v.record_dtype(dtype)
        size = _v.ring_capacity(capacity, "capacity")
        self._records = np.zeros(size, dtype=record_type)
        self._pin = _weakref.ref(self._records)  # numpy refuses to resize an array with a weak reference
        self._dtype = record_type
        self._structured = record_type.fields is not None
        self._capacity = size
        self._mask = size - 1
        self._head = 0
        self._tail = 0
        self._producing = False  # set while push or write runs code that may call Python

    @property
    def capacity(self) -> int:
        """The number of records the ring holds when full (a power of two)."""
        return self._capacity

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of one record."""
        return self._dtype

    def __len__(self) -> int:
        return self._tail - self._head

    def __repr__(self) -> str:
        return f"RecordRing(dtype={self._dtype}, capacity={self._capacity}, len={self._tail - self._head})"

    def empty(self) -> bool:
        """Return True when the ring holds no record."""
        return self._head == self._tail

    def full(self) -> bool:
        """Return True when the ring holds ``capacity`` records."""
        return self._tail - self._head == self._capacity

    def push(self, record: Any, /) -> bool:
        """Append one record (anything numpy converts to the dtype); False when full. Producer only.

        A conversion that runs Python code (``__float__``, ``__index__``...) must not push to this
        ring: that raises ``RuntimeError`` and nothing is stored.
        """
        tail = self._tail
        if tail - self._head == self._capacity:
            return False
        if self._producing:
            raise RuntimeError("RecordRing.push re-entered from a conversion it ran: push from one place at a time")
        self._producing = True
        try:
            self._records[tail & self._mask] = record
        finally:
            self._producing = False
        if self._tail != tail:  # another producer pushed meanwhile (misuse): do not publish over it
            raise RuntimeError("RecordRing.push raced another producer: the record was not stored")
        self._tail = tail + 1
        return True

    def pop(self, default: Any = None, /) -> Any:
        """Remove and return the oldest record as numpy gives it, or ``default`` when empty.

        A scalar dtype gives a numpy scalar, a structured one a ``numpy.void`` copy that stays valid
        after the slot is reused. Consumer only.
        """
        while True:
            head = self._head
            if head == self._tail:
                return default
            record = self._records[head & self._mask]
            if self._structured:
                record = record.copy()
            if self._head == head:  # the allocations may have run a finaliser that popped
                break
        self._head = head + 1
        return record

    def write(self, array: np.ndarray, /) -> int:
        """Copy as many leading records of ``array`` as fit; return how many. Producer only.

        ``array`` must be a one-dimensional numpy array of exactly this ring's dtype (another dtype
        raises ``TypeError``); it may be strided.
        """
        source = _v.record_array(array, self._dtype, "array")
        if self._producing:
            raise RuntimeError("RecordRing.write re-entered from a conversion push ran")
        tail = self._tail
        count = min(source.shape[0], self._capacity - (tail - self._head))
        start = tail & self._mask
        first = min(count, self._capacity - start)
        self._producing = True  # the copies allocate views: a finaliser must not push meanwhile
        try:
            self._records[start : start + first] = source[:first]
            if count > first:
                self._records[: count - first] = source[first:count]
        finally:
            self._producing = False
        self._tail = tail + count
        return count

    def read(self, max_records: Optional[int] = None, /) -> np.ndarray:
        """Remove up to ``max_records`` records (all when None); return them as a new array, oldest first.

        A ``max_records`` above 2**30 (more than any ring holds) means all of them. Consumer only.
        """
        limit = _v.batch_limit(max_records, "max_records")
        while True:
            head = self._head
            count = self._tail - head
            if 0 <= limit < count:
                count = limit
            out = np.empty(count, dtype=self._dtype)
            self._copy_out(head, count, out)
            if self._head == head:  # no finaliser popped while the copies allocated
                break
        self._head = head + count
        return out

    def read_into(self, out: np.ndarray, /) -> int:
        """Move up to ``len(out)`` oldest records into ``out``; return how many. Consumer only.

        ``out`` must be a writable one-dimensional array of this ring's dtype; it may be strided.
        """
        target = _v.record_array(out, self._dtype, "out", writable=True)
        while True:
            head = self._head
            count = min(target.shape[0], self._tail - head)
            self._copy_out(head, count, target)
            if self._head == head:  # no finaliser popped while the copies allocated
                break
        self._head = head + count
        return count

    def _copy_out(self, head: int, count: int, out: np.ndarray) -> None:
        start = head & self._mask
        first = min(count, self._capacity - start)
        out[:first] = self._records[start : start + first]
        if count > first:
            out[first:count] = self._records[: count - first]


class _Borrow:
    """Context manager returned by ``ObjectPool.borrow()``: acquire on enter, release on exit."""

    __slots__ = ("_pool", "_item", "_entered")

    def __init__(self, pool: ObjectPool) -> None:
        if not isinstance(pool, ObjectPool):
            raise TypeError(f"Argument 'pool' has incorrect type (expected ObjectPool, got {type(pool).__name__})")
        self._pool = pool
        self._item: Any = None
        self._entered = False

    def __enter__(self) -> Any:
        if self._entered:
            raise RuntimeError("this borrow() context is already entered")
        self._item = self._pool.acquire()
        self._entered = True
        return self._item

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if self._entered:
            item = self._item
            self._item = None
            self._entered = False
            self._pool.release(item)
        return False


class ObjectPool(_Final):
    """Pool of reusable objects made by ``factory()``; ``size`` of them are made up front.

    ``acquire()`` hands out a pooled object, or when none is left a new ``factory()`` one (counted
    in ``.allocated``) unless ``max_size`` objects exist already: then it raises
    ``PoolExhausted``. ``release(obj)`` calls ``reset(obj)`` when given and takes the object back.
    Objects are tracked by identity, so they need not be hashable. One thread at a time.

    Re-entrancy: ``factory`` and ``reset`` may use this pool; the pool re-checks its state after
    calling them. If its internals are tampered with from outside (say through
    ``gc.get_referents``), every method raises ``RuntimeError`` instead of misbehaving.
    """

    __slots__ = ("_factory", "_reset", "_max_size", "_free", "_owned", "_out", "_allocated")
    __reduce_ex__ = _not_picklable
    __class_getitem__ = classmethod(_generic_alias)

    def __init__(
        self,
        factory: Callable[[], Any],
        size: int,
        *,
        reset: Optional[Callable[[Any], Any]] = None,
        max_size: Optional[int] = None,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, not {type(factory).__name__}")
        count = _v.bounded_count(size, "size", 0)
        _v.callable_or_none(reset, "reset")
        self._reset = reset
        if max_size is None:
            self._max_size = -1
        else:
            self._max_size = _v.bounded_count(max_size, "max_size", max(count, 1), _v.INT64_MAX)
        self._factory = factory
        self._owned: dict[int, Any] = {}  # id -> object, for every object this pool made
        self._out: dict[int, Any] = {}  # id -> object, for the objects handed out now
        self._free: list[Any] = []
        self._allocated = 0
        for _ in range(count):
            self._free.append(self._adopt(factory()))
        self._free.reverse()

    def _adopt(self, item: Any) -> Any:
        key = id(item)
        if key in self._owned:
            raise ValueError("factory returned an object this pool already holds")
        self._owned[key] = item
        return item

    @property
    def allocated(self) -> int:
        """How many objects ``acquire()`` had to make because the pool was empty."""
        return self._allocated

    @property
    def in_use(self) -> int:
        """How many objects are handed out now."""
        return len(self._out)

    def __len__(self) -> int:
        return len(self._free)

    def __repr__(self) -> str:
        return f"ObjectPool(available={len(self._free)}, in_use={len(self._out)}, allocated={self._allocated})"

    def _check_intact(self) -> None:
        if len(self._owned) < len(self._out) + len(self._free):
            raise RuntimeError("this pool's internal list was changed from outside: the pool is unusable")

    def acquire(self, *, timeout: Optional[float] = None) -> Any:
        """Return a free pooled object, making a new one when none is free.

        Raises ``PoolExhausted`` when none is free and ``max_size`` objects exist already. With
        ``timeout`` (seconds) first wait that long for another thread to release one (a short spin
        that yields the GIL, then sleeps backing off up to 1 ms); None (the default) never waits.
        """
        if timeout is not None:
            until = _waiting.deadline(timeout)
            attempt = 0
            while not self._free and 0 <= self._max_size <= len(self._owned):
                if not _waiting.pause(until, attempt):
                    break
                attempt += 1
        self._check_intact()
        if self._free:
            item = self._free.pop()
        else:
            if 0 <= self._max_size <= len(self._owned):
                raise PoolExhausted(f"all {len(self._owned)} objects of this pool are in use (max_size)")
            item = self._adopt(self._factory())
            self._allocated += 1
        self._out[id(item)] = item
        return item

    def release(self, obj: Any, /) -> None:
        """Take back ``obj``, calling ``reset(obj)`` first when a reset was given.

        Raises ``ValueError`` (pool unchanged) for an object this pool did not hand out or one
        released twice. If ``reset`` raises, the exception propagates and the object stays out.
        """
        self._check_intact()
        key = id(obj)
        if self._out.get(key, self) is not obj:
            if self._owned.get(key, self) is obj:
                raise ValueError("object released twice: it is not in use")
            raise ValueError("object was not handed out by this pool")
        if self._reset is not None:
            self._reset(obj)
            self._check_intact()
            if self._out.get(key, self) is not obj:  # reset may have re-entered this pool
                raise ValueError("object released twice: it is not in use")
        del self._out[key]
        self._free.append(obj)

    def borrow(self) -> _Borrow:
        """Return a context manager that acquires on enter and releases on exit, even on exceptions."""
        return _Borrow(self)


class RecordPool(_Final):
    """``size`` slots of a numpy ``dtype`` in one array, handed out by index.

    ``acquire()`` returns a free slot's index (``PoolExhausted`` when none is free); the record is
    ``pool.records[index]``. ``release(index)`` frees it. One thread at a time; O(1) each.
    """

    __slots__ = ("_records", "_free", "_in_use")
    __reduce_ex__ = _not_picklable

    def __init__(self, dtype: Any, size: int) -> None:
        record_type = _v.record_dtype(dtype)
        count = _v.bounded_count(size, "size", 1)
        self._records = np.zeros(count, dtype=record_type)
        self._free = list(range(count - 1, -1, -1))
        self._in_use = bytearray(count)

    @property
    def records(self) -> np.ndarray:
        """The whole array of records; slot ``i`` is ``records[i]``."""
        return self._records

    def __len__(self) -> int:
        return len(self._free)

    def __repr__(self) -> str:
        return f"RecordPool(dtype={self._records.dtype}, size={len(self._in_use)}, free={len(self._free)})"

    def acquire(self) -> int:
        """Return the index of a free slot; raise ``PoolExhausted`` when every slot is in use."""
        if not self._free:
            raise PoolExhausted(f"all {len(self._in_use)} slots of this pool are in use")
        index = self._free.pop()
        self._in_use[index] = 1
        return index

    def release(self, index: int, /) -> None:
        """Free slot ``index``; ``ValueError`` when it is out of range or already free."""
        slot = _v.as_int(index, "index")
        if not 0 <= slot < len(self._in_use):
            raise ValueError(f"index {slot} is out of range for a pool of {len(self._in_use)} slots")
        if not self._in_use[slot]:
            raise ValueError(f"slot {slot} is already free")
        self._in_use[slot] = 0
        self._free.append(slot)


class TimestampedQueue(_Final):
    """Bounded FIFO of messages stamped with their enqueue time and a sequence number.

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

    __slots__ = ("_messages", "_stamps", "_capacity", "_mask", "_head", "_tail", "_drops", "_histogram", "_recording", "_unrecorded")
    __reduce_ex__ = _not_picklable
    __class_getitem__ = classmethod(_generic_alias)

    def __init__(self, capacity: int = 65536, *, histogram: Any = None) -> None:
        size = _v.ring_capacity(capacity, "capacity")
        _v.histogram_or_none(histogram)
        self._histogram: Optional[_Recorder] = histogram
        self._messages: list[Any] = [None] * size
        self._stamps = [0] * size
        self._capacity = size
        self._mask = size - 1
        self._head = 0  # == dequeue count; consumer only
        self._tail = 0  # == enqueue count == next sequence number; producer only
        self._drops = 0  # producer only
        self._recording = False  # set while histogram.record() runs
        self._unrecorded = -1  # the head position whose record() raised (delivered unrecorded next)

    @property
    def capacity(self) -> int:
        """The number of messages the queue holds when full (a power of two)."""
        return self._capacity

    @property
    def stats(self) -> dict:
        """Counters: ``{"enqueue_count", "dequeue_count", "drops"}``."""
        return {"enqueue_count": self._tail, "dequeue_count": self._head, "drops": self._drops}

    def __len__(self) -> int:
        return self._tail - self._head

    def __repr__(self) -> str:
        return f"TimestampedQueue(capacity={self._capacity}, len={self._tail - self._head})"

    def empty(self) -> bool:
        """Return True when the queue holds no message."""
        return self._head == self._tail

    def full(self) -> bool:
        """Return True when the queue holds ``capacity`` messages."""
        return self._tail - self._head == self._capacity

    def enqueue(self, message: Any, /, timestamp_ns: Optional[int] = None) -> bool:
        """Stamp ``message`` (with ``now_ns()`` unless ``timestamp_ns`` is given) and append it.

        ``timestamp_ns`` is a ``now_ns()`` reading, between 0 and 2**62 (``ValueError`` outside).
        The message gets the next sequence number (0, 1, 2, ... over accepted messages). When the
        queue is full, return False and count a drop. Producer only.
        """
        if timestamp_ns is None:
            stamp = _now()
        else:
            stamp = _v.stamp_ns(timestamp_ns, "timestamp_ns")
        tail = self._tail
        if tail - self._head == self._capacity:
            self._drops += 1
            return False
        index = tail & self._mask
        self._messages[index] = message
        self._stamps[index] = stamp
        self._tail = tail + 1
        return True

    def peek(self) -> Optional[tuple]:
        """Return what ``dequeue`` would, ``(seq, message, queue_latency_ns)``, without removing it.

        None when empty. Nothing is recorded in the histogram. Consumer only.
        """
        head = self._head
        if head == self._tail:
            return None
        index = head & self._mask
        return (head, self._messages[index], _now() - self._stamps[index])

    def dequeue(self, *, timeout: Optional[float] = None) -> Optional[tuple]:
        """Remove the oldest message; return ``(seq, message, queue_latency_ns)`` or None when empty.

        The latency is ``now_ns()`` minus the enqueue stamp. With ``timeout`` (seconds) wait that
        long for a message when empty (a short spin that yields the GIL, then sleeps backing off
        up to 1 ms); None (the default) never waits. Consumer only.
        """
        head = self._head
        if timeout is not None:
            until = _waiting.deadline(timeout)
            attempt = 0
            while self._head == self._tail:
                if not _waiting.pause(until, attempt):
                    return None
                attempt += 1
            head = self._head
        elif head == self._tail:
            return None
        index = head & self._mask
        latency = _now() - self._stamps[index]
        if self._histogram is not None and head != self._unrecorded:
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
        message = self._messages[index]
        self._messages[index] = None
        self._head = head + 1
        return (head, message, latency)


class PriorityQueue(_Final):
    """Priority queue of messages: lowest ``priority`` first, FIFO among equal priorities.

    A binary heap, O(log n) per operation. ``capacity`` None means unbounded; otherwise
    ``enqueue`` returns False when full. Each message is stamped on enqueue. One thread at a time
    (``dequeue(timeout=...)`` waits for another thread's ``enqueue``). No method runs Python code
    between reading and updating the heap, so finalisers may use the queue at any time.
    """

    __slots__ = ("_heap", "_capacity", "_sequence")
    __reduce_ex__ = _not_picklable
    __class_getitem__ = classmethod(_generic_alias)

    def __init__(self, capacity: Optional[int] = None) -> None:
        self._capacity = -1 if capacity is None else _v.bounded_count(capacity, "capacity", 1)
        self._heap: list[tuple] = []
        self._sequence = 0

    @property
    def capacity(self) -> Optional[int]:
        """The bound on the number of messages, or None when unbounded."""
        return None if self._capacity < 0 else self._capacity

    def __len__(self) -> int:
        return len(self._heap)

    def __repr__(self) -> str:
        return f"PriorityQueue(capacity={self.capacity}, len={len(self._heap)})"

    def empty(self) -> bool:
        """Return True when the queue holds no message."""
        return not self._heap

    def full(self) -> bool:
        """Return True when the queue is bounded and holds ``capacity`` messages."""
        return len(self._heap) == self._capacity

    def peek(self) -> Optional[tuple]:
        """Return what ``dequeue`` would, ``(priority, message, latency_ns)``, without removing it; None when empty."""
        if not self._heap:
            return None
        key, _, stamp, message = self._heap[0]
        return (key, message, _now() - stamp)

    def enqueue(self, priority: int, message: Any, /) -> bool:
        """Add ``message`` with int ``priority`` (lower leaves first); False when bounded and full."""
        key = _v.as_int64(priority, "priority")
        if 0 <= self._capacity <= len(self._heap):
            return False
        sequence = self._sequence
        self._sequence = sequence + 1
        entry = (key, sequence, _now(), message)  # may run the collector: re-check the bound
        if 0 <= self._capacity <= len(self._heap):
            return False
        _heapq.heappush(self._heap, entry)
        return True

    def dequeue(self, *, timeout: Optional[float] = None) -> Optional[tuple]:
        """Remove the first message; return ``(priority, message, latency_ns)`` or None when empty.

        With ``timeout`` (seconds) wait that long for a message when empty (a short spin that
        yields the GIL, then sleeps backing off up to 1 ms); None (the default) never waits.
        """
        if timeout is not None:
            until = _waiting.deadline(timeout)
            attempt = 0
            while not self._heap:
                if not _waiting.pause(until, attempt):
                    return None
                attempt += 1
        elif not self._heap:
            return None
        key, _, stamp, message = _heapq.heappop(self._heap)
        return (key, message, _now() - stamp)
