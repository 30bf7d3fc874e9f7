"""``lowlat bench`` sections 10 and 11: batch vs single, and adaptive batching under load.

Section 10 reproduces the seed's cell "8. Batch Processing vs Single Processing"
(``benchmark_batch_vs_single``): the same ``item * 1.001 + 0.01`` work, one item per call against
numpy batches of 10 to 10,000, as whole timed loops (the seed timed every call with a
``perf_counter_ns`` pair, which costs more than the single-item work; that figure is shown too).
It adds what the seed's table leaves out: how long each batch takes, i.e. the latency a batch adds
to its last item, and the wait to fill it.

Section 11 reproduces the seed's ``AdaptiveBatcher`` cell (``demo_adaptive_batching``) with the
seed's parameters (at most 50 items, 500 us): the seed's class, written here the seed's way (a
list, flushed only from ``add``), against ``lowlat.batching.AdaptiveBatcher`` driven by ``poll()``
from the owner's loop and by its timer thread, under bursty and quiet real-time load. Every item is
stamped when added and checked when its batch arrives; batch sizes and added latency are reported
as distributions (percentiles, plus each histogram's HdrHistogram encoding in ``extra``).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Optional

import numpy as np

from ._benchkit import Case, Progress, Row, compare

STEPS = 5

SEED_CELL_10 = "seed 'Batch Processing vs Single Processing' (benchmark_batch_vs_single)"
SEED_CELL_11 = "seed 'AdaptiveBatcher' (demo_adaptive_batching)"

_now = time.perf_counter_ns


# ----------------------------------------------------------------------------- the seed's way


def process_single(item: float) -> float:
    """The seed's per-item work."""
    return item * 1.001 + 0.01


def process_batch(items: np.ndarray) -> np.ndarray:
    """The seed's vectorised work."""
    return items * 1.001 + 0.01


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


# ----------------------------------------------------------------------------- helpers


def _histogram():
    from lowlat import LatencyHistogram

    return LatencyHistogram()


_PCTS = (50, 90, 99, 99.9, 100)


def _distribution(h) -> dict:
    return {str(p): int(h.percentile(p)) for p in _PCTS} | {"count": int(h.count), "mean": float(h.mean)}


def _dist_note(h, unit_ns: bool) -> str:
    def f(v):
        return f"{v / 1000:,.1f}" if unit_ns else f"{v:,}"

    parts = [f"p{p:g} {f(h.percentile(p))}" for p in (90, 99, 99.9)]
    return ", ".join(parts) + f", max {f(h.max)}" + (" us" if unit_ns else "")


def _batcher_modules() -> list[tuple[str, Any]]:
    """``(backend, module)`` of ``lowlat.batching`` for each backend that imports here, compiled first."""
    from ._backend import BACKENDS, load

    found = []
    for label in BACKENDS:
        try:
            found.append((label, load("lowlat.batching", label)))
        except ImportError:
            pass
    return found


# ----------------------------------------------------------------------------- section 10


def _single_loop(values):
    def loop(n):
        f = process_single
        for i in range(n):
            f(values[i])

    return loop


def _batch_loop(data: np.ndarray, size: int):
    batches = [data[i : i + size] for i in range(0, len(data) - size + 1, size)]

    def loop(n):
        f = process_batch
        for i in range(n):
            f(batches[i])

    return loop, len(batches)


def _seed_way_single_ns(values, n: int) -> float:
    """The seed's figure: a perf_counter_ns pair around every call, samples in a list, their mean."""
    clock, f = _now, process_single
    samples = []
    for i in range(n):
        t0 = clock()
        f(values[i])
        samples.append(clock() - t0)
    return sum(samples) / len(samples)


