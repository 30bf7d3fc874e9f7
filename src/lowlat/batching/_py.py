"""Pure-Python twin of :mod:`lowlat.batching._c`: the source of truth for names, signatures, docstrings.

Where the compiled half relies on the GIL (no Python code runs between reading and writing its
state), this half takes a short state lock; both take the same reentrant delivery lock around
every flush, so the two behave alike under threads.
"""

from __future__ import annotations

import threading as _threading
import time as _time
from types import GenericAlias
from typing import Any, Callable, ClassVar, NoReturn, Optional, SupportsIndex

import numpy as np

from ..hist._py import LatencyHistogram
from . import _shared as _s
from .._twins import Final as _Final

__all__ = ["AdaptiveBatcher"]

_now = _time.perf_counter_ns


def _not_picklable(self: object, protocol: SupportsIndex = 0) -> NoReturn:
    raise TypeError(f"cannot pickle {type(self).__name__!r} object")


class AdaptiveBatcher(_Final):
    """Collect items one at a time and hand them on in batches, by size or by deadline.

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

    __slots__ = (
        "_max_batch",
        "_max_delay_ns",
        "_on_batch",
        "_items",
        "_stamps",
        "_due",
        "_state",
        "_deliver",
        "_timer",
        "_sizes",
        "_latency",
        "_items_added",
        "_items_flushed",
        "_batches",
        "_size_flushes",
        "_deadline_flushes",
        "_explicit_flushes",
        "_errors",
    )
    __reduce_ex__ = _not_picklable
    __class_getitem__: ClassVar[classmethod[Any, [Any], GenericAlias]] = classmethod(GenericAlias)

    def __init__(self, max_batch: int, max_delay_ns: int, on_batch: Optional[Callable[[list], Any]] = None) -> None:
        """Create a batcher of at most ``max_batch`` items (1 to 2**20) whose items wait at most ``max_delay_ns`` (>= 0).

        ``on_batch`` is a callable taking one list, or None to have batches returned. Raise
        ``TypeError`` for a non-integer size or delay or a non-callable ``on_batch``, and
        ``ValueError`` for a size or delay out of range.
        """
        self._max_batch = _s.check_max_batch(max_batch)
        self._max_delay_ns = _s.check_max_delay_ns(max_delay_ns)
        self._on_batch = _s.check_on_batch(on_batch)
        self._items: list[Any] = []
        self._stamps: list[int] = []
        self._due = 0  # the oldest pending item's deadline; meaningful only while items are pending
        self._state = _threading.Lock()  # guards _items/_stamps/_due/_items_added; never held across user code
        self._deliver = _threading.RLock()  # held by every flush, across on_batch
        self._timer: Optional[_s.DeadlineTimer] = None
        self._sizes = _s.batch_size_histogram(LatencyHistogram, self._max_batch)
        self._latency = LatencyHistogram()
        self._items_added = 0
        self._items_flushed = 0
        self._batches = 0
        self._size_flushes = 0
        self._deadline_flushes = 0
        self._explicit_flushes = 0
        self._errors = 0

    @property
    def max_batch(self) -> int:
        """The number of items that flushes a batch at once."""
        return self._max_batch

    @property
    def max_delay_ns(self) -> int:
        """How long (ns) the oldest pending item may wait before its batch is flushed."""
        return self._max_delay_ns

    @property
    def on_batch(self) -> Optional[Callable[[list], Any]]:
        """The callable batches are delivered to, or None when flushing calls return them."""
        return self._on_batch

    @property
    def deadline_ns(self) -> Optional[int]:
        """When the pending batch is due (ns on lowlat's clock), or None when nothing is pending."""
        return self._due if self._items else None

    @property
    def running(self) -> bool:
        """Whether the timer thread of ``start()`` is running."""
        return self._timer is not None and self._timer.thread.is_alive()

    @property
    def batch_sizes(self) -> LatencyHistogram:
        """A ``LatencyHistogram`` of the number of items in each batch flushed (exact up to 2,048)."""
        return self._sizes

    @property
    def added_latency(self) -> LatencyHistogram:
        """A ``LatencyHistogram`` of the ns each flushed item waited between its ``add`` and its flush."""
        return self._latency

    @property
    def items_added(self) -> int:
        """How many items ``add`` has taken."""
        return self._items_added

    @property
    def items_flushed(self) -> int:
        """How many items have left in batches."""
        return self._items_flushed

    @property
    def batches(self) -> int:
        """How many non-empty batches have been flushed."""
        return self._batches

    @property
    def size_flushes(self) -> int:
        """How many batches were flushed because they reached ``max_batch``."""
        return self._size_flushes

    @property
    def deadline_flushes(self) -> int:
        """How many batches were flushed because their oldest item reached ``max_delay_ns``."""
        return self._deadline_flushes

    @property
    def explicit_flushes(self) -> int:
        """How many non-empty batches ``flush()`` (or ``close()``) flushed."""
        return self._explicit_flushes

    @property
    def errors(self) -> int:
        """How many calls of ``on_batch`` raised."""
        return self._errors

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (
            f"AdaptiveBatcher(max_batch={self._max_batch}, max_delay_ns={self._max_delay_ns}, "
            f"pending={len(self._items)}, batches={self._batches})"
        )

    def add(self, item: Any, /, now_ns: Optional[int] = None) -> Optional[list]:
        """Add ``item`` (stamped ``now_ns``, default now); flush if that fills the batch or the oldest is due.

        Return the flushed batch (a list, ``item`` last) when there is no ``on_batch``, else None;
        None when nothing was flushed. Raise ``TypeError``/``ValueError`` for a ``now_ns`` that is
        not an int64, and whatever ``on_batch`` raises. O(1), O(batch) when it flushes.
        """
        now = _now() if now_ns is None else _s.check_now_ns(now_ns)
        with self._state:
            items = self._items
            pending = len(items)
            due = self._due if pending else min(now + self._max_delay_ns, _s.INT64_MAX)
            if pending + 1 < self._max_batch and now < due:
                items.append(item)
                self._stamps.append(now)
                self._due = due
                self._items_added += 1
                appended = True
            else:
                appended = False
        if appended:
            if pending == 0 and self._timer is not None:
                self._timer.notify()
            return None
        return self._flush(now, _s.SIZE, item, True)

    def poll(self, now_ns: Optional[int] = None) -> Optional[list]:
        """Flush the pending batch if its deadline has passed at ``now_ns`` (default now).

        Return the flushed batch when there is no ``on_batch``, else None; None when nothing was
        due. Call it from the owner's loop when no item arrives. O(1) when nothing is due.
        """
        if not self._items:
            return None
        now = _now() if now_ns is None else _s.check_now_ns(now_ns)
        if now < self._due:
            return None
        return self._flush(now, _s.DEADLINE, None, False)

    def flush(self, now_ns: Optional[int] = None) -> Optional[list]:
        """Flush every pending item now (``now_ns``, default now, ends their added latency).

        Return the batch (``[]`` when nothing is pending) when there is no ``on_batch``, else None.
        """
        now = _now() if now_ns is None else _s.check_now_ns(now_ns)
        batch = self._flush(now, _s.EXPLICIT, None, False)
        if batch is None and self._on_batch is None:
            return []
        return batch

    def start(self) -> None:
        """Start the timer thread that flushes each batch when its deadline passes.

        Raise ``ValueError`` without ``on_batch`` (the thread has nowhere to return a batch) and
        ``RuntimeError`` if it is already running. Stop it with ``stop()`` or ``close()``.
        """
        if self._on_batch is None:
            raise ValueError("start() needs on_batch: a timer thread has nowhere to return a batch")
        if self.running:
            raise RuntimeError("the timer thread is already running")
        timer = _s.DeadlineTimer(self)
        self._timer = timer
        timer.start()

    def stop(self) -> None:
        """Stop the timer thread and wait for it (not when called from ``on_batch`` on that thread).

        Pending items stay pending. Does nothing when no timer runs.
        """
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.stop()

    def close(self) -> Optional[list]:
        """Stop the timer thread and flush what is pending; return what ``flush()`` returns.

        Leaving a ``with`` block calls ``stop()``, then ``flush()`` when there is an ``on_batch``;
        without one, pending items stay for the owner to ``flush()``.
        """
        self.stop()
        return self.flush()

    def __enter__(self) -> "AdaptiveBatcher":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        if self._on_batch is not None:
            self.flush()

    def statistics(self) -> dict:
        """Return the counters and the p50/p99 (and p99.9 of added latency) of both histograms as a dict."""
        return _s.statistics(self)

    def reset_statistics(self) -> None:
        """Zero the counters and both histograms; pending items stay pending."""
        with self._deliver:
            self._sizes.reset()
            self._latency.reset()
            with self._state:
                self._items_added = 0
            self._items_flushed = 0
            self._batches = 0
            self._size_flushes = 0
            self._deadline_flushes = 0
            self._explicit_flushes = 0
            self._errors = 0

    def _flush(self, now: int, reason: int, item: Any, has_item: bool) -> Optional[list]:
        # Every flush holds _deliver from taking the batch to delivering it: batches are formed and
        # delivered in one order, and statistics (not thread-safe histograms) are written by one thread.
        with self._deliver:
            with self._state:
                items = self._items
                pending = len(items)
                if has_item:  # an add: look again, another flush may have run while we waited
                    due = self._due if pending else min(now + self._max_delay_ns, _s.INT64_MAX)
                    if pending + 1 < self._max_batch and now < due:
                        items.append(item)
                        self._stamps.append(now)
                        self._due = due
                        self._items_added += 1
                        notify = pending == 0
                        batch = None
                    else:
                        items.append(item)
                        self._stamps.append(now)
                        self._items_added += 1
                        batch, stamps = items, self._stamps
                        if pending + 1 < self._max_batch:
                            reason = _s.DEADLINE
                elif pending == 0 or (reason == _s.DEADLINE and now < self._due):
                    return None
                else:
                    batch, stamps = items, self._stamps
                if batch is not None:
                    self._items = []
                    self._stamps = []
            if batch is None:
                if notify and self._timer is not None:
                    self._timer.notify()
                return None
            self._record(batch, stamps, now, reason)
            on_batch = self._on_batch
            if on_batch is None:
                return batch
            try:
                on_batch(batch)
            except BaseException:
                self._errors += 1
                raise
            return None

    def _record(self, batch: list, stamps: list, now: int, reason: int) -> None:
        count = len(batch)
        self._items_flushed += count
        self._batches += 1
        if reason == _s.SIZE:
            self._size_flushes += 1
        elif reason == _s.DEADLINE:
            self._deadline_flushes += 1
        else:
            self._explicit_flushes += 1
        self._sizes.record(count)
        waited = [min(max(now - stamp, 0), _s.INT64_MAX) for stamp in stamps]
        if count <= _s.SMALL_BATCH:
            record = self._latency.record
            for value in waited:
                record(value)
        else:
            self._latency.record_many(np.array(waited, dtype=np.int64))
