"""Timing harness shared by every ``lowlat bench`` section.

Rules every section follows: time whole loops of many operations, warm up first, disable ``gc``
while timing, take the median of repeats, and subtract the cost of an empty loop of the same
length, timed in turn with the contenders so that load on a shared machine hits both alike: a
figure is the operation's own cost.

Every timing function returns a :class:`Measure`: a ``float`` (the median) that also carries the
``spread`` of its repeats (half their range, in the same unit). A :class:`Row` built from a
Measure picks the spread up by itself, so noise shows in the table without extra code.

A group of rows is compared with its *reference* row: the row marked ``reference=True``, else the
first row of the group. ``ratio`` is ``value / reference value`` for every row; rows whose unit is
a rate set ``higher_is_better``. A row may carry a ``target`` (what the project promises, in
words) and ``met`` (whether this run met it); :func:`judge` sets both.
"""

from __future__ import annotations

import gc
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Callable, Iterable, Sequence

__all__ = [
    "BACKEND_MODULES", "backends", "Measure", "Row", "Progress", "Case", "compare", "time_loop", "per_op_ns",
    "loop_overhead_ns", "format_table", "reference_of", "ratio_of", "judge", "distribution_of",
    "groups_of", "timed_each", "backend_of",
]


def _backend_modules() -> dict[str, str]:
    from lowlat._backend import BACKENDS, module_name

    return {name: module_name("lowlat", name) for name in BACKENDS}


#: Backend name -> core module, read from :data:`lowlat._backend.BACKENDS` (kept for old sections).
BACKEND_MODULES = _backend_modules()


def backend_of(label: str) -> str:
    """Return the backend a contender's label names (a word of it, as in "cython SpscRing"), else ""."""
    from lowlat._backend import BACKENDS

    words = set(re.findall(r"\w+", label))
    return next((name for name in BACKENDS if name in words), "")


def backends(concept: str = "lowlat") -> list[tuple[str, ModuleType]]:
    """Return ``(backend, module)`` for each backend of ``concept`` that imports here, compiled first."""
    from lowlat._backend import BACKENDS, load

    found = []
    for name in BACKENDS:
        try:
            found.append((name, load(concept, name)))
        except ImportError:
            pass
    return found


class Measure(float):
    """A median that remembers the spread (half the range) of the repeats it came from."""

    spread: float

    def __new__(cls, value: float, spread: float = 0.0) -> "Measure":
        obj = super().__new__(cls, value)
        obj.spread = float(spread)
        return obj


def _summarise(samples: Sequence[float]) -> Measure:
    return Measure(statistics.median(samples), (max(samples) - min(samples)) / 2 if samples else 0.0)


@dataclass
class Row:
    """One figure of the benchmark table.

    ``group`` collects rows compared with each other; ``ratio`` is this row's value relative to the
    group's reference row (``reference=True``, else the group's first row). ``spread`` is half the
    range of the repeats (taken from a :class:`Measure` value when not given). ``distribution``
    maps percentiles to values (same unit) for latency figures: the report plots it.
    """

    group: str
    label: str
    value: float
    unit: str
    higher_is_better: bool = False
    reference: bool = False
    note: str = ""
    extra: dict = field(default_factory=dict)
    backend: str = ""
    spread: float | None = None
    target: str = ""
    met: bool | None = None
    section: str = ""
    distribution: dict | None = None

    def __post_init__(self) -> None:
        if self.spread is None:
            self.spread = getattr(self.value, "spread", None)
        self.value = float(self.value)
        if self.spread is not None:
            self.spread = float(self.spread)

    def as_dict(self) -> dict:
        return asdict(self)


def judge(row: Row, target: str, met: bool) -> Row:
    """Set ``row``'s target (in words) and whether this run met it; return the row."""
    row.target = target
    row.met = bool(met)
    return row


def distribution_of(samples, points=(50, 90, 99, 99.9, 99.99)) -> dict[float, float]:
    """Return ``{percentile: value}`` of ``samples`` (any sequence of numbers) for a Row."""
    import numpy as np

    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        return {}
    return {float(p): float(v) for p, v in zip(points, np.percentile(data, points))}


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


class _GcOff:
    """Collect, then keep the garbage collector off inside the block (restored after)."""

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()

    def __exit__(self, *exc) -> None:
        if self.was_enabled:
            gc.enable()


def time_loop(loop: Callable[[int], object], n: int, *, repeats: int = 7, warmup: int = 1) -> Measure:
    """Return the median wall time in ns of ``loop(n)`` over ``repeats`` runs, ``gc`` disabled."""
    with _GcOff():
        for _ in range(warmup):
            loop(n)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            loop(n)
            samples.append(time.perf_counter_ns() - t0)
    return _summarise(samples)


def _empty_loop(n: int) -> None:
    for _ in range(n):
        pass


