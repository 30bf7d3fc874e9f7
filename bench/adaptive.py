"""Experiment 11, adaptive batching under load (seed section 8, the ``AdaptiveBatcher`` cell).

The seed's ``demo_adaptive_batching`` with the seed's parameters (at most 50 items, 500 us): the
seed's class, written here the seed's way (a list, flushed only from ``add``), against
``lowlat.AdaptiveBatcher`` driven by ``poll()`` from the owner's loop and by its timer thread,
under bursty and quiet real-time load. Every item is stamped when added and checked when its
batch arrives; batch sizes and added latency are reported as distributions (percentiles, plus
each histogram's HdrHistogram encoding in ``extra``). Then the cost per item of ``add``.
"""

from __future__ import annotations

import functools
import gc
import time
from typing import Any, Callable, Optional

from ._harness import Case, Progress, Row, backend_of, backends, compare
from .batching import distribution_note, new_histogram, percentiles_of

TITLE = "Adaptive batching: the seed's batcher against lowlat's under bursty and quiet load"
SEED = "section 8, AdaptiveBatcher and demo_adaptive_batching"
SEED_SAYS = ("The seed said its AdaptiveBatcher balances latency and throughput by flushing on size or on time "
             "(500 us); its demo printed batch sizes, never how long an item waited.")
STEPS = 3
LIMIT_US = 500
LOADS = {"bursty": ("bursts of 120 items, 3 ms apart", 3_000_000), "quiet": ("one item every 150 us", 150_000)}
SEED_LABEL = "seed AdaptiveBatcher (flushes only in add)"

_now = time.perf_counter_ns


class SeedAdaptiveBatcher:
    """The seed's batcher as the seed wrote it: a list, checked only when an item is added.

    A batch leaves when it holds ``max_batch_size`` items, or when an ``add`` finds at least
    ``min_batch_size`` items and ``max_wait_us`` passed since the *last flush*. Nothing looks at
    the clock between adds, so the last items of a burst wait for the next item (or ``flush()``).
    Statistics keep every batch size in a growing list.
    """

    def __init__(self, min_batch_size: int = 1, max_batch_size: int = 100, max_wait_us: float = 100,
                 processor: Optional[Callable[[list], Any]] = None) -> None:
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size
        self.max_wait_ns = int(max_wait_us * 1000)
        self.processor = processor or (lambda items: items)
        self.buffer: list = []
        self.last_flush_time = _now()
        self.stats: dict = {"total_items": 0, "total_batches": 0, "batch_sizes": []}

    def add(self, item: Any) -> Any:
        self.buffer.append(item)
        since_flush = _now() - self.last_flush_time
        if len(self.buffer) >= self.max_batch_size or (
            len(self.buffer) >= self.min_batch_size and since_flush >= self.max_wait_ns
        ):
            return self.flush()
        return None

    def flush(self) -> Any:
        if not self.buffer:
            return []
        batch = self.buffer
        self.buffer = []
        self.last_flush_time = _now()
        self.stats["total_items"] += len(batch)
        self.stats["total_batches"] += 1
        self.stats["batch_sizes"].append(len(batch))
        return self.processor(batch)


def _sleep_until(target_ns: int) -> None:
    """Sleep until ``target_ns`` (late by the OS's wake-up time, ~60-100 us).

    No spinning: on a machine with more runnable threads than cores, a thread that spins uses up
    its share and is then preempted for whole milliseconds, which would show up as batch latency.
    """
    remaining = target_ns - _now()
    if remaining > 0:
        time.sleep(remaining / 1e9)


def _arrivals(load: str, quick: bool) -> list[int]:
    """Arrival offsets (ns) of each item: bursts separated by quiet gaps, or a steady trickle."""
    if load == "bursty":
        bursts = 8 if quick else 25
        return [k * 3_000_000 for k in range(bursts) for _ in range(120)]  # 120 at once, then 3 ms quiet
    items = 300 if quick else 1_500
    return [k * 150_000 for k in range(items)]  # one item every 150 us


