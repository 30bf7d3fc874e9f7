"""``lowlat bench`` section "core": the containers side by side with the standard library.

Every figure is a whole loop of many operations (warm-up, gc off, median of repeats, the empty
loop's cost subtracted), run for the compiled core, its pure twin and the usual alternatives.
"""

from __future__ import annotations

import heapq
import queue
from collections import deque
from dataclasses import dataclass

import numpy as np

from ._benchkit import Case, Progress, Row, compare, loop_overhead_ns
from ._benchkit import backends as available_backends

STEPS = 8


@dataclass
class OrderMessage:
    """The seed's order message: six fields, what a pool saves constructing."""

    order_id: int
    symbol: str
    side: str
    price: float
    quantity: int
    timestamp_ns: int


# Loops: each takes n and performs n operation pairs, with methods bound to locals first so the
# figure is the operation, not an attribute lookup.


def _push_pop_loop(push, pop):
    def loop(n):
        for i in range(n):
            push(i)
            pop()

    return loop


def _batch_loop(push_many, pop_many, batch):
    items = list(range(batch))

    def loop(n):
        for _ in range(n):
            push_many(items)
            pop_many()

    return loop


def _deque_batch_loop(batch):
    d = deque()
    extend, popleft = d.extend, d.popleft
    items = list(range(batch))

    def loop(n):
        for _ in range(n):
            extend(items)
            [popleft() for _ in range(batch)]

    return loop


def _pq_loop(enqueue, dequeue):
    def loop(n):
        for i in range(n):
            enqueue(i & 1023, i)
            dequeue()

    return loop


def _heapq_loop(heap, now):
    push, pop = heapq.heappush, heapq.heappop

    def loop(n):
        for i in range(n):
            push(heap, (i & 1023, i, now(), i))
            pop(heap)

    return loop


def _pool_loop(acquire, release):
    def loop(n):
        for _ in range(n):
            release(acquire())

    return loop


def _borrow_loop(borrow):
    def loop(n):
        for _ in range(n):
            with borrow():
                pass

    return loop


def _with_loop(manager):
    def loop(n):
        for _ in range(n):
            with manager:
                pass

    return loop


