"""Timing harness shared by the ``lowlat bench`` sections.

Rules every section follows: time whole loops of many operations, warm up first, disable ``gc``
while timing, take the median of repeats, and subtract the cost of an empty loop of the same
length (shown in the table as its own row), so a figure is the operation's own cost.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

__all__ = ["backends", "Row", "Progress", "Case", "compare", "time_loop", "per_op_ns", "loop_overhead_ns", "format_table"]


def backends() -> list[tuple[str, object]]:
    """Return ``(label, module)`` for each backend that imports here, compiled first."""
    from ._backend import BACKENDS, load

    found = []
    for label in BACKENDS:
        try:
            found.append((label, load("lowlat", label)))
        except ImportError:
            pass
    return found


@dataclass
class Row:
    """One figure of the benchmark table.

    ``group`` collects rows that are compared with each other; ``ratio`` in the table is this row's
    cost relative to the group's reference row (the first row unless one sets ``reference``).
    """

    group: str
    label: str
    value: float
    unit: str
    higher_is_better: bool = False
    reference: bool = False
    note: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class Progress:
    """A one-line progress display on stderr: ``[k/N] section: what``."""

    def __init__(self, total: int, stream=None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._started = time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self._started
        line = f"[{self.done}/{self.total} {elapsed:5.1f}s] {what}"
        if self._tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def time_loop(loop: Callable[[int], object], n: int, *, repeats: int = 7, warmup: int = 1) -> float:
    """Return the median wall time in ns of ``loop(n)`` over ``repeats`` runs, ``gc`` disabled."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(warmup):
            loop(n)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            loop(n)
            samples.append(time.perf_counter_ns() - t0)
    finally:
        if was_enabled:
            gc.enable()
    return statistics.median(samples)


def _empty_loop(n: int) -> None:
    for _ in range(n):
        pass


_overhead_cache: dict[int, float] = {}


def loop_overhead_ns(n: int, *, repeats: int = 7) -> float:
    """Return the median cost in ns of one iteration of an empty ``for _ in range(n)`` loop."""
    if n not in _overhead_cache:
        _overhead_cache[n] = time_loop(_empty_loop, n, repeats=repeats) / n
    return _overhead_cache[n]


def per_op_ns(loop: Callable[[int], object], n: int, *, repeats: int = 7, ops_per_iteration: int = 1) -> float:
    """Return ns per operation of ``loop`` (one iteration = ``ops_per_iteration`` ops), loop cost removed."""
    total = time_loop(loop, n, repeats=repeats) / n
    return max(total - loop_overhead_ns(n, repeats=repeats), 0.0) / ops_per_iteration


@dataclass
class Case:
    """One contender of a group: ``loop(count)`` performs ``count`` iterations of ``ops`` operations."""

    label: str
    loop: Callable[[int], object]
    count: int
    ops: int = 1
    note: str = ""


def compare(cases: list[Case], *, repeats: int = 7) -> list[float]:
    """Return ns per operation for each case, timed round-robin so drift hits all alike.

    Each case is warmed up once; then every repeat times each case in turn, ``gc`` disabled. The
    figure is the median of a case's repeats minus the empty-loop cost of the same length.
    """
    samples: list[list[int]] = [[] for _ in cases]
    overheads = [loop_overhead_ns(c.count, repeats=repeats) for c in cases]
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for case in cases:
            case.loop(case.count)
        for _ in range(repeats):
            for case, bucket in zip(cases, samples):
                t0 = time.perf_counter_ns()
                case.loop(case.count)
                bucket.append(time.perf_counter_ns() - t0)
    finally:
        if was_enabled:
            gc.enable()
    return [
        max(statistics.median(bucket) / case.count - overhead, 0.0) / case.ops
        for case, bucket, overhead in zip(cases, samples, overheads)
    ]


def _fmt_value(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(rows: Iterable[Row]) -> str:
    """Render rows grouped by ``group``; ratio = value / the group's reference value."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    width = max([len(r.label) for rs in groups.values() for r in rs] + [10])
    lines = []
    for group, members in groups.items():
        ref = next((r for r in members if r.reference), members[0])
        lines.append(f"\n{group}")
        lines.append(f"  {'':<{width}}  {'value':>12}  {'unit':<10}  {'ratio':>8}")
        for r in members:
            if ref.value > 0 and r.value > 0:
                ratio = r.value / ref.value
                ratio_s = f"{ratio:7.2f}x"
            else:
                ratio_s = "       -"
            note = f"  {r.note}" if r.note else ""
            lines.append(f"  {r.label:<{width}}  {_fmt_value(r.value):>12}  {r.unit:<10}  {ratio_s}{note}")
    return "\n".join(lines)