class _Sink:
    """on_batch / processor: stamps each item's added latency and the batch size, externally."""

    def __init__(self) -> None:
        self.latency = new_histogram()
        self.sizes = new_histogram()

    def __call__(self, batch: list) -> list:
        now = _now()
        self.sizes.record(len(batch))
        record = self.latency.record
        for stamp in batch:
            record(now - stamp)
        return batch


def _drive_seed(arrivals: list[int], gap_ns: int) -> _Sink:
    sink = _Sink()
    b = SeedAdaptiveBatcher(min_batch_size=5, max_batch_size=50, max_wait_us=500, processor=sink)
    start = _now() + 1_000_000
    for offset in arrivals:
        _sleep_until(start + offset)
        b.add(_now())
    _sleep_until(start + arrivals[-1] + gap_ns)  # the owner shuts down one gap later and flushes
    b.flush()
    return sink


def _drive_poll(module, arrivals: list[int], gap_ns: int) -> tuple[_Sink, Any]:
    sink = _Sink()
    b = module.AdaptiveBatcher(50, 500_000, sink)
    start = _now() + 1_000_000
    poll = b.poll
    for offset in arrivals:
        target = start + offset
        while True:  # the owner's loop: wake for the next item or the pending batch's deadline
            due = b.deadline_ns
            if due is None or due >= target:
                _sleep_until(target)
                break
            _sleep_until(due)
            poll()
        b.add(_now())
    end = start + arrivals[-1] + gap_ns
    while len(b):
        _sleep_until(min(b.deadline_ns, end))
        poll()
    return sink, b


def _drive_timer(module, arrivals: list[int], gap_ns: int) -> tuple[_Sink, Any]:
    sink = _Sink()
    b = module.AdaptiveBatcher(50, 500_000, sink)
    b.start()
    try:
        start = _now() + 1_000_000
        for offset in arrivals:
            target = start + offset
            remaining = target - _now()
            if remaining > 0:
                time.sleep(remaining / 1e9)  # the owner only sleeps; the timer thread keeps the deadline
            b.add(_now())
        limit = _now() + 2 * gap_ns + 50_000_000
        while len(b) and _now() < limit:
            time.sleep(0.0002)
    finally:
        b.close()
    return sink, b


def _latency_group(load: str) -> str:
    return (f"adaptive batching, {load} load ({LOADS[load][0]}; at most 50 items, {LIMIT_US} us): "
            "added latency per item")


def _contenders(arrivals: list[int], gap_ns: int, modules) -> list[tuple[str, Callable[[], Any]]]:
    """``(label, drive)``: the seed's batcher, then lowlat's per backend (poll; the compiled one's timer too)."""
    contenders: list[tuple[str, Callable[[], Any]]] = [(SEED_LABEL, lambda: (_drive_seed(arrivals, gap_ns), None))]
    for label, module in modules:
        contenders.append((f"AdaptiveBatcher ({label}) + poll() in the owner's loop",
                           functools.partial(_drive_poll, module, arrivals, gap_ns)))
        if label == "cython":
            contenders.append((f"AdaptiveBatcher ({label}) + its timer thread",
                               functools.partial(_drive_timer, module, arrivals, gap_ns)))
    return contenders


def _drive_gc_off(drive: Callable[[], Any]) -> tuple[_Sink, Any]:
    gc.collect()
    gc.disable()  # as every timed loop of lowlat bench: a collection is not the batcher's latency
    try:
        return drive()
    finally:
        gc.enable()


