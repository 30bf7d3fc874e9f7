"""The tracker's statistics, its printed report and the ``latency_benchmark`` decorator.

Shared by both backends: none of it is on a hot path (the timed ``with`` block and ``record()``
are, and stay in each backend).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from .codec import as_int

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
