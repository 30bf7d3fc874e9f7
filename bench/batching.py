"""Experiment 10, batch vs single processing (seed section 8, ``benchmark_batch_vs_single``).

The same ``item * 1.001 + 0.01`` work, one item per call against numpy batches of 10 to 10,000,
as whole timed loops (the seed timed every call with a ``perf_counter_ns`` pair, which costs more
than the single-item work; that figure is shown too). It adds what the seed's table leaves out:
how long each batch takes, i.e. the latency a batch adds to its last item, and the wait to fill it.
The seed's adaptive batcher is the next experiment (:mod:`lowlat.bench.adaptive`).
"""

from __future__ import annotations

import time

import numpy as np

from ._harness import Case, Progress, Row, compare

TITLE = "Batch vs single processing: per-item cost and the latency a batch adds"
SEED = "section 8, benchmark_batch_vs_single"
SEED_SAYS = ("The seed said single processing has the lowest latency and batches the highest throughput; its cell "
             "(each call timed by its tracker) was never run.")
STEPS = 2
PER_ITEM = "batch vs single: ns per item, whole loops"
LATENCY = "batch vs single: time to process one batch = latency it adds to its last item"
SEED_WAY = "single, the seed's way: perf_counter_ns pair around each call"
SIZES = [1, 10, 100, 1_000, 10_000]
PERCENTILES = (50, 90, 99, 99.9, 100)

_now = time.perf_counter_ns


def process_single(item: float) -> float:
    """The seed's per-item work."""
    return item * 1.001 + 0.01


def process_batch(items: np.ndarray) -> np.ndarray:
    """The seed's vectorised work."""
    return items * 1.001 + 0.01


def new_histogram():
    """Return an empty ``lowlat.LatencyHistogram`` (this run's backend)."""
    from lowlat import LatencyHistogram

    return LatencyHistogram()


def percentiles_of(h) -> dict:
    """Return ``h``'s percentiles (``"50"``... ``"100"``), count and mean, for a row's ``extra``."""
    return {str(p): int(h.percentile(p)) for p in PERCENTILES} | {"count": int(h.count), "mean": float(h.mean)}


def distribution_note(h, unit_ns: bool) -> str:
    """Return "p90 ..., p99 ..., p99.9 ..., max ..." of ``h`` (in us when ``unit_ns``)."""
    def f(v):
        return f"{v / 1000:,.1f}" if unit_ns else f"{v:,}"

    parts = [f"p{p:g} {f(h.percentile(p))}" for p in (90, 99, 99.9)]
    return ", ".join(parts) + f", max {f(h.max)}" + (" us" if unit_ns else "")


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


def _per_item_rows(data: np.ndarray, repeats: int) -> list[Row]:
    scalars = list(data)  # numpy float64 scalars: what the seed's `for item in data` yields
    single_n = min(len(data), 10_000)
    cases = [
        Case("single, numpy scalars (the seed's loop), whole loop", _single_loop(scalars), single_n),
        Case("single, Python floats, whole loop", _single_loop(data.tolist()), single_n),
    ]
    for size in SIZES:
        loop, count = _batch_loop(data, size)
        cases.append(Case(f"numpy batch of {size:,}", loop, count, ops=size))
    figures = compare(cases, repeats=repeats)
    rows = [Row(PER_ITEM, SEED_WAY, _seed_way_single_ns(scalars, single_n), "ns/item",
                note="timer pair included: the seed's figure")]
    for case, value in zip(cases, figures):
        rows.append(Row(PER_ITEM, case.label, value, "ns/item", reference=case.label.startswith("single, numpy")))
    return rows


def _batch_latency_row(data: np.ndarray, size: int, quick: bool) -> Row:
    h = new_histogram()
    batches = [data[i : i + size] for i in range(0, len(data) - size + 1, size)]
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
    return Row(LATENCY, f"batch of {size:,}: p50 processing time", h.percentile(50) / 1000, "us",
               note=f"{distribution_note(h, True)}; filling it at 1 M items/s adds {fill_us:,.0f} us to its first item",
               distribution={float(p): h.percentile(p) / 1000 for p in PERCENTILES[:-1]},
               extra={"percentiles_ns": percentiles_of(h), "hdr": h.encode(), "fill_us_at_1M_per_s": fill_us})


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; ``quick`` keeps it to a few seconds."""
    n_items = 20_000 if quick else 100_000
    data = np.random.default_rng(4).standard_normal(n_items)
    progress.step("batching: per-item cost, single vs batches")
    rows = _per_item_rows(data, 3 if quick else 7)
    progress.step("batching: the latency each batch adds")
    return rows + [_batch_latency_row(data, size, quick) for size in SIZES]


def conclude(rows: list[Row]) -> str:
    """Say what this run shows: the per-call cost is what batching saves, and what a batch adds in latency."""
    per_item = {r.label: r.value for r in rows if r.group == PER_ITEM}
    single = per_item["single, numpy scalars (the seed's loop), whole loop"]
    best_size, best = min(((s, per_item[f"numpy batch of {s:,}"]) for s in SIZES), key=lambda t: t[1])
    biggest = next(r for r in rows if r.group == LATENCY and r.label.startswith(f"batch of {SIZES[-1]:,}:"))
    return (f"Measured as whole loops, one item costs {single:,.0f} ns as a numpy scalar "
            f"({per_item['single, Python floats, whole loop']:,.0f} ns as a Python float; the seed's timed-call figure "
            f"{per_item[SEED_WAY]:,.0f} ns includes the timer); a numpy batch of one costs "
            f"{per_item['numpy batch of 1']:,.0f} ns, and batches of {best_size:,} reach {best:.2f} ns per item "
            f"({single / best if best else float('inf'):,.0f}x cheaper): the per-call cost, not the work, is what "
            f"batching saves. The price is latency: a batch of {SIZES[-1]:,} takes {biggest.value:,.1f} us (p50) "
            "before its last item is done, plus the time to fill it.")
