"""Experiment 8, message queues (seed section 6): the seed's ``LowLatencyMessageQueue`` and
``PriorityMessageQueue`` against lowlat's ``TimestampedQueue`` and ``PriorityQueue``.

Each contender does what the seed's queues do per message: stamp on enqueue, return the message
with its time in the queue on dequeue. Measured as whole loops (the operation's own cost) and
the seed's way (a clock pair around each enqueue+dequeue, with the seed's random priority and
f-string message), whose percentiles the report plots.
"""

from __future__ import annotations

import random
from collections import deque

from ._harness import Case, Progress, Row, backend_of, backends, compare, distribution_of, timed_each
from ._seed import SeedMessageQueue, SeedPriorityQueue

TITLE = "Message queues: the seed's against lowlat's"
SEED = "section 6, benchmark_message_queues"
SEED_SAYS = ("The seed built a timestamped FIFO on its Python ring and a heapq priority queue and timed each "
             "enqueue+dequeue pair with its tracker against a bare deque (the cell printed no figures).")
STEPS = 3
FIFO = "FIFO with timestamps: enqueue+dequeue (one pair)"
PRIORITY = "priority queue: enqueue+dequeue at a backlog of 0 (one pair)"


def fifo_pairs(enqueue, dequeue):
    def loop(n):
        for i in range(n):
            enqueue(i)
            dequeue()

    return loop


def priority_pairs(enqueue, dequeue):
    def loop(n):
        for i in range(n):
            enqueue(i & 7, i)
            dequeue()

    return loop


def deque_pairs(clock):
    d = deque()
    append, popleft = d.append, d.popleft

    def loop(n):
        for i in range(n):
            append((i, clock()))
            popleft()

    return loop


def _contenders():
    fifo = [(f"lowlat TimestampedQueue ({name})", mod.TimestampedQueue(4096)) for name, mod in backends()]
    fifo.append(("seed LowLatencyMessageQueue", SeedMessageQueue(4096)))
    prio = [(f"lowlat PriorityQueue ({name})", mod.PriorityQueue()) for name, mod in backends()]
    prio.append(("seed PriorityMessageQueue", SeedPriorityQueue()))
    return fifo, prio


def _whole_loops(rows, n, repeats):
    import time

    fifo, prio = _contenders()
    cases = [Case(label, fifo_pairs(q.enqueue, q.dequeue), n) for label, q in fifo]
    cases.append(Case("collections.deque of (seq, perf_counter_ns()) tuples", deque_pairs(time.perf_counter_ns), n))
    for case, ns in zip(cases, compare(cases, repeats=repeats)):
        rows.append(Row(FIFO, case.label, ns, "ns", reference=case.label.startswith("seed"),
                        backend=backend_of(case.label)))
    cases = [Case(label, priority_pairs(q.enqueue, q.dequeue), n) for label, q in prio]
    for case, ns in zip(cases, compare(cases, repeats=repeats)):
        rows.append(Row(PRIORITY, case.label, ns, "ns", reference=case.label.startswith("seed"),
                        backend=backend_of(case.label)))


def _seed_way(rows, n):
    fifo, prio = _contenders()
    rng = random.Random(8)
    for label, q in fifo:
        enqueue, dequeue = q.enqueue, q.dequeue
        dist = distribution_of(timed_each(lambda: (enqueue(f"message_{rng.random()}"), dequeue()), n))
        rows.append(Row("the seed's way, FIFO: each pair timed (clock read included), p50 ns", label, dist[50.0], "ns",
                        distribution=dist, backend=backend_of(label),
                        note=f"p99 {dist[99.0]:,.0f} ns, p99.9 {dist[99.9]:,.0f} ns"))
    for label, q in prio:
        enqueue, dequeue = q.enqueue, q.dequeue
        dist = distribution_of(timed_each(lambda: (enqueue(rng.randint(0, 10), "message"), dequeue()), n))
        rows.append(Row("the seed's way, priority: each pair timed (clock read included), p50 ns", label, dist[50.0],
                        "ns", distribution=dist, backend=backend_of(label),
                        note=f"p99 {dist[99.0]:,.0f} ns, p99.9 {dist[99.9]:,.0f} ns"))


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    n = 50_000 if quick else 300_000
    repeats = 3 if quick else 9
    rows: list[Row] = []
    progress.step("msgqueues: whole loops")
    _whole_loops(rows, n, repeats)
    progress.step("msgqueues: the seed's way")
    _seed_way(rows, 20_000 if quick else 50_000)
    progress.step("msgqueues: done")
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows."""
    fifo = {r.label: r.value for r in rows if r.group == FIFO}
    seed = fifo.get("seed LowLatencyMessageQueue", 0.0)
    best = min((v for k, v in fifo.items() if k.startswith("lowlat")), default=0.0)
    bare = fifo.get("collections.deque of (seq, perf_counter_ns()) tuples", 0.0)
    return (f"The seed's timestamped FIFO costs {seed:,.0f} ns per enqueue+dequeue, {seed / bare if bare else 0:,.1f}x "
            f"a bare deque of (seq, timestamp) tuples ({bare:,.0f} ns); lowlat's fastest costs {best:,.0f} ns while "
            "also recording every message's latency in a histogram. A Python ring plus a stats dict per message "
            "is where the seed's queue spends its time.")