def _dataclass_loop():
    def loop(n):
        for i in range(n):
            OrderMessage(i, "ESZ6", "B", 4500.25, 10, i)

    return loop


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    n = 50_000 if quick else 300_000
    repeats = 3 if quick else 9
    backends = available_backends()
    rows: list[Row] = []
    overhead = loop_overhead_ns(n, repeats=repeats)
    rows.append(Row("loop overhead", "empty for-loop iteration (subtracted below)", overhead, "ns/iter"))

    def group(title: str, cases: list[Case]) -> None:
        for case, ns in zip(cases, compare(cases, repeats=repeats)):
            rows.append(Row(title, case.label, ns, "ns/op", note=case.note))

    progress.step("core: SpscRing push+pop")
    cases = []
    for label, mod in backends:
        ring = mod.SpscRing(1024)
        cases.append(Case(f"{label} SpscRing", _push_pop_loop(ring.push, ring.pop), n))
    d = deque()
    cases.append(Case("collections.deque append+popleft", _push_pop_loop(d.append, d.popleft), n))
    sq = queue.SimpleQueue()
    cases.append(Case("queue.SimpleQueue put+get_nowait", _push_pop_loop(sq.put, sq.get_nowait), n))
    q = queue.Queue(1024)
    cases.append(Case("queue.Queue put_nowait+get_nowait", _push_pop_loop(q.put_nowait, q.get_nowait), n // 10))
    group("SpscRing push+pop (one pair)", cases)

    progress.step("core: SpscRing batches of 64")
    cases = []
    for label, mod in backends:
        ring = mod.SpscRing(1024)
        cases.append(Case(f"{label} SpscRing", _batch_loop(ring.push_many, ring.pop_many, 64), n // 64, ops=64))
    cases.append(Case("collections.deque extend+popleft", _deque_batch_loop(64), n // 64, ops=64))
    group("SpscRing push_many+pop_many, batches of 64 (per item)", cases)

    progress.step("core: TimestampedQueue")
    cases = []
    for label, mod in backends:
        tq = mod.TimestampedQueue(1024)
        cases.append(Case(f"{label} TimestampedQueue", _push_pop_loop(tq.enqueue, tq.dequeue), n))
    group("TimestampedQueue enqueue+dequeue (one pair)", cases)

    progress.step("core: PriorityQueue")
    now = backends[0][1].now_ns if backends else None
    for backlog in (0, 1024):
        cases = []
        for label, mod in backends:
            pq = mod.PriorityQueue()
            for i in range(backlog):
                pq.enqueue(i, i)
            cases.append(Case(f"{label} PriorityQueue", _pq_loop(pq.enqueue, pq.dequeue), n))
        heap: list = []
        for i in range(backlog):
            heapq.heappush(heap, (i, i, 0, i))
        cases.append(Case("heapq with (priority, seq, ts, msg) tuples", _heapq_loop(heap, now), n))
        group(f"PriorityQueue enqueue+dequeue at a backlog of {backlog}", cases)

    progress.step("core: ObjectPool")
    cases = []
    for label, mod in backends:
        pool = mod.ObjectPool(lambda: OrderMessage(0, "", "", 0.0, 0, 0), 64)
        cases.append(Case(f"{label} acquire+release", _pool_loop(pool.acquire, pool.release), n))
    free = deque(OrderMessage(0, "", "", 0.0, 0, 0) for _ in range(64))
    cases.append(Case("bare deque-of-objects pool pop+append (no checks)", _pool_loop(free.pop, free.append), n))
    for label, mod in backends:
        pool = mod.ObjectPool(lambda: OrderMessage(0, "", "", 0.0, 0, 0), 64)
        cases.append(Case(f"{label} with pool.borrow()", _borrow_loop(pool.borrow), n))
    cases.append(Case("construct OrderMessage dataclass (6 fields)", _dataclass_loop(), n))
    import threading

    cases.append(Case("reference: `with threading.Lock()` (a C context manager)", _with_loop(threading.Lock()), n,
                      note="what a with block costs on a C type"))
    group("ObjectPool (one cycle)", cases)

    progress.step("core: RecordRing batches")
    dtype = np.dtype([("ts", "i8"), ("px", "f8"), ("qty", "i4"), ("side", "i4"), ("id", "i8")])
    batch = np.zeros(1024, dtype=dtype)
    cases = []
    for label, mod in backends:
        ring = mod.RecordRing(dtype, 4096)

        def loop(count, write=ring.write, read=ring.read):
            for _ in range(count):
                write(batch)
                read()

        cases.append(Case(f"{label} RecordRing", loop, max(n // 200, 50), ops=1024))
    for case, ns in zip(cases, compare(cases, repeats=repeats)):
        rows.append(Row("RecordRing write+read, batches of 1024 x 32-byte records", case.label,
                        dtype.itemsize / ns * 1e3, "MB/s", higher_is_better=True, note=f"{ns:.2f} ns/record"))

    progress.step("core: RecordRing single records")
    cases = []
    for kind, rec in (("numpy.void", batch[0]), ("tuple", (1, 4500.25, 10, 1, 7))):
        for label, mod in backends:
            ring = mod.RecordRing(dtype, 1024)

            def loop(count, push=ring.push, pop=ring.pop, rec=rec):
                for _ in range(count):
                    push(rec)
                    pop()

            cases.append(Case(f"{label} RecordRing, push a {kind}", loop, n // 10))
    group("RecordRing push+pop of one 32-byte structured record", cases)

    progress.step("core: now_ns")
    import time as _time

    cases = [Case(f"{label} now_ns()", _call_loop(mod.now_ns), n) for label, mod in backends]
    cases.append(Case("time.perf_counter_ns()", _call_loop(_time.perf_counter_ns), n))
    group("clock read", cases)
    return rows


def _call_loop(fn):
    def loop(n):
        for _ in range(n):
            fn()

    return loop
