"""No container leaks Python objects over many cycles (tracemalloc), whichever path is taken."""

import gc
import tracemalloc

import numpy as np


def _growth(cycle, rounds=5, per_round=2000):
    """Return the traced-memory growth between the second and last round of ``cycle``."""
    gc.collect()
    tracemalloc.start()
    try:
        samples = []
        for _ in range(rounds):
            for _ in range(per_round):
                cycle()
            gc.collect()
            samples.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    return samples[-1] - samples[1]


LIMIT = 64 * 1024  # far below what 8,000 leaked objects (or tuples, or arrays) would take


def test_spsc_ring_does_not_leak(impl):
    ring = impl.SpscRing(64)

    def cycle():
        ring.push(object())
        ring.push_many([object(), object()])
        ring.push_many(iter([object()]))
        ring.pop()
        ring.pop_many(2)
        ring.push([1])
        ring.clear()

    assert _growth(cycle) < LIMIT


def test_record_ring_does_not_leak(impl):
    dtype = np.dtype([("a", "i8"), ("b", "f8")])
    ring = impl.RecordRing(dtype, 64)
    batch = np.zeros(16, dtype=dtype)
    out = np.zeros(16, dtype=dtype)

    def cycle():
        ring.push((1, 2.0))
        ring.push(batch[0])
        ring.pop()
        ring.write(batch)
        ring.read(8)
        ring.read_into(out)
        try:
            ring.push(("bad", "record"))
        except (TypeError, ValueError):
            pass

    assert _growth(cycle) < LIMIT


def test_pools_do_not_leak(impl):
    pool = impl.ObjectPool(list, 8, reset=list.clear)
    records = impl.RecordPool("i8", 8)

    def cycle():
        obj = pool.acquire()
        obj.append(object())
        pool.release(obj)
        with pool.borrow() as o:
            o.append(1)
        try:
            pool.release([])
        except ValueError:
            pass
        records.release(records.acquire())

    assert _growth(cycle) < LIMIT


def test_queues_do_not_leak(impl):
    tq = impl.TimestampedQueue(64)
    pq = impl.PriorityQueue()

    def cycle():
        tq.enqueue(object())
        tq.enqueue(object(), 5)
        tq.dequeue()
        tq.dequeue()
        pq.enqueue(3, object())
        pq.enqueue(1, object())
        pq.dequeue()
        pq.dequeue()

    assert _growth(cycle) < LIMIT


def test_freeing_full_containers_releases_items(impl):
    def fill_and_drop():
        ring = impl.SpscRing(256)
        ring.push_many([object() for _ in range(256)])
        tq = impl.TimestampedQueue(256)
        for _ in range(256):
            tq.enqueue([0] * 4)
        pq = impl.PriorityQueue()
        for i in range(256):
            pq.enqueue(i % 5, [0] * 4)
        pool = impl.ObjectPool(lambda: [0] * 4, 64)
        [pool.acquire() for _ in range(32)]

    assert _growth(fill_and_drop, per_round=20) < LIMIT


def test_reentrant_and_waiting_paths_do_not_leak(impl):
    ring = impl.SpscRing(8)
    records = impl.RecordRing("f8", 8)
    strided = np.zeros(8, "f8")[::2]
    queue = impl.TimestampedQueue(8, histogram=_Reentrant(lambda: queue.dequeue()))
    pool = impl.ObjectPool(list, 1, max_size=1)

    class Pushy:
        def __float__(self):
            records.push(1.0)
            return 2.0

    def iterator():
        ring.push(object())
        ring.pop()
        yield object()

    def cycle():
        ring.push_many(iterator())
        ring.pop(timeout=0)
        ring.clear()
        records.write(np.arange(8, dtype="f8")[::-2])
        records.read_into(strided)
        try:
            records.push(Pushy())
        except RuntimeError:
            pass
        queue.enqueue(object(), timestamp_ns=5)
        try:
            queue.dequeue()
        except RuntimeError:
            pass
        queue.peek()
        held = pool.acquire(timeout=0)
        try:
            pool.acquire(timeout=0)
        except impl.PoolExhausted:
            pass
        pool.release(held)

    assert _growth(cycle, per_round=500) < LIMIT


class _Reentrant:
    def __init__(self, action):
        self.action = action

    def record(self, value_ns):
        self.action()
