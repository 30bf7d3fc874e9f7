"""What both halves of :mod:`lowlat.batching` share: argument checks, the timer thread, statistics.

None of this is on the hot path: ``add`` and ``poll`` never call into this module except to check
an explicit ``now_ns`` and, once per batch, to wake an idle timer thread.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Optional

from .. import _validate as _v

#: Largest ``max_batch``: the compiled half preallocates an object pointer and a stamp per item.
MAX_BATCH = 1 << 20
INT64_MAX = _v.INT64_MAX

# Flush reasons, counted separately in the statistics.
SIZE, DEADLINE, EXPLICIT = 1, 2, 3
#: Up to this many items a flush records added latencies one by one (cheaper than record_many).
SMALL_BATCH = 16


def check_max_batch(value: object) -> int:
    return _v.bounded_count(value, "max_batch", 1, MAX_BATCH)


def check_max_delay_ns(value: object) -> int:
    number = _v.as_int64(value, "max_delay_ns")
    if number < 0:
        raise ValueError(f"max_delay_ns must be >= 0, got {number}")
    return number


def check_on_batch(value: object) -> Optional[Callable[[list], Any]]:
    return _v.callable_or_none(value, "on_batch")  # type: ignore[return-value]


def check_now_ns(value: object) -> int:
    return _v.as_int64(value, "now_ns")


def batch_size_histogram(histogram_class: type, max_batch: int) -> Any:
    """A histogram whose every batch size 1..max_batch is exact (one unit per bucket up to 2,048)."""
    return histogram_class(1, max(2, max_batch), 3)


def statistics(batcher: Any) -> dict:
    """The batcher's counters and the percentiles of its two histograms, as one dict."""
    sizes, latency = batcher.batch_sizes, batcher.added_latency
    result = {
        "items_added": batcher.items_added,
        "items_flushed": batcher.items_flushed,
        "pending": len(batcher),
        "batches": batcher.batches,
        "size_flushes": batcher.size_flushes,
        "deadline_flushes": batcher.deadline_flushes,
        "explicit_flushes": batcher.explicit_flushes,
        "errors": batcher.errors,
    }
    if sizes.count:
        result.update(
            mean_batch=sizes.mean,
            p50_batch=sizes.percentile(50),
            p99_batch=sizes.percentile(99),
            max_batch_seen=sizes.max,
        )
    if latency.count:
        result.update(
            mean_added_ns=latency.mean,
            p50_added_ns=latency.percentile(50),
            p99_added_ns=latency.percentile(99),
            p999_added_ns=latency.percentile(99.9),
            max_added_ns=latency.max,
        )
    return result


def _report(exc: BaseException) -> None:
    """Hand an exception the timer thread caught to ``threading.excepthook`` (stderr by default)."""
    hook = threading.excepthook
    try:
        hook(threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, threading.current_thread())))
    except Exception:  # a broken hook must not end the timer
        sys.stderr.write(f"lowlat.batching: timer thread: {type(exc).__name__}: {exc}\n")


class DeadlineTimer:
    """The background thread of ``AdaptiveBatcher.start()``: flushes a batch when its deadline passes.

    It sleeps until the pending batch's deadline (``batcher.deadline_ns``), then calls
    ``batcher.poll()``. With nothing pending it sets ``idle`` and waits on ``wake``, which the
    batcher sets when an item arrives in an empty batcher (checked once per batch, not per item).
    An exception ``on_batch`` raises here is counted by the batcher and reported through
    ``threading.excepthook``; the thread goes on. The deadline only moves later while it sleeps
    (a flush makes a newer item the oldest), so waking at the old deadline and looking again is
    enough -- adds never need to interrupt a timed sleep.
    """

    __slots__ = ("batcher", "wake", "idle", "stopping", "thread")

    def __init__(self, batcher: Any) -> None:
        self.batcher = batcher
        self.wake = threading.Event()
        self.idle = False
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"lowlat-batcher-timer-{id(batcher):x}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def notify(self) -> None:
        """Wake the thread if it waits for a first item (the caller just added one to an empty batch)."""
        if self.idle:
            self.idle = False
            self.wake.set()

    def stop(self) -> None:
        """Ask the thread to end; join it unless called from the thread itself (from ``on_batch``)."""
        self.stopping = True
        self.wake.set()
        if threading.current_thread() is not self.thread:
            self.thread.join()

    def _run(self) -> None:
        batcher, wake, now = self.batcher, self.wake, time.perf_counter_ns
        while not self.stopping:
            wake.clear()
            self.idle = True  # from here an add to an empty batch sets wake
            due = batcher.deadline_ns
            if due is None:
                wake.wait()
                continue
            self.idle = False
            wait_ns = due - now()
            if wait_ns > 0:
                wake.wait(wait_ns / 1e9)
                continue
            try:
                batcher.poll()
            except BaseException as exc:  # noqa: BLE001 -- the batcher counted it; keep the deadline promise
                _report(exc)
                del exc