def _section_10(quick: bool, progress: Progress) -> list[Row]:
    n_items = 20_000 if quick else 100_000
    repeats = 3 if quick else 7
    data = np.random.default_rng(4).standard_normal(n_items)
    scalars = list(data)  # numpy float64 scalars: what the seed's `for item in data` yields
    floats = data.tolist()
    single_n = min(n_items, 10_000)
    sizes = [1, 10, 100, 1_000, 10_000]
    rows: list[Row] = []

    progress.step("batch: per-item cost, single vs batches")
    group = f"10 batch vs single: ns per item ({SEED_CELL_10})"
    cases = [
        Case("single, numpy scalars (the seed's loop), whole loop", _single_loop(scalars), single_n),
        Case("single, Python floats, whole loop", _single_loop(floats), single_n),
    ]
    for size in sizes:
        loop, count = _batch_loop(data, size)
        cases.append(Case(f"numpy batch of {size:,}", loop, count, ops=size))
    figures = compare(cases, repeats=repeats)
    seed_way = _seed_way_single_ns(scalars, single_n)
    rows.append(Row(group, "single, the seed's way: perf_counter_ns pair around each call", seed_way, "ns/item",
                    note="timer pair included: the seed's figure",
                    extra={"seed": SEED_CELL_10}))
    for case, value in zip(cases, figures):
        rows.append(Row(group, case.label, value, "ns/item", reference=case.label.startswith("single, numpy")))
    by_label = {c.label: v for c, v in zip(cases, figures)}
    single = by_label[cases[0].label]
    best_size, best = min(((s, by_label[f"numpy batch of {s:,}"]) for s in sizes), key=lambda t: t[1])
    batch_1 = by_label["numpy batch of 1"]
    rows[0].extra["finding"] = (
        "The seed concluded that batching trades latency for throughput (its cell was never run). "
        f"Measured as whole loops, one item costs {single:,.0f} ns as a numpy scalar ({by_label[cases[1].label]:,.0f} ns "
        f"as a Python float; the seed's timed-call figure {seed_way:,.0f} ns includes the timer); a numpy batch of one "
        f"costs {batch_1:,.0f} ns, and batches of {best_size:,} reach {best:.2f} ns per item "
        f"({single / best if best else float('inf'):,.0f}x cheaper): the per-call cost, not the work, is what batching saves."
    )

    progress.step("batch: the latency each batch adds")
    group = "10 batch vs single: time to process one batch = latency it adds to its last item"
    for size in [1] + sizes[1:]:
        h = _histogram()
        batches = [data[i : i + size] for i in range(0, n_items - size + 1, size)]
        reps = max(1, (2_000 if quick else 20_000) // len(batches))
        clock, f, record = _now, process_batch, h.record
        for batch in batches[:50]:  # warm-up
            f(batch)
        for _ in range(reps):
            for batch in batches:
                t0 = clock()
                f(batch)
                record(clock() - t0)
        fill_us = (size - 1) * 1.0  # at 1 M items/s, the first item waits this long for the batch to fill
        rows.append(Row(group, f"batch of {size:,}: p50 processing time", h.percentile(50) / 1000, "us",
                        note=f"{_dist_note(h, True)}; filling it at 1 M items/s adds {fill_us:,.0f} us to its first item",
                        extra={"percentiles_ns": _distribution(h), "hdr": h.encode(),
                               "fill_us_at_1M_per_s": fill_us}))
    return rows


# ----------------------------------------------------------------------------- section 11


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
        self.latency = _histogram()
        self.sizes = _histogram()

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


def _load_rows(load: str, quick: bool, modules) -> list[Row]:
    arrivals = _arrivals(load, quick)
    gap_ns = 3_000_000 if load == "bursty" else 150_000
    what = "bursts of 120 items, 3 ms apart" if load == "bursty" else "one item every 150 us"
    contenders: list[tuple[str, Callable[[], Any]]] = [("seed AdaptiveBatcher (flushes only in add)",
                                                        lambda: (_drive_seed(arrivals, gap_ns), None))]
    for label, module in modules:
        contenders.append((f"AdaptiveBatcher ({label}) + poll() in the owner's loop",
                           lambda m=module: _drive_poll(m, arrivals, gap_ns)))
        if label == "cython":
            contenders.append((f"AdaptiveBatcher ({label}) + its timer thread",
                               lambda m=module: _drive_timer(m, arrivals, gap_ns)))
    rows: list[Row] = []
    lat_group = f"11 adaptive batching, {load} load ({what}; at most 50 items, 500 us): added latency per item"
    size_group = f"11 adaptive batching, {load} load: items per batch"
    results = []
    for label, drive in contenders:
        gc.collect()
        gc.disable()  # as every timed loop of lowlat bench: a collection is not the batcher's latency
        try:
            sink, batcher = drive()
        finally:
            gc.enable()
        results.append((label, sink))
        own = ""
        if batcher is not None:
            own = f"; the batcher's own added_latency p99 {batcher.added_latency.percentile(99) / 1000:,.1f} us"
        rows.append(Row(lat_group, label, sink.latency.percentile(50) / 1000, "us p50",
                        note=_dist_note(sink.latency, True) + own,
                        extra={"percentiles_ns": _distribution(sink.latency), "hdr": sink.latency.encode(),
                               "seed": SEED_CELL_11}))
        rows.append(Row(size_group, label, float(sink.sizes.percentile(50)), "items p50",
                        higher_is_better=True,
                        note=_dist_note(sink.sizes, False) + f", mean {sink.sizes.mean:.1f}, {sink.sizes.count} batches",
                        extra={"percentiles": _distribution(sink.sizes), "hdr": sink.sizes.encode()}))
    def pct_us(sink, p):
        return sink.latency.percentile(p) / 1000

    seed_sink = results[0][1]
    ours = "; ".join(f"{label.replace('AdaptiveBatcher ', '')}: p90 {pct_us(sink, 90):,.0f} us, p99 "
                     f"{pct_us(sink, 99):,.0f} us" for label, sink in results[1:])
    first = next(r for r in rows if r.group == lat_group)
    first.extra["finding"] = (
        "The seed concluded that its batcher balances latency and throughput by flushing on size or on time. "
        f"Under {load} load against a 500 us limit its items waited p90 {pct_us(seed_sink, 90):,.0f} us, p99 "
        f"{pct_us(seed_sink, 99):,.0f} us: its time check runs only when an item arrives"
        + (", so a burst's remainder waits for the next burst. " if load == "bursty" else
           " and counts from the last flush, not from the oldest item. ")
        + f"lowlat's batcher keeps the limit without new items ({ours}); whatever passes 500 us is the time the "
        "thread that flushes waited to be scheduled -- large on a machine shared with other work, and the same "
        "for every contender."
    )
    return rows


def _cost_rows(quick: bool, modules) -> list[Row]:
    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    group = "11 adaptive batching: cost per item, add() into batches of 50 delivered to a no-op callable"
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
    return [Row(group, c.label, v, "ns/item", reference=(i == 0)) for i, (c, v) in enumerate(zip(cases, figures))]


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run sections 10 and 11; ``quick`` keeps them to a few seconds."""
    rows = _section_10(quick, progress)
    modules = _batcher_modules()
    progress.step("batch: adaptive batcher cost per item")
    rows.extend(_cost_rows(quick, modules))
    progress.step("batch: adaptive batching under bursty load")
    rows.extend(_load_rows("bursty", quick, modules))
    progress.step("batch: adaptive batching under quiet load")
    rows.extend(_load_rows("quiet", quick, modules))
    return rows


if __name__ == "__main__":  # python -m lowlat._bench_batch [--quick]
    import sys

    from ._benchkit import format_table

    progress = Progress(STEPS)
    result = run("--quick" in sys.argv, progress)
    progress.close()
    print(format_table(result))
    for row in result:
        if "finding" in row.extra:
            print(f"\n{row.group}:\n  {row.extra['finding']}")
