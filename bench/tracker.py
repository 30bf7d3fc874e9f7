"""Experiment 2, the latency tracker (seed section 2, In [3]): the seed's list-and-sort tracker
against ``LatencyTracker`` (an HDR histogram): time to record and to summarise, memory, and
whether both report the same percentiles of the same samples.
"""

from __future__ import annotations

import numpy as np

from ._harness import Progress, Row, backends, judge, time_loop
from ._seed import SeedListTracker

TITLE = "Latency tracker: the seed's list-and-sort against LatencyTracker"
SEED = "section 2, In [3] LatencyTracker"
SEED_SAYS = ("The seed's tracker appends every sample to a list and sorts it (numpy) for each report: "
             "simple and exact, with memory and report time growing with the sample count.")
STEPS = 3
POINTS = (50.0, 90.0, 99.0, 99.9)


def samples(n: int) -> list[int]:
    """Return ``n`` lognormal latencies around 50 us (a fixed seed: the same every run)."""
    return np.random.default_rng(2026).lognormal(np.log(50_000), 1.0, n).astype(np.int64).tolist()


def fill_seed(values: list[int]) -> SeedListTracker:
    tracker = SeedListTracker("seed", 0)
    record = tracker.record
    for v in values:
        record(v)
    return tracker


def fill_lowlat(module, values: list[int]):
    tracker = module.LatencyTracker("lowlat", 0)
    record = tracker.record
    for v in values:
        record(v)
    return tracker


def _time_rows(rows, values, repeats):
    group = f"{len(values):,} samples through a tracker, ms"
    seed = fill_seed(values)
    rows.append(Row(group, "seed list tracker: record() each", time_loop(lambda _n: fill_seed(values), 1,
                                                                         repeats=repeats) / 1e6, "ms", reference=True))
    rows.append(Row(group, "seed list tracker: get_statistics()",
                    time_loop(lambda _n: seed.get_statistics(), 1, repeats=repeats) / 1e6, "ms"))
    trackers = {}
    for name, mod in backends():
        trackers[name] = fill_lowlat(mod, values)
        rows.append(Row(group, f"LatencyTracker: record() each ({name})",
                        time_loop(lambda _n, m=mod: fill_lowlat(m, values), 1, repeats=repeats) / 1e6, "ms",
                        backend=name))
        rows.append(Row(group, f"LatencyTracker: get_statistics() ({name})",
                        time_loop(lambda _n, t=trackers[name]: t.get_statistics(), 1, repeats=repeats) / 1e6, "ms",
                        backend=name))
    return seed, trackers


def _memory_rows(rows, seed, trackers, count):
    group = "tracker memory for the samples, bytes"
    small = fill_seed(seed.latencies[:10_000])
    rows.append(Row(group, f"seed list tracker, {count:,} samples", float(seed.memory_bytes()), "B", reference=True))
    rows.append(Row(group, "seed list tracker, 10,000 samples", float(small.memory_bytes()), "B"))
    for name, tracker in trackers.items():
        rows.append(Row(group, f"LatencyTracker, {count:,} samples ({name})", float(tracker.histogram.nbytes), "B",
                        backend=name, note="the same at any count"))


def _percentile_rows(rows, seed, trackers):
    exact = np.percentile(np.asarray(seed.latencies, dtype=np.int64), POINTS)
    curves = {name: {p: float(t.histogram.percentile(p)) for p in POINTS} for name, t in trackers.items()}
    for point, truth in zip(POINTS, exact):
        group = f"the same samples: p{point:g}, ns"
        first = point == POINTS[0]  # the whole curve rides on the first group's rows, for the plot
        rows.append(Row(group, "seed list tracker (exact, numpy.percentile)", float(truth), "ns", reference=True,
                        distribution=dict(zip(POINTS, map(float, exact))) if first else None))
        for name in trackers:
            value = curves[name][point]
            row = Row(group, f"LatencyTracker ({name})", value, "ns", backend=name,
                      distribution=curves[name] if first else None)
            # 3 significant figures: a bucket is at most 1/1024 of its value wide (and one sample apart)
            judge(row, "within 0.2% of the exact percentile", abs(value - truth) <= 0.002 * truth + 1)
            rows.append(row)


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    count = 200_000 if quick else 1_000_000
    repeats = 1 if quick else 3
    values = samples(count)
    rows: list[Row] = []
    progress.step("tracker: record and report")
    seed, trackers = _time_rows(rows, values, repeats)
    progress.step("tracker: memory")
    _memory_rows(rows, seed, trackers, count)
    progress.step("tracker: percentiles")
    _percentile_rows(rows, seed, trackers)
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows."""
    mem = {r.label: r.value for r in rows if r.unit == "B"}
    seed_b = next((v for k, v in mem.items() if k.startswith("seed list tracker") and "10,000" not in k), 0.0)
    ours = min((v for k, v in mem.items() if k.startswith("LatencyTracker")), default=0.0)
    met = [r.met for r in rows if r.met is not None]
    return (f"The seed's list holds {seed_b / 1e6:,.1f} MB for these samples and grows with every one; "
            f"LatencyTracker holds {ours / 1e3:,.0f} KB at any count and reports the same percentiles "
            f"within its 3 significant figures ({sum(met)} of {len(met)} checks within 0.2%).")
