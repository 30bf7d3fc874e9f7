"""``lowlat bench`` section "core": the containers side by side with the standard library.

Every figure is a whole loop of many operations (warm-up, gc off, median of repeats, the empty
loop's cost subtracted), run for the compiled core, its pure twin and the usual alternatives.
"""

from __future__ import annotations

import heapq
import importlib
import queue
from collections import deque
from dataclasses import dataclass

import numpy as np

from ._benchkit import Progress, Row, loop_overhead_ns, per_op_ns, time_loop

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


def _backends():
    found = []
    for label, module in (("cython", "lowlat._core"), ("python", "lowlat._pure")):
        try:
            found.append((label, importlib.import_module(module)))
        except ImportError:
            pass
    return found


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
    n = 50_000 if quick else 400_000
    repeats = 3 if quick else 9
    backends = _backends()
    rows: list[Row] = []
    overhead = loop_overhead_ns(n, repeats=repeats)
    rows.append(Row("loop overhead", "empty for-loop iteration (subtracted below)", overhead, "ns/iter"))

    def add(group, label, loop, ops=1, note="", count=n):
        rows.append(Row(group, label, per_op_ns(loop, count, repeats=repeats, ops_per_iteration=ops), "ns/op", note=note))

    progress.step("core: SpscRing push+pop")
    group = "SpscRing push+pop (one pair)"
    for label, mod in backends:
        ring = mod.SpscRing(1024)
        add(group, f"{label} SpscRing", _push_pop_loop(ring.push, ring.pop))
    d = deque()
    add(group, "collections.deque append+popleft", _push_pop_loop(d.append, d.popleft))
    sq = queue.SimpleQueue()
    add(group, "queue.SimpleQueue put+get_nowait", _push_pop_loop(sq.put, sq.get_nowait))
    q = queue.Queue(1024)
    add(group, "queue.Queue put_nowait+get_nowait", _push_pop_loop(q.put_nowait, q.get_nowait), count=n // 10)

    progress.step("core: SpscRing batches of 64")
    group = "SpscRing push_many+pop_many, batches of 64 (per item)"
    for label, mod in backends:
        ring = mod.SpscRing(1024)
        add(group, f"{label} SpscRing", _batch_loop(ring.push_many, ring.pop_many, 64), ops=64, count=n // 64)
    add(group, "collections.deque extend+popleft", _deque_batch_loop(64), ops=64, count=n // 64)

    progress.step("core: TimestampedQueue")
    group = "TimestampedQueue enqueue+dequeue (one pair)"
    for label, mod in backends:
        tq = mod.TimestampedQueue(1024)
        add(group, f"{label} TimestampedQueue", _push_pop_loop(tq.enqueue, tq.dequeue))

    progress.step("core: PriorityQueue")
    for backlog in (0, 1024):
        group = f"PriorityQueue enqueue+dequeue at a backlog of {backlog}"
        for label, mod in backends:
            pq = mod.PriorityQueue()
            for i in range(backlog):
                pq.enqueue(i, i)
            add(group, f"{label} PriorityQueue", _pq_loop(pq.enqueue, pq.dequeue))
        heap: list = []
        for i in range(backlog):
            heapq.heappush(heap, (i, i, 0, i))
        add(group, "heapq with (priority, seq, ts, msg) tuples", _heapq_loop(heap, backends[0][1].now_ns if backends else None))

    progress.step("core: ObjectPool")
    group = "ObjectPool (one cycle)"
    for label, mod in backends:
        pool = mod.ObjectPool(lambda: OrderMessage(0, "", "", 0.0, 0, 0), 64)
        add(group, f"{label} acquire+release", _pool_loop(pool.acquire, pool.release))
    free = deque(OrderMessage(0, "", "", 0.0, 0, 0) for _ in range(64))
    add(group, "bare deque-of-objects pool pop+append (no checks)", _pool_loop(free.pop, free.append))
    for label, mod in backends:
        pool = mod.ObjectPool(lambda: OrderMessage(0, "", "", 0.0, 0, 0), 64)
        add(group, f"{label} with pool.borrow()", _borrow_loop(pool.borrow))
    add(group, "construct OrderMessage dataclass (6 fields)", _dataclass_loop())
    import threading

    add(group, "reference: `with threading.Lock()` (a C context manager)", _with_loop(threading.Lock()),
        note="what a with block costs on a C type")

    progress.step("core: RecordRing batches")
    group = "RecordRing write+read, batches of 1024 x 32-byte records"
    dtype = np.dtype([("ts", "i8"), ("px", "f8"), ("qty", "i4"), ("side", "i4"), ("id", "i8")])
    batch = np.zeros(1024, dtype=dtype)
    batches = max(n // 200, 50)
    for label, mod in backends:
        ring = mod.RecordRing(dtype, 4096)
        write, read = ring.write, ring.read

        def loop(count, write=write, read=read):
            for _ in range(count):
                write(batch)
                read()

        ns = time_loop(loop, batches, repeats=repeats) / batches
        rows.append(Row(group, f"{label} RecordRing", batch.nbytes / ns * 1e3, "MB/s", higher_is_better=True,
                        note=f"{ns / 1024:.2f} ns/record"))

    progress.step("core: RecordRing single records")
    group = "RecordRing push+pop of one 32-byte structured record"
    for kind, rec in (("numpy.void", batch[0]), ("tuple", (1, 4500.25, 10, 1, 7))):
        for label, mod in backends:
            ring = mod.RecordRing(dtype, 1024)

            def loop(count, push=ring.push, pop=ring.pop, rec=rec):
                for _ in range(count):
                    push(rec)
                    pop()

            add(group, f"{label} RecordRing, push a {kind}", loop, count=n // 10)

    progress.step("core: now_ns")
    group = "clock read"
    import time as _time

    for label, mod in backends:
        add(group, f"{label} now_ns()", _call_loop(mod.now_ns))
    add(group, "time.perf_counter_ns()", _call_loop(_time.perf_counter_ns))
    return rows


def _call_loop(fn):
    def loop(n):
        for _ in range(n):
            fn()

    return loop
