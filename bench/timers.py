"""Experiment 1, timing methods (seed section 2, In [2]): what one clock read costs and how fine it is.

Every Python clock and lowlat's ``now_ns`` (both backends), measured three ways: the seed's way (one
loop of 10,000 reads divided by 10,000, the loop's own cost included, one run), as a whole loop
(median of repeats, empty-loop cost subtracted), and the smallest step two consecutive reads
show (the resolution a measurement can actually see). The TSC stamps lowlat's queues take are
read in C and cannot be called from Python: they are measured inside ``TimestampedQueue``, once with
the TSC and once with ``CLOCK_MONOTONIC``; the machine header gives the TSC rate.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Literal

from ._harness import Measure, Progress, Row, backend_of, backends, loop_overhead_ns, per_op_ns, time_loop

TITLE = "Timing methods: cost per read and resolution"
SEED = "section 2, In [2] compare_timing_methods"
SEED_SAYS = ("The seed timed 10,000 reads of each clock in one loop and recommended time.perf_counter_ns() "
             "(51-65 ns per call there), noting time.time() has microsecond resolution.")
STEPS = 4
STAMPS = "TimestampedQueue enqueue+dequeue (two stamps taken in C), by stamp clock, ns"


def clocks() -> dict[str, object]:
    """Return every clock to compare: the standard library's and lowlat's ``now_ns`` per backend."""
    found = {f"time.{name}()": getattr(time, name) for name in
             ("perf_counter_ns", "monotonic_ns", "time_ns", "process_time_ns", "thread_time_ns", "perf_counter",
              "time")}
    for name, mod in backends():
        found[f"lowlat now_ns() ({name})"] = mod.now_ns
    return found


def reads(clock):
    def loop(n):
        for _ in range(n):
            clock()

    return loop


def seed_way(clock, n: int = 10_000) -> float:
    """The seed's figure: one loop of ``n`` reads timed with perf_counter_ns, divided by ``n``."""
    start = time.perf_counter_ns()
    for _ in range(n):
        clock()
    return (time.perf_counter_ns() - start) / n


def smallest_step_ns(clock, n: int) -> float:
    """Return the smallest nonzero difference between consecutive reads, in ns (0 if none seen)."""
    scale = 1 if isinstance(clock(), int) else 1e9
    best = None
    previous = clock()
    for _ in range(n):
        now = clock()
        step = now - previous
        if step > 0 and (best is None or step < best):
            best = step
        previous = now
    return float(best * scale) if best is not None else 0.0


_ClockName = Literal["monotonic", "perf_counter", "process_time", "time", "thread_time"]
#: ``time.<function>`` -> the name ``time.get_clock_info()`` knows its clock by
_CLOCK_INFO_NAMES: dict[str, _ClockName] = {
    "perf_counter_ns": "perf_counter", "perf_counter": "perf_counter", "monotonic_ns": "monotonic",
    "monotonic": "monotonic", "time_ns": "time", "time": "time", "process_time_ns": "process_time",
    "process_time": "process_time", "thread_time_ns": "thread_time", "thread_time": "thread_time",
}


def _info_resolution(label: str) -> str:
    name = label[len("time."):-2] if label.startswith("time.") else ""
    base = _CLOCK_INFO_NAMES.get(name)
    if base is None:
        return ""
    return f"get_clock_info: {time.get_clock_info(base).resolution * 1e9:g} ns"