def _contender_rows(load: str, label: str, sink: _Sink, batcher: Any) -> list[Row]:
    own = ""
    if batcher is not None:
        own = f"; the batcher's own added_latency p99 {batcher.added_latency.percentile(99) / 1000:,.1f} us"
    latency = sink.latency
    return [
        Row(_latency_group(load), label, latency.percentile(50) / 1000, "us p50", backend=backend_of(label),
            note=distribution_note(latency, True) + own,
            distribution={float(p): latency.percentile(p) / 1000 for p in (50, 90, 99, 99.9)},
            extra={"percentiles_ns": percentiles_of(latency), "hdr": latency.encode(), "seed": SEED}),
        Row(f"adaptive batching, {load} load: items per batch", label, float(sink.sizes.percentile(50)), "items p50",
            higher_is_better=True, backend=backend_of(label),
            note=distribution_note(sink.sizes, False) + f", mean {sink.sizes.mean:.1f}, {sink.sizes.count} batches",
            extra={"percentiles": percentiles_of(sink.sizes), "hdr": sink.sizes.encode()}),
    ]


def _load_rows(load: str, quick: bool, modules) -> list[Row]:
    arrivals = _arrivals(load, quick)
    rows: list[Row] = []
    for label, drive in _contenders(arrivals, LOADS[load][1], modules):
        sink, batcher = _drive_gc_off(drive)
        rows += _contender_rows(load, label, sink, batcher)
    return rows


def _cost_rows(quick: bool, modules) -> list[Row]:
    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    group = "adaptive batching: cost per item, add() into batches of 50 delivered to a no-op callable"
    cases = []

    def seed_loop(count, b=SeedAdaptiveBatcher(min_batch_size=5, max_batch_size=50, max_wait_us=10**9,
                                                processor=lambda batch: None)):
        add = b.add
        for i in range(count):
            add(i)

    cases.append(Case("seed AdaptiveBatcher.add", seed_loop, n // 5))
    for label, module in modules:
        b = module.AdaptiveBatcher(50, 10**15, lambda batch: None)

        def loop(count, add=b.add):
            for i in range(count):
                add(i)

        cases.append(Case(f"AdaptiveBatcher.add ({label})", loop, n if label == "cython" else n // 10))
        idle = module.AdaptiveBatcher(50, 10**15, lambda batch: None)
        idle.add(0)

        def poll_loop(count, poll=idle.poll):
            for _ in range(count):
                poll()

        cases.append(Case(f"AdaptiveBatcher.poll, nothing due ({label})", poll_loop, n))
    figures = compare(cases, repeats=repeats)
    return [Row(group, c.label, v, "ns/item", reference=(i == 0), backend=backend_of(c.label))
            for i, (c, v) in enumerate(zip(cases, figures))]


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; ``quick`` keeps it to a few seconds."""
    modules = backends("lowlat.batching")
    progress.step("adaptive: cost per item")
    rows = _cost_rows(quick, modules)
    progress.step("adaptive: under bursty load")
    rows += _load_rows("bursty", quick, modules)
    progress.step("adaptive: under quiet load")
    return rows + _load_rows("quiet", quick, modules)


def _p90_p99(rows: list[Row], load: str, label: str) -> str:
    row = next(r for r in rows if r.group == _latency_group(load) and r.label == label)
    ns = row.extra["percentiles_ns"]
    return f"p90 {ns['90'] / 1000:,.0f} us, p99 {ns['99'] / 1000:,.0f} us"


def conclude(rows: list[Row]) -> str:
    """Say what this run shows: how long items waited against the 500 us limit, per load and contender."""
    parts = []
    for load in LOADS:
        ours = "; ".join(f"{r.label.replace('AdaptiveBatcher ', '')}: {_p90_p99(rows, load, r.label)}"
                         for r in rows if r.group == _latency_group(load) and r.label != SEED_LABEL)
        parts.append(f"{load} load: the seed's batcher {_p90_p99(rows, load, SEED_LABEL)} -- lowlat's {ours}")
    return (f"Against a {LIMIT_US} us limit, items waited (added latency) under " + "; under ".join(parts)
            + ". The seed's batcher looks at the clock only when an item arrives and counts from the last flush, "
            "so a burst's remainder waits for the next burst; lowlat's keeps the limit without new items. Whatever "
            "passes the limit is the time the flushing thread waited to be scheduled, the same for every contender.")
