"""LatencyHistogram against the ``hdrhistogram`` package (HdrHistogram_py) and the seed's tracker.

Rows: ``record()`` from Python (compiled, pure, ``hdrhistogram``'s ``record_value``), ``record_many``
of 1M values, ``percentile()`` against ``get_value_at_percentile``, and the cost of timing one
empty block with ``LatencyTracker.measure()`` against a bare ``perf_counter_ns()`` pair and the
seed's ``@contextmanager``. Every figure is a whole loop (warm-up, gc off, median of repeats,
empty-loop cost subtracted). The tracker's time and memory against the seed's list is ``tracker``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._harness import Measure, Progress, Row, judge, loop_overhead_ns, per_op_ns, time_loop
from ._harness import backends as available_backends
from ._seed import SeedListTracker

TITLE = "LatencyHistogram against hdrhistogram"
SEED = "section 2, In [3]-[4]: LatencyTracker and latency_benchmark"
SEED_SAYS = ("The seed's tracker keeps every sample in a list and times each block with a generator-based "
             "context manager; it never measures what that costs.")
STEPS = 4

_HOUR_NS = 3_600_000_000_000


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


def _per_value_ns(record: Any, values: list[int], repeats: int) -> Measure:
    """ns per ``record(v)`` over ``values``, the cost of iterating the list itself subtracted."""
    n = len(values)
    total = time_loop(_record_loop(record, values), n, repeats=repeats)
    empty = time_loop(_list_loop(values), n, repeats=repeats)
    return Measure(max(total - empty, 0.0) / n, total.spread / n)


def _record_rows(rows, values, n, slow_n, repeats, hdrh_cls):
    group = "hist: record(value) from Python, ns per call"
    for label, impl in available_backends():
        h = impl.LatencyHistogram()
        count = n if label == "cython" else slow_n
        rows.append(Row(group, f"LatencyHistogram.record ({label})", _per_value_ns(h.record, values[:count], repeats),
                        "ns", backend=label))
    if hdrh_cls is not None:
        ref = hdrh_cls(1, _HOUR_NS, 3)
        rows.append(Row(group, "hdrhistogram record_value", _per_value_ns(ref.record_value, values[:slow_n], repeats),
                        "ns"))
    rows.append(Row(group, "empty `for v in values` iteration (subtracted above)",
                    time_loop(_list_loop(values[:n]), n, repeats=repeats) / n, "ns"))
    rows.append(Row(group, "empty `for _ in range(n)` iteration (subtracted elsewhere)",
                    loop_overhead_ns(n, repeats=repeats), "ns"))


def _record_many_rows(rows, data, repeats):
    group = "hist: record_many(1M lognormal int64 values), M values/s"
    for label, impl in available_backends():
        h = impl.LatencyHistogram()
        ns = time_loop(lambda _n, h=h: h.record_many(data), 1, repeats=repeats)
        rate = len(data) / ns * 1e3
        rows.append(Row(group, f"record_many ({label})", rate, "M/s", higher_is_better=True, backend=label,
                        spread=rate * ns.spread / ns))
    hdrh_record = next((r.value for r in rows if r.label == "hdrhistogram record_value"), 0.0)
    if hdrh_record > 0:
        rows.append(Row(group, "hdrhistogram record_value loop (from its per-call cost)", 1e3 / hdrh_record,
                        "M/s", higher_is_better=True))


def _percentile_rows(rows, data, repeats, hdrh_cls):
    group = "hist: percentile(99.9) of 1M samples, ns per query"
    encoded = None
    for label, impl in available_backends():
        h = impl.LatencyHistogram()
        h.record_many(data)
        encoded = encoded or h.encode()
        count = 2_000 if label == "cython" else 50
        rows.append(Row(group, f"LatencyHistogram.percentile ({label})",
                        per_op_ns(_call_loop(h.percentile, 99.9), count, repeats=repeats), "ns", backend=label))
        if label == "cython":
            rows.append(Row(group, "LatencyHistogram.percentiles, 5 at once (cython)",
                            per_op_ns(_call_loop(h.percentiles, [50, 90, 99, 99.9, 99.99]), count, repeats=repeats),
                            "ns", backend=label))
    if hdrh_cls is not None and encoded is not None:
        ref = hdrh_cls.decode(encoded)  # the same 1M samples, without 1M slow record_value calls
        rows.append(Row(group, "hdrhistogram get_value_at_percentile",
                        per_op_ns(_call_loop(ref.get_value_at_percentile, 99.9), 3, repeats=repeats), "ns"))


def _measure_rows(rows, n, repeats):
    group = "hist: timing one empty block, ns per block"
    rows.append(Row(group, "bare time.perf_counter_ns() pair", per_op_ns(_pair_loop(time.perf_counter_ns), n,
                                                                         repeats=repeats), "ns", reference=True))
    for label, impl in available_backends():
        tracker = impl.LatencyTracker("bench", 0)
        if label == "cython":
            rows.append(Row(group, "bare perf_counter_ns() pair + LatencyTracker.record() (cython)",
                            per_op_ns(_pair_record_loop(time.perf_counter_ns, tracker.record), n, repeats=repeats),
                            "ns", backend=label))
        rows.append(Row(group, f"with LatencyTracker.measure() ({label})",
                        per_op_ns(_with_loop(tracker.measure), n, repeats=repeats), "ns", backend=label))
    seed = SeedListTracker("bench", 0)
    rows.append(Row(group, "with seed @contextmanager measure() (list append)",
                    per_op_ns(_with_loop(seed.measure), n, repeats=repeats), "ns"))


def _judge_targets(rows: list[Row]) -> None:
    """Judge the compiled rows against the README's targets (relative to rows of the same run)."""
    by = {r.label: r for r in rows}
    record, hdr = by.get("LatencyHistogram.record (cython)"), by.get("hdrhistogram record_value")
    if record is not None and hdr is not None:
        judge(record, ">= 30x faster than hdrhistogram record_value", hdr.value >= 30 * record.value)
    many = by.get("record_many (cython)")
    if many is not None:
        judge(many, ">= 200 M values/s", many.value >= 200)
    query, hdr = by.get("LatencyHistogram.percentile (cython)"), by.get("hdrhistogram get_value_at_percentile")
    if query is not None and hdr is not None:
        judge(query, ">= 100x faster than get_value_at_percentile", hdr.value >= 100 * query.value)


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; ``quick`` keeps it to a few seconds."""
    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    slow_n = 2_000 if quick else 20_000  # loops over ~1 us operations (pure backend, hdrhistogram)
    hdrh_cls = _hdrh()
    data = _samples(1_000_000)
    values = data[: max(n, slow_n)].tolist()
    rows: list[Row] = []
    progress.step("histogram: record() from Python")
    _record_rows(rows, values, n, slow_n, repeats, hdrh_cls)
    progress.step("histogram: record_many(1M)")
    _record_many_rows(rows, data, repeats)
    progress.step("histogram: percentile()")
    _percentile_rows(rows, data, repeats, hdrh_cls)
    progress.step("histogram: measure() overhead")
    _measure_rows(rows, n, repeats)
    _judge_targets(rows)
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows."""
    by = {r.label: r.value for r in rows}
    seed = by.get("with seed @contextmanager measure() (list append)", 0.0)
    best = min((v for k, v in by.items() if k.startswith("with LatencyTracker.measure()")), default=0.0)
    bare = by.get("bare time.perf_counter_ns() pair", 0.0)
    verdict = ("so below a microsecond the seed's figures are mostly its own timer" if seed > 2 * bare else
               "so the seed's timer adds little on this run")
    return (f"Timing one empty block costs {seed:,.0f} ns with the seed's generator-based measure() and "
            f"{best:,.0f} ns with LatencyTracker.measure(), against {bare:,.0f} ns for a bare clock pair: {verdict}.")
