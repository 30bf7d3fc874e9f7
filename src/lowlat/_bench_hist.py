"""``lowlat bench`` section "hist": latency measurement side by side with hdrhistogram and the seed.

Rows: ``record()`` from Python (compiled, pure, the ``hdrhistogram`` package's ``record_value``),
``record_many`` of 1M values, ``percentile()`` against ``get_value_at_percentile``, the cost of
``LatencyTracker.measure()`` against a bare ``perf_counter_ns()`` pair and the seed's
``@contextmanager``, ``now_ns()`` against ``time.perf_counter_ns()``, and the seed's list-and-sort
tracker (:class:`SeedListTracker`) against ``LatencyTracker`` for 1M samples, time and memory.
Every figure is a whole loop (warm-up, gc off, median of repeats, empty-loop cost subtracted).
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from ._benchkit import Progress, Row, loop_overhead_ns, per_op_ns, time_loop
from ._benchkit import backends as available_backends

STEPS = 7

_HOUR_NS = 3_600_000_000_000


class SeedListTracker:
    """The seed's tracker, kept as the baseline: every sample in a list, sorted for percentiles.

    Memory grows with the sample count (a list slot plus an int object per sample); percentiles
    cost a sort of everything recorded.
    """

    def __init__(self, name: str, warmup_iterations: int = 100) -> None:
        self.name = name
        self.warmup_iterations = warmup_iterations
        self.latencies: list[int] = []
        self._seen = 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        start = time.perf_counter_ns()
        yield
        self.record(time.perf_counter_ns() - start)

    def record(self, latency_ns: int) -> None:
        self._seen += 1
        if self._seen > self.warmup_iterations:
            self.latencies.append(latency_ns)

    def get_statistics(self) -> dict[str, Any]:
        if not self.latencies:
            return {}
        ordered = np.sort(np.array(self.latencies, dtype=np.int64))
        return {
            "name": self.name,
            "count": len(ordered),
            "mean_ns": float(np.mean(ordered)),
            "median_ns": float(np.median(ordered)),
            "std_ns": float(np.std(ordered)),
            "min_ns": int(ordered[0]),
            "max_ns": int(ordered[-1]),
            "p50_ns": float(np.percentile(ordered, 50)),
            "p90_ns": float(np.percentile(ordered, 90)),
            "p99_ns": float(np.percentile(ordered, 99)),
            "p999_ns": float(np.percentile(ordered, 99.9)),
        }

    def memory_bytes(self) -> int:
        """Bytes held for the samples: the list and its int objects."""
        return sys.getsizeof(self.latencies) + sum(map(sys.getsizeof, self.latencies))


def _hdrh() -> Any:
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        return None
    return HdrHistogram


def _samples(n: int) -> np.ndarray:
    return np.random.default_rng(2026).lognormal(np.log(50_000), 1.0, n).astype(np.int64)


def _call_loop(func: Any, arg: Any) -> Any:
    def loop(n: int) -> None:
        for _ in range(n):
            func(arg)

    return loop


def _noarg_loop(func: Any) -> Any:
    def loop(n: int) -> None:
        for _ in range(n):
            func()

    return loop


def _pair_loop(clock: Any) -> Any:
    def loop(n: int) -> None:
        for _ in range(n):
            clock()
            clock()

    return loop


def _pair_record_loop(clock: Any, record: Any) -> Any:
    def loop(n: int) -> None:
        for _ in range(n):
            start = clock()
            record(clock() - start)

    return loop


def _with_loop(measure: Any) -> Any:
    def loop(n: int) -> None:
        for _ in range(n):
            with measure():
                pass

    return loop


def _record_loop(record: Any, values: list[int]) -> Any:
    def loop(n: int) -> None:
        for v in values:
            record(v)

    return loop


def _list_loop(values: list[int]) -> Any:
    def loop(n: int) -> None:
        for v in values:
            pass

    return loop


def _per_value_ns(record: Any, values: list[int], repeats: int) -> float:
    """ns per ``record(v)`` over ``values``, the cost of iterating the list itself subtracted."""
    n = len(values)
    total = time_loop(_record_loop(record, values), n, repeats=repeats)
    empty = time_loop(_list_loop(values), n, repeats=repeats)
    return max(total - empty, 0.0) / n


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; ``quick`` keeps it to a few seconds."""
    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    slow_n = 2_000 if quick else 20_000  # loops over ~1 us operations (pure backend, hdrhistogram)
    big = 1_000_000
    backends = available_backends()
    hdrh_cls = _hdrh()
    data = _samples(big)
    values = data[: max(n, slow_n)].tolist()
    rows: list[Row] = []
    empty = loop_overhead_ns(n, repeats=repeats)

    progress.step("hist: record() from Python")
    group = "hist: record(value) from Python, ns per call"
    for label, impl in backends:
        h = impl.LatencyHistogram()
        count = n if label == "cython" else slow_n
        rows.append(Row(group, f"LatencyHistogram.record ({label})", _per_value_ns(h.record, values[:count], repeats),
                        "ns"))
    if hdrh_cls is not None:
        ref = hdrh_cls(1, _HOUR_NS, 3)
        rows.append(Row(group, "hdrhistogram record_value", _per_value_ns(ref.record_value, values[:slow_n], repeats),
                        "ns", note="target: >= 30x the cython row"))
    rows.append(Row(group, "empty `for v in values` iteration (subtracted above)",
                    time_loop(_list_loop(values[:n]), n, repeats=repeats) / n, "ns"))
    rows.append(Row(group, "empty `for _ in range(n)` iteration (subtracted elsewhere)", empty, "ns"))

    progress.step("hist: record_many(1M)")
    group = "hist: record_many(1M lognormal int64 values), M values/s"
    for label, impl in backends:
        h = impl.LatencyHistogram()
        seconds = time_loop(lambda _n, h=h: h.record_many(data), 1, repeats=repeats) / 1e9
        rows.append(Row(group, f"record_many ({label})", big / seconds / 1e6, "M/s", higher_is_better=True,
                        note="target: >= 200 M/s" if label == "cython" else ""))
    if rows and hdrh_cls is not None:
        hdrh_record = next(r.value for r in rows if r.label == "hdrhistogram record_value")
        if hdrh_record > 0:
            rows.append(Row(group, "hdrhistogram record_value loop (from its per-call cost)", 1e3 / hdrh_record,
                            "M/s", higher_is_better=True))

    progress.step("hist: percentile()")
    group = "hist: percentile(99.9) of 1M samples, ns per query"
    encoded = None
    for label, impl in backends:
        h = impl.LatencyHistogram()
        h.record_many(data)
        encoded = encoded or h.encode()
        count = 2_000 if label == "cython" else 50
        rows.append(Row(group, f"LatencyHistogram.percentile ({label})",
                        per_op_ns(_call_loop(h.percentile, 99.9), count, repeats=repeats), "ns"))
        if label == "cython":
            rows.append(Row(group, "LatencyHistogram.percentiles, 5 at once (cython)",
                            per_op_ns(_call_loop(h.percentiles, [50, 90, 99, 99.9, 99.99]), count, repeats=repeats),
                            "ns"))
    if hdrh_cls is not None and encoded is not None:
        ref = hdrh_cls.decode(encoded)  # the same 1M samples, without 1M slow record_value calls
        rows.append(Row(group, "hdrhistogram get_value_at_percentile",
                        per_op_ns(_call_loop(ref.get_value_at_percentile, 99.9), 3, repeats=repeats), "ns",
                        note="target: >= 100x the cython row"))

    progress.step("hist: measure() overhead")
    group = "hist: timing one empty block, ns per block"
    rows.append(Row(group, "bare time.perf_counter_ns() pair", per_op_ns(_pair_loop(time.perf_counter_ns), n,
                                                                         repeats=repeats), "ns", reference=True))
    for label, impl in backends:
        tracker = impl.LatencyTracker("bench", 0)
        if label == "cython":
            rows.append(Row(group, "bare perf_counter_ns() pair + LatencyTracker.record() (cython)",
                            per_op_ns(_pair_record_loop(time.perf_counter_ns, tracker.record), n, repeats=repeats),
                            "ns"))
        rows.append(Row(group, f"with LatencyTracker.measure() ({label})",
                        per_op_ns(_with_loop(tracker.measure), n, repeats=repeats), "ns"))
    seed = SeedListTracker("bench", 0)
    rows.append(Row(group, "with seed @contextmanager measure() (list append)",
                    per_op_ns(_with_loop(seed.measure), n, repeats=repeats), "ns"))

    progress.step("hist: clocks")
    group = "hist: one clock read, ns"
    rows.append(Row(group, "time.perf_counter_ns()", per_op_ns(_noarg_loop(time.perf_counter_ns), n, repeats=repeats),
                    "ns", reference=True))
    for label, impl in backends:
        rows.append(Row(group, f"now_ns() ({label})", per_op_ns(_noarg_loop(impl.now_ns), n, repeats=repeats), "ns",
                        note="target: <= perf_counter_ns" if label == "cython" else ""))
    for label, impl in backends:
        rows.append(Row(group, f"timer_overhead_ns(): calibrated pair ({label})", float(impl.timer_overhead_ns()),
                        "ns", note="what measure() reports, not subtracted"))

    progress.step("hist: 1M-sample trackers, time")
    group = "hist: 1M samples through a tracker, ms"
    recorded = data.tolist()
    small = recorded[:10_000]

    def seed_fill(samples: list[int]) -> SeedListTracker:
        tracker = SeedListTracker("seed", 0)
        record = tracker.record
        for v in samples:
            record(v)
        return tracker

    seed_big = seed_fill(recorded)
    rows.append(Row(group, "seed list tracker: record() x 1M",
                    time_loop(lambda _n: seed_fill(recorded), 1, repeats=min(repeats, 3)) / 1e6, "ms"))
    rows.append(Row(group, "seed list tracker: get_statistics()",
                    time_loop(lambda _n: seed_big.get_statistics(), 1, repeats=min(repeats, 3)) / 1e6, "ms"))
    trackers = {}
    for label, impl in backends:
        def fill(_n: int, impl: Any = impl, label: str = label) -> None:
            tracker = impl.LatencyTracker(label, 0)
            record = tracker.record
            for v in recorded:
                record(v)
            trackers[label] = tracker

        if label == "cython":
            rows.append(Row(group, "LatencyTracker: record() x 1M (cython)",
                            time_loop(fill, 1, repeats=min(repeats, 3)) / 1e6, "ms"))
        else:
            tracker = impl.LatencyTracker(label, 0)
            tracker.histogram.record_many(data)
            trackers[label] = tracker
        rows.append(Row(group, f"LatencyTracker: get_statistics() ({label})",
                        time_loop(lambda _n, t=trackers[label]: t.get_statistics(), 1, repeats=min(repeats, 3)) / 1e6,
                        "ms"))

    progress.step("hist: 1M-sample trackers, memory")
    group = "hist: tracker memory for the samples, bytes"
    seed_small = seed_fill(small)
    rows.append(Row(group, "seed list tracker, 10k samples", float(seed_small.memory_bytes()), "B"))
    rows.append(Row(group, "seed list tracker, 1M samples", float(seed_big.memory_bytes()), "B", reference=True))
    for label, tracker in trackers.items():
        rows.append(Row(group, f"LatencyTracker, 1M samples ({label})", float(tracker.histogram.nbytes), "B",
                        note=f"same at any count (10k: {tracker.histogram.nbytes:,} B)"))
    if hdrh_cls is not None:
        rows.append(Row(group, "hdrhistogram HdrHistogram(1, 1 h, 3)", float(hdrh_cls(1, _HOUR_NS, 3).counts_len * 8), "B"))
    del seed_big
    return rows

