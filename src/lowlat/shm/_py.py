"""Pure-Python twin of lowlat's shared-memory rings: ``ShmRing`` and ``ShmRecordRing``.

This module is the source of truth for the interface; the segment layout and protocol are in
:mod:`lowlat.shm.layout`, shared with the compiled ``lowlat.shm._c``, which implements the same
protocol with C11 acquire/release atomics, so a compiled producer and a pure consumer (or the
reverse) can share one segment.

Memory ordering in this pure twin: it writes and reads the positions through a ``memoryview`` cast to
``'Q'``, which CPython turns into one aligned 8-byte ``memcpy`` -- a single load or store on x86-64
and ARM64, so a position is never torn. On x86-64 (total store order) program order then gives the
release/acquire ordering the protocol needs. On ARM64 the hardware may reorder plain stores, so the
pure backend is *not* guaranteed correct across processes there: use the compiled backend (which
issues real acquire/release instructions) on ARM64.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import numpy as np


from .._twins import Final as _Final
from .layout import (
    BASE_HEADER,
    BLOCK,
    BytesLike,
    CONSUMER,
    KIND_BYTES,
    KIND_NAMES,
    KIND_RECORDS,
    Mapping,
    PADDING,
    PRODUCER,
    ROLE_NAMES,
    ROLE_SLOTS,
    SLEEP_MAX_NS,
    SLEEP_MIN_NS,
    SPIN_POLLS,
    WAIT_NAMES,
    WAIT_SPIN,
    WAIT_YIELD,
    W_CONSUMER_POSITION,
    W_PRODUCER_POSITION,
    YIELD_POLLS,
    as_int,
    bytes_view,
    capacity_bytes_of,
    corrupt,
    decode_dtype,
    encode_dtype,
    max_message_of,
    open_segment,
    read_header,
    real_array,
    record_size,
    record_capacity_of,
    record_dtype_of,
    role_code,
    role_lock,
    role_refusal,
    segment_name,
    stamp_offset,
    timeout_ns,
    unlink_segment,
    wait_code,
    write_header,
)

__all__ = ["ShmRing", "ShmRecordRing"]

_STAMP = struct.Struct("=q")  # a push stamp: native int64, written at any byte offset


class _Waiter:
    """The spin, then yield, then sleep loop of one wait; the caller polls between calls to ``pause``."""

    __slots__ = ("strategy", "deadline", "polls", "sleep_ns")

    def __init__(self, strategy: int, budget_ns: int) -> None:
        self.strategy = strategy
        self.deadline = time.perf_counter_ns() + budget_ns
        self.polls = 0
        self.sleep_ns = SLEEP_MIN_NS

    def pause(self) -> bool:
        """Wait a little according to the strategy; return False once the deadline has passed."""
        now = time.perf_counter_ns()
        if now >= self.deadline:
            return False
        self.polls += 1
        if self.polls <= SPIN_POLLS or self.strategy == WAIT_SPIN:
            return True
        if self.strategy == WAIT_YIELD or self.polls <= SPIN_POLLS + YIELD_POLLS:
            os.sched_yield()
            return True
        time.sleep(min(self.sleep_ns, self.deadline - now) / 1e9)
        self.sleep_ns = min(self.sleep_ns * 2, SLEEP_MAX_NS)
        return True


class _Segment:
    """What both ring kinds share: the mapping, the role slot, close/unlink and the context manager."""

    _kind = 0
    _role_held: int  # the role this end holds, kept after close (set by create/attach)

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(f"use {type(self).__name__}.create() or {type(self).__name__}.attach() to make one")

    def _open(self, shm: Mapping, role: int, force: bool, creator: bool) -> None:
        self._shm: Mapping | None = shm
        self._name = segment_name(shm)

        self._role = 0
        self._views: list[memoryview] = []
        self._words = self._view(shm.buf[:BASE_HEADER].cast("Q"))
        self._claim(role, force)
        self._role = role

    def _view(self, view: memoryview) -> memoryview:
        self._views.append(view)
        return view

    def _claim(self, role: int, force: bool) -> None:
        # Check-then-write made atomic by the role lock, which the compiled backend takes too (see
        # role_lock): two attaches racing for one role, in any mix of backends, have one winner.
        slot = ROLE_SLOTS[role]
        with role_lock(self._shm):  # type: ignore[arg-type]
            holder = self._words[slot]
            error = role_refusal(KIND_NAMES[self._kind], role, holder, force)
            if error is not None:
                raise error
            self._words[slot] = os.getpid()

    def _closed_error(self, needed: int) -> Exception:
        if self._shm is None or self._role == 0:
            return ValueError(f"{type(self).__name__} {self._name!r} is closed")
        return RuntimeError(
            f"this is the {ROLE_NAMES[self._role]} end of {type(self).__name__} {self._name!r}; "
            f"only the {ROLE_NAMES[needed]} may call this"
        )

    @property
    def name(self) -> str:
        """The segment's name: pass it to ``attach`` in the other process."""
        return self._name

    @property
    def role(self) -> str:
        """``"producer"`` or ``"consumer"``: the role this end holds (kept after ``close``)."""
        return ROLE_NAMES[self._role_held]

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._shm is None

    def close(self) -> None:
        """Release the role and unmap the segment; later calls raise ``ValueError``. Idempotent.

        The segment itself stays (and keeps its contents) until someone calls ``unlink()``.
        """
        shm = self._shm
        if shm is None:
            return
        if self._role:
            slot = ROLE_SLOTS[self._role]
            if self._words[slot] == os.getpid():
                self._words[slot] = 0
        self._role = 0
        self._release_views()
        self._shm = None
        shm.close()

    def _release_views(self) -> None:
        for view in reversed(self._views):
            view.release()
        self._views.clear()

    def unlink(self) -> None:
        """Remove the segment's name so no one else can attach; callable before or after ``close()``.

        Normally the creator calls this once both ends have attached (or at shutdown); any end may,
        e.g. to clean up after a creator that died. Mapped ends keep working until they close.
        Raise ``FileNotFoundError`` if the name is already gone.
        """
        unlink_segment(self._name)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: pass its .name and attach() in the other process")

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_shm", None) is not None:
                self.close()
        except Exception:
            pass