_overhead_cache: dict[int, float] = {}


def loop_overhead_ns(n: int, *, repeats: int = 7) -> float:
    """Return the median cost in ns of one iteration of an empty ``for _ in range(n)`` loop."""
    if n not in _overhead_cache:
        _overhead_cache[n] = time_loop(_empty_loop, n, repeats=repeats) / n
    return _overhead_cache[n]


def per_op_ns(loop: Callable[[int], object], n: int, *, repeats: int = 7, ops_per_iteration: int = 1) -> Measure:
    """Return ns per operation of ``loop`` (one iteration = ``ops_per_iteration`` ops), loop cost removed.

    The empty loop is timed in turn with ``loop`` (see :func:`compare`), so drift hits both alike.
    """
    return compare([Case("", loop, n, ops_per_iteration)], repeats=repeats)[0]


@dataclass
class Case:
    """One contender of a group: ``loop(count)`` performs ``count`` iterations of ``ops`` operations."""

    label: str
    loop: Callable[[int], object]
    count: int
    ops: int = 1
    note: str = ""


def compare(cases: list[Case], *, repeats: int = 7) -> list[Measure]:
    """Return ns per operation for each case, timed round-robin so drift hits all alike.

    Each case is warmed up once; then every repeat times each case in turn, ``gc`` disabled, and
    an empty loop of each length used in the same turn. The figure is the median of a case's
    repeats minus the median of the empty loop of its length, per operation; ``spread`` is half
    the range of the case's repeats.
    """
    empties = [Case("empty loop", _empty_loop, count) for count in sorted({c.count for c in cases})]
    timed = cases + empties
    samples: list[list[float]] = [[] for _ in timed]
    with _GcOff():
        for case in timed:
            case.loop(case.count)
        for _ in range(repeats):
            for case, bucket in zip(timed, samples):
                t0 = time.perf_counter_ns()
                case.loop(case.count)
                bucket.append((time.perf_counter_ns() - t0) / case.count)
    overhead = {case.count: statistics.median(bucket) for case, bucket in zip(empties, samples[len(cases):])}
    for count, ns in overhead.items():
        _overhead_cache.setdefault(count, ns)
    results = []
    for case, bucket in zip(cases, samples):
        summary = _summarise(bucket)
        results.append(Measure(max(summary - overhead[case.count], 0.0) / case.ops, summary.spread / case.ops))
    return results


def reference_of(members: list[Row]) -> Row:
    """Return the group's reference row: the one marked ``reference``, else the first."""
    return next((r for r in members if r.reference), members[0])


def ratio_of(row: Row, ref: Row) -> float | None:
    """Return ``row.value / ref.value``, or None when either is not positive."""
    if ref.value > 0 and row.value > 0:
        return row.value / ref.value
    return None


def _fmt_value(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _spread_text(row: Row) -> str:
    if row.spread is None:
        return ""
    return "±" + _fmt_value(row.spread)


def _verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return ("MET " if row.met else "MISSED ") + row.target


def groups_of(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Return rows grouped by ``group``, in first-seen order."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return groups


def format_table(rows: Iterable[Row]) -> str:
    """Render rows grouped by ``group``: value, spread, unit, ratio to the reference row, target verdict.

    The reference row of each group is marked ``*``; ``^`` marks rows where higher is better.
    """
    groups = groups_of(rows)
    width = max([len(r.label) for rs in groups.values() for r in rs] + [10])
    lines = []
    for group, members in groups.items():
        ref = reference_of(members)
        lines.append(f"\n{group}")
        lines.append(f"    {'':<{width}}  {'value':>12}  {'spread':>9}  {'unit':<10}  {'ratio':>8}")
        for r in members:
            ratio = ratio_of(r, ref)
            ratio_s = f"{ratio:7.2f}x" if ratio is not None else "       -"
            mark = ("*" if r is ref else " ") + ("^" if r.higher_is_better else " ")
            tail = "  ".join(x for x in (_verdict(r), r.note) if x)
            lines.append(f"  {mark}{r.label:<{width}}  {_fmt_value(r.value):>12}  {_spread_text(r):>9}  "
                         f"{r.unit:<10}  {ratio_s}{'  ' + tail if tail else ''}")
    return "\n".join(lines)


def timed_each(operation: Callable[[], object], n: int, *, warmup: int = 1000) -> list[int]:
    """Return ``n`` samples in ns, each one call of ``operation`` between two ``perf_counter_ns()``.

    This is the seed's way of measuring (a tracker around every operation): each sample includes
    one clock read and the loop's own work, which for sub-microsecond operations is most of it.
    """
    clock = time.perf_counter_ns
    samples = [0] * n
    with _GcOff():
        for _ in range(warmup):
            operation()
        for i in range(n):
            start = clock()
            operation()
            samples[i] = clock() - start
    return samples
