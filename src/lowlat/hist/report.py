"""The tracker's statistics, its printed report and the ``latency_benchmark`` decorator.

Shared by both backends: none of it is on a hot path (the timed ``with`` block and ``record()``
are, and stay in each backend).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

from .codec import as_int, bucket_layout

#: The report's rows: (label, statistics key), in the order printed.
STATISTIC_ROWS = (
    ("mean", "mean_ns"),
    ("std", "std_ns"),
    ("min", "min_ns"),
    ("p50", "p50_ns"),
    ("p90", "p90_ns"),
    ("p99", "p99_ns"),
    ("p99.9", "p999_ns"),
    ("p99.99", "p9999_ns"),
    ("max", "max_ns"),
)
_FIGURE_KEYS = ("mean_ns", "median_ns", "std_ns", "min_ns", "max_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns")


def statistics(name: str, histogram: Any, timer_overhead_ns: int) -> dict[str, Any]:
    """Return the seed's statistics dict of ``histogram`` (see ``LatencyTracker.get_statistics``)."""
    stats: dict[str, Any] = {"name": name, "count": histogram.count}
    if histogram.count:
        top = histogram.max
        values = {p: min(v, top) for p, v in histogram.percentiles([50.0, 90.0, 99.0, 99.9, 99.99]).items()}
        stats.update(
            mean_ns=histogram.mean,
            median_ns=values[50.0],
            std_ns=histogram.stdev,
            min_ns=histogram.min,
            max_ns=top,
            p50_ns=values[50.0],
            p90_ns=values[90.0],
            p99_ns=values[99.0],
            p999_ns=values[99.9],
            p9999_ns=values[99.99],
        )
    else:
        stats.update(dict.fromkeys(_FIGURE_KEYS))
    stats["timer_overhead_ns"] = timer_overhead_ns
    return stats


def report_text(stats: dict[str, Any], warmup: int) -> str:
    """Return the seed's report table for ``stats``: one line per figure, in ns."""
    lines = [
        f"Latency report: {stats['name']}",
        f"  samples: {stats['count']:,} (after {warmup} warm-up), timer overhead: {stats['timer_overhead_ns']} ns",
    ]
    if stats["count"]:
        for label, key in STATISTIC_ROWS:
            value = stats[key]
            text = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
            lines.append(f"  {label:<8} {text:>16} ns")
    else:
        lines.append("  (no samples)")
    return "\n".join(lines)


def benchmark_decorator(tracker_class: Callable[..., Any], warmup: object, iterations: object) -> Callable[[Any], Any]:
    """Return ``latency_benchmark(warmup, iterations)``'s decorator, timing with ``tracker_class``."""
    warmup = as_int(warmup, "warmup")
    iterations = as_int(iterations, "iterations")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")

    def decorate(func: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        def benchmark(*args: Any, **kwargs: Any) -> dict[str, Any]:
            tracker = tracker_class(getattr(func, "__qualname__", repr(func)), warmup)
            measure = tracker.measure
            for _ in range(warmup + iterations):
                with measure():
                    func(*args, **kwargs)
            stats = tracker.get_statistics()
            wrapper.last_statistics = stats  # type: ignore[attr-defined]
            return stats

        wrapper.benchmark = benchmark  # type: ignore[attr-defined]
        wrapper.last_statistics = None  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _percentile_rows(buckets: list[tuple[int, int, int]], ticks_per_half_distance: int) -> list[tuple[int, float, int]]:
    """Return HdrHistogram's PercentileIterator steps as ``(value, percentile level, total count)``.

    The levels start at 0 and close in on 100 in steps that halve every time the distance to 100
    halves (``ticks_per_half_distance`` steps per halving), as the Java reference computes them; a
    last step at 100 repeats the highest recorded value.
    """
    total = sum(count for _, _, count in buckets)
    rows: list[tuple[int, float, int]] = []
    if not total:
        return rows
    level = 0.0
    cumulative = 0
    for _, high, count in buckets:
        cumulative += count
        while 100.0 * cumulative / total >= level:
            rows.append((high, level, cumulative))
            if cumulative >= total:
                break
            halvings = int(math.log(100.0 / (100.0 - level)) / math.log(2)) if level < 100.0 else 62
            level += 100.0 / (ticks_per_half_distance * 2 ** (halvings + 1))
        if cumulative >= total:
            break
    rows.append((buckets[-1][1], 100.0, total))
    return rows


def percentile_distribution(histogram: Any, ticks_per_half_distance: int = 5, value_scale: float = 1.0) -> str:
    """Return HdrHistogram's ``outputPercentileDistribution`` text (the ``.hgrm`` its plotters read)."""
    ticks = as_int(ticks_per_half_distance, "ticks_per_half_distance")
    if ticks < 1:
        raise ValueError(f"ticks_per_half_distance must be >= 1, got {ticks}")
    if isinstance(value_scale, bool) or not isinstance(value_scale, (int, float)) or not value_scale > 0:
        raise ValueError(f"value_scale must be a number > 0, got {value_scale!r}")
    digits = histogram.significant_figures
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for value, level, cumulative in _percentile_rows(list(histogram.buckets()), ticks):
        fraction = level / 100.0
        line = f"{value / value_scale:12.{digits}f} {fraction:2.12f} {cumulative:10d}"
        lines.append(line if level == 100.0 else f"{line} {1.0 / (1.0 - fraction):14.2f}")
    mean = histogram.mean / value_scale if histogram.count else 0.0
    stdev = histogram.stdev / value_scale if histogram.count else 0.0
    lines.append(f"#[Mean    = {mean:12.{digits}f}, StdDeviation   = {stdev:12.{digits}f}]")
    lines.append(f"#[Max     = {histogram.max / value_scale:12.{digits}f}, Total count    = {histogram.count:12d}]")
    unit_magnitude, half_magnitude, bucket_count = bucket_layout(
        histogram.lowest, histogram.highest, histogram.significant_figures
    )
    lines.append(f"#[Buckets = {bucket_count:12d}, SubBuckets     = {1 << (half_magnitude + 1):12d}]")
    return "\n".join(lines) + "\n"