class ShmRing(_Segment, _Final):
    """A single-producer single-consumer ring of variable-length byte messages in shared memory.

    One process holds the producer role and only it may ``put``; one process holds the consumer role
    and only it may ``get``. Nothing on the hot path takes a lock or makes a system call: the
    producer copies a message into the ring and publishes its position, the consumer copies it out
    and publishes its own. Make one with ``ShmRing.create()`` and open it elsewhere with
    ``ShmRing.attach(name)``. Messages are delivered in order, each exactly once, intact.
    """

    _kind = KIND_BYTES

    @classmethod
    def create(
        cls,
        name: str | None = None,
        capacity_bytes: int = 1 << 20,
        *,
        max_message: int | None = None,
        role: str = "producer",
        wait_strategy: str = "spin",
    ) -> ShmRing:
        """Create a ring segment and return its ``role`` end (the producer by default).

        ``capacity_bytes`` (rounded up to a power of two, at least 64) is the data area; each message
        takes 8 bytes plus its length rounded up to 8. ``max_message`` (default and maximum
        ``capacity // 2 - 8``) is the longest payload accepted. The segment is created with
        permissions 0600 under ``name`` (a random ``lowlat_...`` name when None, read it from
        ``.name``); ``FileExistsError`` if the name is taken. A name is 1 to 255 characters from
        ``A-Z a-z 0-9 _ . -`` after one optional leading ``/``, and not ``.`` or ``..``
        (``ValueError`` otherwise, here and in ``attach``). ``wait_strategy`` is what ``put``/``get``
        do while waiting for a timeout: ``"spin"`` (busy-poll), ``"yield"`` (spin, then yield the
        CPU) or ``"backoff"`` (spin, yield, then sleep with exponential backoff up to 1 ms).
        """
        code = role_code(role)
        strategy = wait_code(wait_strategy)
        capacity = capacity_bytes_of(capacity_bytes)
        limit = max_message_of(max_message, capacity)
        shm = open_segment(name, True, BASE_HEADER + capacity)
        try:
            write_header(shm.buf, KIND_BYTES, BASE_HEADER, capacity, limit, b"")
            ring = object.__new__(cls)
            ring._setup(shm, code, False, True, strategy)
        except BaseException:
            shm.close()
            unlink_segment(segment_name(shm))
            raise
        return ring

    @classmethod
    def attach(cls, name: str, role: str = "consumer", *, force: bool = False, wait_strategy: str = "spin") -> ShmRing:
        """Open the ring segment ``name`` made by ``create`` (in any process) and return its ``role`` end.

        Raise ``FileNotFoundError`` if there is no such segment; ``ValueError`` saying which, if it is
        not a lowlat ring, has another layout version or is inconsistent; ``RuntimeError`` naming the
        pid if a live process holds ``role``. A role whose holder died is taken over only with
        ``force=True``. Attaching never registers the segment with the resource tracker, so this
        process exiting does not unlink it.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        code = role_code(role)
        strategy = wait_code(wait_strategy)
        shm = open_segment(name, False)
        try:
            ring = object.__new__(cls)
            ring._setup(shm, code, bool(force), False, strategy)
        except BaseException:
            shm.close()
            raise
        return ring

    def _setup(self, shm: Mapping, role: int, force: bool, creator: bool, strategy: int) -> None:
        self._shm = None
        self._name = segment_name(shm)
        self._views = []
        header_size, capacity, max_message, _ = read_header(shm, KIND_BYTES)
        self._capacity = capacity
        self._mask = capacity - 1
        self._max_message = max_message
        self._strategy = strategy
        self._role_held = role
        try:
            self._open(shm, role, force, creator)
            data = self._view(shm.buf[header_size : header_size + capacity])
            self._data = data
            self._data_words = self._view(data.cast("Q"))
        except BaseException:
            self._release_views()
            raise
        if role == PRODUCER:
            self._pos = self._words[W_PRODUCER_POSITION]
            self._cached = self._words[W_CONSUMER_POSITION]
        else:
            self._pos = self._words[W_CONSUMER_POSITION]
            self._cached = self._words[W_PRODUCER_POSITION]
        self._length = 0

    @property
    def capacity(self) -> int:
        """Size of the data area in bytes (a power of two)."""
        return self._capacity

    @property
    def max_message(self) -> int:
        """The longest payload ``put`` accepts, in bytes."""
        return self._max_message

    @property
    def wait_strategy(self) -> str:
        """How ``put``/``get`` wait when given a timeout: ``"spin"``, ``"yield"`` or ``"backoff"``."""
        return WAIT_NAMES[self._strategy]

    def __repr__(self) -> str:
        state = "closed" if self._shm is None else "open"
        return f"<ShmRing {self._name!r} {ROLE_NAMES[self._role_held]} capacity={self._capacity} {state}>"

    def __len__(self) -> int:
        """Return how many bytes are published and not yet consumed: messages with their 8-byte length
        words and padding (a snapshot, from either end; 0 when empty, at most ``capacity``)."""
        if self._shm is None:
            raise ValueError(f"ShmRing {self._name!r} is closed")
        consumed = self._words[W_CONSUMER_POSITION]
        produced = self._words[W_PRODUCER_POSITION]
        if not 0 <= produced - consumed <= self._capacity:
            raise corrupt(f"positions out of range (producer {produced}, consumer {consumed})")
        return produced - consumed

    # -- producer ---------------------------------------------------------------------------------

    def _claim_space(self, record: int) -> int:
        # Return the offset where a record of ``record`` bytes goes (writing the padding word first
        # if it would straddle the end), or -1 when the ring is full now.
        pos = self._pos
        capacity = self._capacity
        offset = pos & self._mask
        contiguous = capacity - offset
        need = record if record <= contiguous else contiguous + record
        if pos + need - self._cached > capacity:
            consumed = self._words[W_CONSUMER_POSITION]
            if not 0 <= pos - consumed <= capacity or consumed & 7:
                raise corrupt(f"consumer position {consumed} is out of range (producer at {pos})")
            self._cached = consumed
            if pos + need - consumed > capacity:
                return -1
        if record > contiguous:
            self._data_words[offset >> 3] = PADDING
            self._pos = pos + contiguous
            return 0
        return offset

    def _wait_space(self, record: int, budget_ns: int) -> int:
        waiter = _Waiter(self._strategy, budget_ns)
        while waiter.pause():
            if self._role != PRODUCER:  # closed by another thread meanwhile
                raise self._closed_error(PRODUCER)
            offset = self._claim_space(record)
            if offset >= 0:
                return offset
        return -1

    def put(self, data: BytesLike, timeout: float | None = None) -> bool:
        """Copy one message into the ring and publish it; return False if it does not fit.

        Producer only. ``data`` is any C-contiguous bytes-like object of at most ``max_message``
        bytes (longer: ``ValueError``; not bytes-like: ``TypeError``). When the ring is full,
        return False at once (``timeout=None`` or 0), or wait up to ``timeout`` seconds
        (``float('inf')``: forever) with the ring's wait strategy, then return False with nothing
        written. O(len(data)).
        """
        if self._role != PRODUCER:
            raise self._closed_error(PRODUCER)
        source = data if type(data) is bytes else bytes_view(data, "data")
        budget = 0 if timeout is None else timeout_ns(timeout)
        length = len(source)
        if length > self._max_message:
            raise ValueError(f"data is {length} bytes; this ring's max_message is {self._max_message}")
        record = record_size(length)
        offset = self._claim_space(record)
        if offset < 0:
            if budget == 0:
                return False
            offset = self._wait_space(record, budget)
            if offset < 0:
                return False
        self._data_words[offset >> 3] = length
        self._data[offset + 8 : offset + 8 + length] = source
        self._pos += record
        self._words[W_PRODUCER_POSITION] = self._pos  # publish: the record is complete before this store
        return True

    def put_many(self, messages: list[BytesLike]) -> int:
        """Copy as many leading messages as fit, publish them once, and return how many were put.

        Producer only; never waits. Every message is checked first (``TypeError`` or ``ValueError``
        as for ``put``, and then nothing is written), so the count is exact. One position store
        publishes the whole batch, the Disruptor's batching effect.
        """
        if self._role != PRODUCER:
            raise self._closed_error(PRODUCER)
        if not isinstance(messages, (list, tuple)):
            raise TypeError(f"messages must be a list or tuple of bytes-like objects, not {type(messages).__name__}")
        sources = []
        for index, data in enumerate(messages):
            source = data if type(data) is bytes else bytes_view(data, f"messages[{index}]")
            if len(source) > self._max_message:
                raise ValueError(f"messages[{index}] is {len(source)} bytes; this ring's max_message is {self._max_message}")
            sources.append(source)
        count = 0
        data_words = self._data_words
        data_bytes = self._data
        for source in sources:
            length = len(source)
            record = record_size(length)
            offset = self._claim_space(record)
            if offset < 0:
                break
            data_words[offset >> 3] = length
            data_bytes[offset + 8 : offset + 8 + length] = source
            self._pos += record
            count += 1
        if count:
            self._words[W_PRODUCER_POSITION] = self._pos
        return count

    # -- consumer ---------------------------------------------------------------------------------

    def _next(self) -> int:
        # Return the offset of the next message (its length in self._length), or -1 when empty.
        pos = self._pos
        capacity = self._capacity
        while True:
            if pos == self._cached:
                produced = self._words[W_PRODUCER_POSITION]
                if not 0 <= produced - pos <= capacity or produced & 7:
                    raise corrupt(f"producer position {produced} is out of range (consumer at {pos})")
                self._cached = produced
                if produced == pos:
                    self._pos = pos
                    return -1
            offset = pos & self._mask
            length = self._data_words[offset >> 3]
            if length == PADDING:
                skip = capacity - offset
                if skip > self._cached - pos:
                    raise corrupt(f"padding at offset {offset} runs past the published data")
                pos += skip
                continue
            if length > self._max_message:
                raise corrupt(f"message length {length} at offset {offset} exceeds max_message {self._max_message}")
            record = record_size(length)
            if record > self._cached - pos or offset + record > capacity:
                raise corrupt(f"message at offset {offset} runs past the published data")
            self._pos = pos
            self._length = length
            return offset

    def _wait_message(self, budget_ns: int) -> int:
        waiter = _Waiter(self._strategy, budget_ns)
        while waiter.pause():
            if self._role != CONSUMER:  # closed by another thread meanwhile
                raise self._closed_error(CONSUMER)
            offset = self._next()
            if offset >= 0:
                return offset
        return -1

    def get(self, timeout: float | None = None) -> bytes | None:
        """Remove the oldest message and return it as ``bytes``; None when there is none.

        Consumer only. When the ring is empty, return None at once (``timeout=None`` or 0), or wait
        up to ``timeout`` seconds (``float('inf')``: forever) with the ring's wait strategy.
        Allocates the returned bytes; ``get_into`` does not. O(message length).
        """
        if self._role != CONSUMER:
            raise self._closed_error(CONSUMER)
        budget = 0 if timeout is None else timeout_ns(timeout)
        offset = self._next()
        if offset < 0:
            if budget == 0:
                return None
            offset = self._wait_message(budget)
            if offset < 0:
                return None
        length = self._length
        message = bytes(self._data[offset + 8 : offset + 8 + length])
        self._pos += record_size(length)
        self._words[W_CONSUMER_POSITION] = self._pos  # hand the space back after the copy
        return message

    def get_into(self, buffer: BytesLike, timeout: float | None = None) -> int:
        """Copy the oldest message into ``buffer``, remove it, and return its length; -1 when empty.

        Consumer only; allocates nothing. ``buffer`` is a writable C-contiguous bytes-like object
        (``TypeError`` otherwise); its first ``length`` bytes are overwritten. If the next message
        is longer than ``buffer``, raise ``ValueError`` and leave the message in the ring. Waits
        like ``get`` when ``timeout`` is given.
        """
        if self._role != CONSUMER:
            raise self._closed_error(CONSUMER)
        target = bytes_view(buffer, "buffer", writable=True)
        budget = 0 if timeout is None else timeout_ns(timeout)
        offset = self._next()
        if offset < 0:
            if budget == 0:
                return -1
            offset = self._wait_message(budget)
            if offset < 0:
                return -1
        length = self._length
        if length > len(target):
            raise ValueError(f"buffer has {len(target)} bytes; the next message has {length} (left in the ring)")
        target[:length] = self._data[offset + 8 : offset + 8 + length]
        self._pos += record_size(length)
        self._words[W_CONSUMER_POSITION] = self._pos
        return length

    def get_many(self, max_messages: int | None = None) -> list[bytes]:
        """Remove up to ``max_messages`` messages (all that are published when None) and return them.

        Consumer only; never waits (an empty list when the ring is empty). With None the call still
        ends: it takes at most one ring's worth even if the producer keeps publishing. The consumer
        position is stored once for the whole batch.
        """
        if self._role != CONSUMER:
            raise self._closed_error(CONSUMER)
        if max_messages is None:
            limit = -1
        else:
            limit = as_int(max_messages, "max_messages")
            if limit < 0:
                raise ValueError(f"max_messages must be >= 0 or None, got {limit}")
        messages: list[bytes] = []
        data = self._data
        start = self._pos
        try:
            # None: what is published, but never more than one ring's worth (a bounded call).
            while (len(messages) < limit) if limit >= 0 else (self._pos - start < self._capacity):
                offset = self._next()
                if offset < 0:
                    break
                length = self._length
                messages.append(bytes(data[offset + 8 : offset + 8 + length]))
                self._pos += record_size(length)
        finally:
            if messages:
                self._words[W_CONSUMER_POSITION] = self._pos
        return messages


class ShmRecordRing(_Segment, _Final):
    """A single-producer single-consumer ring of fixed-size numpy records in shared memory.

    ``RecordRing``'s interface across processes: the producer ``write``s whole arrays (or
    ``push``es one record), the consumer ``read``s them back in order as new arrays (or
    ``read_into`` its own, or ``pop``s one). The dtype is recorded in the segment's header, so
    ``attach`` rebuilds it. Batches are copied with at most two block copies and published once.
    """

    _kind = KIND_RECORDS

    @classmethod
    def create(cls, dtype: Any, capacity: int, name: str | None = None, *, role: str = "producer") -> ShmRecordRing:
        """Create a record ring segment for ``capacity`` records of ``dtype``; return its ``role`` end.

        ``capacity`` is rounded up to a power of two (1 to 2**30). ``dtype`` is any numpy dtype
        without Python objects (``TypeError`` otherwise). Naming and permissions as for
        ``ShmRing.create``.
        """
        code = role_code(role)
        record_dtype = record_dtype_of(dtype)
        records = record_capacity_of(capacity)
        descriptor = encode_dtype(record_dtype)
        header_size = BASE_HEADER + (len(descriptor) + BLOCK - 1) // BLOCK * BLOCK
        shm = open_segment(name, True, header_size + records * record_dtype.itemsize)
        try:
            write_header(shm.buf, KIND_RECORDS, header_size, records, record_dtype.itemsize, descriptor)
            ring = object.__new__(cls)
            ring._setup(shm, code, False, True, None)
        except BaseException:
            shm.close()
            unlink_segment(segment_name(shm))
            raise
        return ring

    @classmethod
    def attach(cls, name: str, role: str = "consumer", *, dtype: Any = None, force: bool = False) -> ShmRecordRing:
        """Open the record ring segment ``name`` and return its ``role`` end.

        The dtype is rebuilt from the header; if ``dtype`` is given and differs, raise ``TypeError``.
        Other errors and ``force`` as for ``ShmRing.attach``.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        code = role_code(role)
        expected = None if dtype is None else record_dtype_of(dtype)
        shm = open_segment(name, False)
        try:
            ring = object.__new__(cls)
            ring._setup(shm, code, bool(force), False, expected)
        except BaseException:
            shm.close()
            raise
        return ring

    def _setup(
        self, shm: Mapping, role: int, force: bool, creator: bool, expected: np.dtype | None
    ) -> None:
        self._shm = None
        self._name = segment_name(shm)
        self._views = []
        header_size, capacity, itemsize, descriptor = read_header(shm, KIND_RECORDS)
        dtype = decode_dtype(descriptor)
        if dtype.itemsize != itemsize or dtype.hasobject:
            raise ValueError(f"segment {self._name!r} is inconsistent: dtype {dtype} does not match itemsize {itemsize}")
        if expected is not None and expected != dtype:
            raise TypeError(f"segment {self._name!r} holds records of dtype {dtype}, not {expected}")
        self._dtype = dtype
        self._capacity = capacity
        self._mask = capacity - 1
        self._role_held = role
        try:
            self._open(shm, role, force, creator)
            self._bytes = self._view(shm.buf[header_size : header_size + capacity * itemsize])
        except BaseException:
            self._release_views()
            raise
        # A numpy view of the data area; released (dropped) in close() before the unmap.
        self._records: np.ndarray | None = np.frombuffer(self._bytes, dtype=dtype, count=capacity)
        if role == PRODUCER:
            self._pos = self._words[W_PRODUCER_POSITION]
            self._cached = self._words[W_CONSUMER_POSITION]
        else:
            self._pos = self._words[W_CONSUMER_POSITION]
            self._cached = self._words[W_PRODUCER_POSITION]

    def _release_views(self) -> None:
        self._records = None
        super()._release_views()

    @property
    def capacity(self) -> int:
        """How many records the ring holds (a power of two)."""
        return self._capacity

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the records, as recorded in the segment."""
        return self._dtype

    def __repr__(self) -> str:
        state = "closed" if self._shm is None else "open"
        return (
            f"<ShmRecordRing {self._name!r} {ROLE_NAMES[self._role_held]} dtype={self._dtype} "
            f"capacity={self._capacity} {state}>"
        )

    def __len__(self) -> int:
        """Return how many records are published and not yet consumed (a snapshot; either end)."""
        if self._shm is None:
            raise ValueError(f"ShmRecordRing {self._name!r} is closed")
        consumed = self._words[W_CONSUMER_POSITION]
        produced = self._words[W_PRODUCER_POSITION]
        if not 0 <= produced - consumed <= self._capacity:
            raise corrupt(f"positions out of range (producer {produced}, consumer {consumed})")
        return produced - consumed

    # -- producer ---------------------------------------------------------------------------------

    def _free(self, wanted: int) -> int:
        # How many records fit now; the consumer's line is read only when the cache says too few.
        free = self._capacity - (self._pos - self._cached)
        if free < wanted:
            consumed = self._words[W_CONSUMER_POSITION]
            if not 0 <= self._pos - consumed <= self._capacity:
                raise corrupt(f"consumer position {consumed} is out of range (producer at {self._pos})")
            self._cached = consumed
            free = self._capacity - (self._pos - consumed)
        return free

    def push(self, record: Any, stamp: str | None = None) -> bool:
        """Copy one record (anything ``numpy.asarray(record, dtype)`` accepts) into the ring.

        Producer only. Return False when the ring is full. O(itemsize). ``stamp`` names an int64
        field (``TypeError``/``ValueError`` otherwise, even when full) that is set, in the ring's
        copy only, to ``time.perf_counter_ns()`` (CLOCK_MONOTONIC, ``lowlat.now_ns``'s clock) as
        the last write before the record is published: a publish time that leaves out the
        conversion of ``record``, so the consumer can measure the hop through the ring alone.
        """
        if self._role != PRODUCER:
            raise self._closed_error(PRODUCER)
        offset = -1 if stamp is None else stamp_offset(self._dtype, stamp)
        value = np.asarray(record, dtype=self._dtype)
        if value.ndim != 0:
            raise ValueError(f"record must be a single record of dtype {self._dtype}, got shape {value.shape}")
        if self._free(1) == 0:
            return False
        slot = self._pos & self._mask
        self._records[slot] = value  # type: ignore[index]
        if offset >= 0:
            _STAMP.pack_into(self._bytes, slot * self._dtype.itemsize + offset, time.perf_counter_ns())
        self._pos += 1
        self._words[W_PRODUCER_POSITION] = self._pos
        return True

    def write(self, array: np.ndarray) -> int:
        """Copy as many leading records of ``array`` as fit, publish them once, and return how many.

        Producer only; never waits. ``array`` must be a one-dimensional ``numpy.ndarray`` of this
        ring's dtype (another dtype: ``TypeError``). At most two block copies. O(records copied).
        """
        if self._role != PRODUCER:
            raise self._closed_error(PRODUCER)
        array = real_array(array, "array", self._dtype)
        if array.ndim != 1:
            raise ValueError(f"array must be one-dimensional, got shape {array.shape}")
        count = min(len(array), self._free(len(array)))
        if count == 0:
            return 0
        offset = self._pos & self._mask
        first = min(count, self._capacity - offset)
        records = self._records
        records[offset : offset + first] = array[:first]  # type: ignore[index]
        if count > first:
            records[: count - first] = array[first:count]  # type: ignore[index]
        self._pos += count
        self._words[W_PRODUCER_POSITION] = self._pos
        return count

    # -- consumer ---------------------------------------------------------------------------------

    def _available(self, wanted: int) -> int:
        # How many records are readable now; the producer's line is read only when the cache says too few.
        available = self._cached - self._pos
        if available < wanted:
            produced = self._words[W_PRODUCER_POSITION]
            if not 0 <= produced - self._pos <= self._capacity:
                raise corrupt(f"producer position {produced} is out of range (consumer at {self._pos})")
            self._cached = produced
            available = produced - self._pos
        return available

    def _copy_out(self, out: np.ndarray, count: int) -> None:
        offset = self._pos & self._mask
        first = min(count, self._capacity - offset)
        records = self._records
        out[:first] = records[offset : offset + first]  # type: ignore[index]
        if count > first:
            out[first:count] = records[: count - first]  # type: ignore[index]
        self._pos += count
        self._words[W_CONSUMER_POSITION] = self._pos

    def pop(self, default: Any = None) -> Any:
        """Remove the oldest record and return it (a numpy scalar, or a copied ``numpy.void``).

        Consumer only. Return ``default`` when the ring is empty.
        """
        if self._role != CONSUMER:
            raise self._closed_error(CONSUMER)
        if self._available(1) == 0:
            return default
        out = np.empty(1, dtype=self._dtype)
        self._copy_out(out, 1)
        return out[0]

    def read(self, max_records: int | None = None) -> np.ndarray:
        """Remove up to ``max_records`` records (all published ones when None); return them as a new array.

        Consumer only; never waits (an empty array when the ring is empty). Oldest first.
        """
        if self._role != CONSUMER:
            raise self._closed_error(CONSUMER)
        limit = self._capacity
        if max_records is not None:
            limit = as_int(max_records, "max_records")
            if limit < 0:
                raise ValueError(f"max_records must be >= 0 or None, got {limit}")
        available = min(self._available(limit), limit)
        out = np.empty(available, dtype=self._dtype)
        if available:
            self._copy_out(out, available)
        return out

    def read_into(self, out: np.ndarray, timeout: float | None = None) -> int:
        """Move up to ``len(out)`` records into ``out`` (oldest first) and return how many.

        Consumer only. ``out`` must be a writable one-dimensional ``numpy.ndarray`` of this ring's
        dtype (another dtype: ``TypeError``; other shapes or read-only: ``ValueError``), as for
        ``RecordRing.read_into``; a C-contiguous ``out`` is filled in place with nothing allocated,
        a strided one (``a[::2]``) through one temporary array. When the ring is empty, return 0 at
        once (``timeout=None`` or 0), or busy-spin up to ``timeout`` seconds (``float('inf')``:
        forever) for the first record, then move what is there: the waiting loop runs inside the
        call (in C, without the GIL, in the compiled backend), so a record is seen within a few
        polls of its publication instead of a Python loop's turn.
        """
        if self._role != CONSUMER:
            raise self._closed_error(CONSUMER)
        budget = 0 if timeout is None else timeout_ns(timeout)
        out = real_array(out, "out", self._dtype)
        if not out.flags.writeable:
            raise ValueError("out must be writable")
        count = min(len(out), self._available(len(out)))
        if not count and budget and len(out):
            waiter = _Waiter(WAIT_SPIN, budget)
            while waiter.pause():
                if self._role != CONSUMER:  # closed by another thread meanwhile
                    raise self._closed_error(CONSUMER)
                if self._available(1):
                    break
            count = min(len(out), self._available(len(out)))
        if count:
            if out.flags.c_contiguous:
                self._copy_out(out, count)
            else:
                staged = np.empty(count, dtype=self._dtype)
                self._copy_out(staged, count)
                out[:count] = staged
        return count
