"""Blocking with ``timeout=``: ``SpscRing.pop``, the queues' ``dequeue``, ``ObjectPool.acquire``.

Each wait is satisfied by a real second thread, or ends at its deadline; ``None`` never waits.
"""

import threading
import time

import pytest


def _later(delay, action):
    thread = threading.Thread(target=lambda: (time.sleep(delay), action()))
    thread.start()
    return thread


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def test_pop_waits_for_another_thread(impl):
    ring = impl.SpscRing(4)
    thread = _later(0.05, lambda: ring.push("hello"))
    item, took = _timed(lambda: ring.pop(timeout=5.0))
    thread.join()
    assert item == "hello" and 0.03 < took < 4.0


def test_pop_times_out_with_the_default(impl):
    ring = impl.SpscRing(4)
    item, took = _timed(lambda: ring.pop("none", timeout=0.05))
    assert item == "none" and 0.04 < took < 2.0
    item, took = _timed(lambda: ring.pop("none"))
    assert item == "none" and took < 0.04  # None never waits


@pytest.mark.parametrize("kind", ["TimestampedQueue", "PriorityQueue"])
def test_dequeue_waits_for_another_thread(impl, kind):
    q = getattr(impl, kind)(8)
    put = (lambda: q.enqueue(3, "m")) if kind == "PriorityQueue" else (lambda: q.enqueue("m"))
    thread = _later(0.05, put)
    got, took = _timed(lambda: q.dequeue(timeout=5.0))
    thread.join()
    assert got[1] == "m" and 0.03 < took < 4.0
    got, took = _timed(lambda: q.dequeue(timeout=0.05))
    assert got is None and 0.04 < took < 2.0


def test_acquire_waits_for_a_release(impl):
    pool = impl.ObjectPool(list, 1, max_size=1)
    held = pool.acquire()
    thread = _later(0.05, lambda: pool.release(held))
    got, took = _timed(lambda: pool.acquire(timeout=5.0))
    thread.join()
    assert got is held and 0.03 < took < 4.0
    with pytest.raises(impl.PoolExhausted):
        _timed(lambda: pool.acquire(timeout=0.05))
    with pytest.raises(impl.PoolExhausted):
        pool.acquire()


@pytest.mark.parametrize("bad, error", [("1", TypeError), (True, TypeError), (-1, ValueError), (float("nan"), ValueError)])
def test_bad_timeouts(impl, bad, error):
    ring = impl.SpscRing(2)
    ring.push(1)
    for call in (lambda: ring.pop(timeout=bad), lambda: impl.TimestampedQueue(2).dequeue(timeout=bad),
                 lambda: impl.PriorityQueue().dequeue(timeout=bad), lambda: impl.ObjectPool(list, 1).acquire(timeout=bad)):
        with pytest.raises(error, match="timeout"):
            call()
    assert len(ring) == 1


def test_a_long_wait_sleeps_rather_than_spins(impl):
    ring = impl.SpscRing(2)
    cpu = time.process_time()
    assert ring.pop(timeout=0.3) is None
    assert time.process_time() - cpu < 0.25