def stamp_clock_rows(n: int, repeats: int) -> list[Row]:
    """The compiled queues' C stamps: the same enqueue+dequeue with TSC stamps and with clock_gettime.

    The TSC cannot be read from Python; the difference between the two rows is two stamps' worth
    of TSC against CLOCK_MONOTONIC. The stamp clock is chosen at import (``LOWLAT_NO_TSC``), so the
    section switches it with ``_calibrate_ticks`` and restores it before returning.
    """
    core = dict(backends("lowlat.containers")).get("cython")  # _calibrate_ticks is not a public name
    if core is None:
        return []
    modes = (("TSC stamps (rdtsc)", ""), ("CLOCK_MONOTONIC stamps (LOWLAT_NO_TSC=1)", "1"))
    samples: dict[str, list[float]] = {label: [] for label, _ in modes}
    saved = os.environ.get("LOWLAT_NO_TSC")
    try:
        for _ in range(repeats):  # round-robin, so drift hits both clocks alike
            for label, no_tsc in modes:
                os.environ["LOWLAT_NO_TSC"] = no_tsc
                if core._calibrate_ticks()[0] or no_tsc:
                    samples[label].append(time_loop(_pairs(core.TimestampedQueue(1024)), n, repeats=1) / n)
    finally:
        if saved is None:
            os.environ.pop("LOWLAT_NO_TSC", None)
        else:
            os.environ["LOWLAT_NO_TSC"] = saved
        core._calibrate_ticks()
    empty = loop_overhead_ns(n, repeats=repeats)
    return [Row(STAMPS, label, Measure(max(statistics.median(got) - empty, 0.0), (max(got) - min(got)) / 2), "ns",
                backend="cython") for label, got in samples.items() if got]


def _pairs(queue):
    enqueue, dequeue = queue.enqueue, queue.dequeue

    def loop(n):
        for i in range(n):
            enqueue(i)
            dequeue()

    return loop


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    n = 50_000 if quick else 300_000
    repeats = 3 if quick else 9
    rows: list[Row] = []
    found = clocks()
    progress.step("timers: the seed's way")
    for label, clock in found.items():
        rows.append(Row("one clock read, the seed's way (one loop of 10,000, loop cost included), ns", label,
                        seed_way(clock), "ns", reference=label == "time.perf_counter_ns()",
                        backend=backend_of(label)))
    progress.step("timers: whole loops")
    for label, clock in found.items():
        rows.append(Row("one clock read, whole loop (median of repeats, empty-loop cost subtracted), ns", label,
                        per_op_ns(reads(clock), n, repeats=repeats), "ns", backend=backend_of(label),
                        reference=label == "time.perf_counter_ns()"))
    progress.step("timers: the queues' C stamps")
    rows.extend(stamp_clock_rows(n, repeats))
    progress.step("timers: resolution")
    for label, clock in found.items():
        rows.append(Row("smallest step between two consecutive reads, ns", label,
                        smallest_step_ns(clock, 20_000 if quick else 200_000), "ns", note=_info_resolution(label),
                        reference=label == "time.perf_counter_ns()"))
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows against the seed's figures."""
    seed = {r.label: r.value for r in rows if "the seed's way" in r.group}
    loop = {r.label: r.value for r in rows if "whole loop" in r.group}
    step = {r.label: r.value for r in rows if r.group.startswith("smallest step")}
    pc = "time.perf_counter_ns()"
    cpu = max(loop.get("time.process_time_ns()", 0.0), loop.get("time.thread_time_ns()", 0.0))
    cheaper = [k for k, v in loop.items() if v < 0.8 * loop.get(pc, 0.0)]
    advice = ("its advice holds: no clock here is much cheaper than perf_counter_ns()" if not cheaper else
              f"{', '.join(cheaper)} read faster here, but perf_counter_ns() is still the monotonic, "
              "nanosecond clock to time latency with")
    cpu_text = (f"; process_time_ns()/thread_time_ns() cost {cpu / loop[pc]:,.1f}x and measure CPU time, not latency"
                if loop.get(pc) else "")
    return (f"The seed's way charges the loop (and the first calls) to the clock: perf_counter_ns() shows "
            f"{seed.get(pc, 0):,.0f} ns that way and {loop.get(pc, 0):,.0f} ns with the loop's cost removed, and "
            f"two consecutive reads differ by at least {step.get(pc, 0):,.0f} ns. As for the seed's choice, {advice}"
            f"{cpu_text}.{_stamp_text(rows)}")



def _stamp_text(rows: list[Row]) -> str:
    stamps = [r.value for r in rows if r.group == STAMPS]
    if len(stamps) < 2:
        return ""
    return (f" Inside the compiled queue a pair of TSC stamps saves {max(stamps[1] - stamps[0], 0):,.0f} ns per "
            "message over two clock_gettime calls.")
