"""Pure-Python twin of :mod:`lowlat.containers._c`: the same names, signatures, errors and docstrings.

This module is the source of truth for the public interface; the compiled core mirrors it. Each
container is safe for the threading pattern its docstring names *because of the GIL*: every
position update is a single attribute store, made after the slot it publishes is written.
"""

from __future__ import annotations

import heapq as _heapq
import time as _time
from itertools import islice as _islice
from typing import Any, Callable, Iterable, Optional

import numpy as np

from .. import _validate as _v
from .._errors import PoolExhausted

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


def _not_picklable(self: object, protocol: int = 0) -> Any:
    raise TypeError(f"cannot pickle {type(self).__name__!r} object")


class SpscRing:
    """Bounded FIFO of Python objects for one producer thread and one consumer thread.

    ``capacity`` is rounded up to a power of two and the ring holds exactly that many items.
    The producer thread may call ``push`` and ``push_many``; the consumer thread ``pop``,
    ``pop_many``, ``peek`` and ``clear``; both may use ``len()``. With one thread of each, nothing
    is lost, duplicated or reordered. Every operation is O(1) per item and never blocks. The ring
    holds no reference to an item once it has been popped.
    """

    __slots__ = ("_slots", "_capacity", "_mask", "_head", "_tail")
    __reduce_ex__ = _not_picklable

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

    def push(self, item: Any, /) -> bool:
        """Append ``item``; return False and store nothing when the ring is full. Producer only."""
        tail = self._tail
        if tail - self._head == self._capacity:
            return False
        self._slots[tail & self._mask] = item
        self._tail = tail + 1
        return True

    def pop(self, default: Any = None, /) -> Any:
        """Remove and return the oldest item, or ``default`` when the ring is empty. Consumer only."""
        head = self._head
        if head == self._tail:
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

        No item beyond the returned count is consumed from an iterator. The batch is published at
        once, after the last item is stored. Producer only.
        """
        tail = self._tail
        free = self._capacity - (tail - self._head)
        if isinstance(items, (list, tuple)):
            count = min(len(items), free)
            start = tail & self._mask
            first = min(count, self._capacity - start)
            self._slots[start : start + first] = items[:first]
            if count > first:
                self._slots[: count - first] = items[first:count]
            self._tail = tail + count
            return count
        count = 0
        slots, mask = self._slots, self._mask
        try:
            for item in _islice(items, free):
                slots[(tail + count) & mask] = item
                count += 1
        finally:
            self._tail = tail + count
        return count

    def pop_many(self, max_items: Optional[int] = None, /) -> list:
        """Remove and return up to ``max_items`` oldest items (all when None), oldest first. Consumer only."""
        limit = _v.optional_limit(max_items, "max_items")
        head = self._head
        count = self._tail - head
        if 0 <= limit < count:
            count = limit
        start = head & self._mask
        first = min(count, self._capacity - start)
        slots = self._slots
        items = slots[start : start + first]
        slots[start : start + first] = [None] * first
        if count > first:
            rest = count - first
            items += slots[:rest]
            slots[:rest] = [None] * rest
        self._head = head + count
        return items

    def clear(self) -> None:
        """Drop every item the ring holds. Consumer only."""
        self.pop_many()


class RecordRing:
    """Bounded FIFO of fixed-size records of a numpy ``dtype``, in one preallocated array.

    ``dtype`` is a scalar dtype such as ``"i8"`` or a structured one such as
    ``[("ts", "i8"), ("px", "f8"), ("qty", "i4")]``; ``capacity`` is rounded up to a power of two.
    One producer thread (``push``, ``write``) and one consumer thread (``pop``, ``read``,
    ``read_into``) may use it at once. ``write`` and ``read`` copy whole batches with at most two
    block copies each.
    """

    __slots__ = ("_records", "_dtype", "_capacity", "_mask", "_head", "_tail", "_structured")
    __reduce_ex__ = _not_picklable

    def __init__(self, dtype: Any, capacity: int) -> None:
        record_type = _v.record_dtype(dtype)
        size = _v.ring_capacity(capacity, "capacity")
        self._records = np.zeros(size, dtype=record_type)
        self._dtype = record_type
        self._structured = record_type.fields is not None
        self._capacity = size
        self._mask = size - 1
        self._head = 0
        self._tail = 0

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

    def push(self, record: Any, /) -> bool:
        """Append one record (anything numpy converts to the dtype); False when full. Producer only."""
        tail = self._tail
        if tail - self._head == self._capacity:
            return False
        self._records[tail & self._mask] = record
        self._tail = tail + 1
        return True

    def pop(self, default: Any = None, /) -> Any:
        """Remove and return the oldest record as numpy gives it, or ``default`` when empty.

        A scalar dtype gives a numpy scalar, a structured one a ``numpy.void`` copy that stays valid
        after the slot is reused. Consumer only.
        """
        head = self._head
        if head == self._tail:
            return default
        record = self._records[head & self._mask]
        if self._structured:
            record = record.copy()
        self._head = head + 1
        return record

    def write(self, array: np.ndarray, /) -> int:
        """Copy as many leading records of ``array`` as fit; return how many. Producer only.

        ``array`` must be a one-dimensional numpy array of exactly this ring's dtype (another dtype
        raises ``TypeError``).
        """
        source = _v.record_array(array, self._dtype, "array")
        tail = self._tail
        count = min(source.shape[0], self._capacity - (tail - self._head))
        start = tail & self._mask
        first = min(count, self._capacity - start)
        self._records[start : start + first] = source[:first]
        if count > first:
            self._records[: count - first] = source[first:count]
        self._tail = tail + count
        return count

    def read(self, max_records: Optional[int] = None, /) -> np.ndarray:
        """Remove up to ``max_records`` records (all when None); return them as a new array, oldest first.

        Consumer only.
        """
        limit = _v.optional_limit(max_records, "max_records")
        head = self._head
        count = self._tail - head
        if 0 <= limit < count:
            count = limit
        out = np.empty(count, dtype=self._dtype)
        self._copy_out(head, count, out)
        self._head = head + count
        return out

    def read_into(self, out: np.ndarray, /) -> int:
        """Move up to ``len(out)`` oldest records into ``out``; return how many. Consumer only.

        ``out`` must be a writable one-dimensional array of this ring's dtype.
        """
        target = _v.record_array(out, self._dtype, "out", writable=True)
        head = self._head
        count = min(target.shape[0], self._tail - head)
        self._copy_out(head, count, target)
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
        self._pool = pool
        self._item: Any = None
        self._entered = False

    def __enter__(self) -> Any:
        if self._entered:
            raise RuntimeError("this borrow() context is already entered")
        self._item = self._pool.acquire()
        self._entered = True
        return self._item

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._entered:
            item = self._item
            self._item = None
            self._entered = False
            self._pool.release(item)
        return False


class ObjectPool:
    """Pool of reusable objects made by ``factory()``; ``size`` of them are made up front.

    ``acquire()`` hands out a pooled object, or when none is left a new ``factory()`` one (counted
    in ``.allocated``) unless ``max_size`` objects exist already: then it raises
    ``PoolExhausted``. ``release(obj)`` calls ``reset(obj)`` when given and takes the object back.
    Objects are tracked by identity, so they need not be hashable. One thread at a time.
    """

    __slots__ = ("_factory", "_reset", "_max_size", "_free", "_owned", "_out", "_allocated")
    __reduce_ex__ = _not_picklable

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
        self._reset = _v.callable_or_none(reset, "reset")
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

    def acquire(self) -> Any:
        """Return a free pooled object, making a new one when none is free.

        Raises ``PoolExhausted`` when none is free and ``max_size`` objects exist already.
        """
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
        key = id(obj)
        if self._out.get(key, self) is not obj:
            if self._owned.get(key, self) is obj:
                raise ValueError("object released twice: it is not in use")
            raise ValueError("object was not handed out by this pool")
        if self._reset is not None:
            self._reset(obj)
        del self._out[key]
        self._free.append(obj)

    def borrow(self) -> _Borrow:
        """Return a context manager that acquires on enter and releases on exit, even on exceptions."""
        return _Borrow(self)


class RecordPool:
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


class TimestampedQueue:
    """Bounded FIFO of messages stamped with their enqueue time and a sequence number.

    One producer thread (``enqueue``) and one consumer thread (``dequeue``). ``capacity`` is rounded
    up to a power of two. Sequence numbers and stamps live beside the message slots; when a
    ``histogram`` (anything with ``record(value_ns)``) is given, every dequeue records its latency
    there (a stamp in the future records 0); if ``record`` raises, the message stays queued.
    """

    __slots__ = ("_messages", "_stamps", "_capacity", "_mask", "_head", "_tail", "_drops", "_histogram")
    __reduce_ex__ = _not_picklable

    def __init__(self, capacity: int = 65536, *, histogram: Any = None) -> None:
        size = _v.ring_capacity(capacity, "capacity")
        self._histogram = _v.histogram_or_none(histogram)
        self._messages: list[Any] = [None] * size
        self._stamps = [0] * size
        self._capacity = size
        self._mask = size - 1
        self._head = 0  # == dequeue count; consumer only
        self._tail = 0  # == enqueue count == next sequence number; producer only
        self._drops = 0  # producer only

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

    def enqueue(self, message: Any, timestamp_ns: Optional[int] = None, /) -> bool:
        """Stamp ``message`` (with ``now_ns()`` unless ``timestamp_ns`` is given) and append it.

        It gets the next sequence number (0, 1, 2, ... over accepted messages). When the queue is
        full, return False and count a drop. Producer only.
        """
        if timestamp_ns is None:
            stamp = _now()
        else:
            stamp = _v.as_int64(timestamp_ns, "timestamp_ns")
        tail = self._tail
        if tail - self._head == self._capacity:
            self._drops += 1
            return False
        index = tail & self._mask
        self._messages[index] = message
        self._stamps[index] = stamp
        self._tail = tail + 1
        return True

    def dequeue(self) -> Optional[tuple]:
        """Remove the oldest message; return ``(seq, message, queue_latency_ns)`` or None when empty.

        The latency is ``now_ns()`` minus the enqueue stamp. Consumer only.
        """
        head = self._head
        if head == self._tail:
            return None
        index = head & self._mask
        latency = _now() - self._stamps[index]
        if self._histogram is not None:
            # Before the message leaves: if record() raises, the message stays queued.
            self._histogram.record(latency if latency > 0 else 0)
        message = self._messages[index]
        self._messages[index] = None
        self._head = head + 1
        return (head, message, latency)


class PriorityQueue:
    """Priority queue of messages: lowest ``priority`` first, FIFO among equal priorities.

    A binary heap, O(log n) per operation. ``capacity`` None means unbounded; otherwise
    ``enqueue`` returns False when full. Each message is stamped on enqueue. One thread at a time.
    """

    __slots__ = ("_heap", "_capacity", "_sequence")
    __reduce_ex__ = _not_picklable

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

    def enqueue(self, priority: int, message: Any, /) -> bool:
        """Add ``message`` with int ``priority`` (lower leaves first); False when bounded and full."""
        key = _v.as_int64(priority, "priority")
        if len(self._heap) == self._capacity:
            return False
        sequence = self._sequence
        self._sequence = sequence + 1
        _heapq.heappush(self._heap, (key, sequence, _now(), message))
        return True

    def dequeue(self) -> Optional[tuple]:
        """Remove the first message; return ``(priority, message, latency_ns)`` or None when empty."""
        if not self._heap:
            return None
        key, _, stamp, message = _heapq.heappop(self._heap)
        return (key, message, _now() - stamp)
