"""TimestampedQueue and PriorityQueue: sequencing, stamps, latency, bad input, stress."""

import heapq
import os
import random
import sys
import time

import pytest

from conftest import run_producer_consumer


class RecordingHistogram:
    def __init__(self):
        self.values = []

    def record(self, value_ns):
        self.values.append(value_ns)


def test_now_ns_is_perf_counter_clock(impl):
    a = time.perf_counter_ns()
    b = impl.now_ns()
    c = time.perf_counter_ns()
    assert type(b) is int and a <= b <= c


def test_timestamped_sequence_and_latency(impl):
    q = impl.TimestampedQueue(4)
    assert q.capacity == 4 and len(q) == 0
    before = impl.now_ns()
    for m in "abcd":
        assert q.enqueue(m)
    assert not q.enqueue("e")
    assert q.stats == {"enqueue_count": 4, "dequeue_count": 0, "drops": 1}
    time.sleep(0.002)
    seq, msg, latency = q.dequeue()
    assert (seq, msg) == (0, "a")
    assert 1_990_000 <= latency <= impl.now_ns() - before  # stamps may be TSC ticks: ppm-level rate error
    assert q.enqueue("e")
    assert [q.dequeue()[:2] for _ in range(4)] == [(1, "b"), (2, "c"), (3, "d"), (4, "e")]
    assert q.dequeue() is None
    assert q.stats == {"enqueue_count": 5, "dequeue_count": 5, "drops": 1}


def test_timestamped_explicit_stamp(impl):
    q = impl.TimestampedQueue(8)
    stamp = impl.now_ns() - 5_000_000
    q.enqueue("old", stamp)
    _, _, latency = q.dequeue()
    assert latency >= 5_000_000


def test_timestamped_histogram_records_every_dequeue(impl):
    hist = RecordingHistogram()
    q = impl.TimestampedQueue(8, histogram=hist)
    q.enqueue(1)
    q.enqueue(2, impl.now_ns() + 10**12)  # a stamp in the future records 0
    lat1 = q.dequeue()[2]
    lat2 = q.dequeue()[2]
    assert q.dequeue() is None
    assert hist.values == [lat1, 0] and lat2 < 0


@pytest.mark.parametrize("stamp, error", [(1.5, TypeError), ("1", TypeError), (2**63, ValueError), (-2**63 - 1, ValueError)])
def test_timestamped_bad_stamp(impl, stamp, error):
    q = impl.TimestampedQueue(4)
    with pytest.raises(error, match="timestamp_ns"):
        q.enqueue("x", stamp)
    assert len(q) == 0 and q.stats["enqueue_count"] == 0


def test_timestamped_bad_arguments(impl):
    with pytest.raises(ValueError, match="capacity"):
        impl.TimestampedQueue(0)
    with pytest.raises(TypeError, match="capacity"):
        impl.TimestampedQueue("8")
    with pytest.raises(TypeError, match="histogram"):
        impl.TimestampedQueue(8, histogram=object())
    assert impl.TimestampedQueue().capacity == 65536


def test_timestamped_reference_counts(impl):
    item = object()
    base = sys.getrefcount(item)
    q = impl.TimestampedQueue(4)
    q.enqueue(item)
    q.enqueue(item)
    assert sys.getrefcount(item) == base + 2
    result = q.dequeue()
    assert sys.getrefcount(item) == base + 2
    del result
    assert sys.getrefcount(item) == base + 1
    del q
    assert sys.getrefcount(item) == base


@pytest.mark.stress
def test_timestamped_threaded_stress_one_million(impl):
    total = 1_000_000
    q = impl.TimestampedQueue(1024)
    errors, done = [], []
    deadline = time.monotonic() + 120

    def producer():
        i = 0
        while i < total:
            if q.enqueue(i):
                i += 1
            elif time.monotonic() > deadline:
                errors.append("producer timed out")
                return
            else:
                time.sleep(0)

    def consumer():
        expected = 0
        while expected < total:
            got = q.dequeue()
            if got is None:
                if time.monotonic() > deadline:
                    errors.append("consumer timed out")
                    return
                time.sleep(0)
                continue
            seq, message, latency = got
            if seq != expected or message != expected or latency < 0:
                errors.append(f"expected {expected}, got {got}")
                return
            expected += 1
        done.append(expected)

    run_producer_consumer(producer, consumer)
    assert not errors, errors
    assert done == [total]
    stats = q.stats
    assert stats["enqueue_count"] == stats["dequeue_count"] == total


def test_priority_order_and_fifo_ties(impl):
    q = impl.PriorityQueue()
    assert q.capacity is None
    for prio, msg in [(5, "e"), (1, "a1"), (3, "c"), (1, "a2"), (-2, "neg"), (1, "a3")]:
        assert q.enqueue(prio, msg)
    assert len(q) == 6
    out = [q.dequeue() for _ in range(6)]
    assert [(p, m) for p, m, _ in out] == [(-2, "neg"), (1, "a1"), (1, "a2"), (1, "a3"), (3, "c"), (5, "e")]
    assert all(lat >= 0 for _, _, lat in out)
    assert q.dequeue() is None


def test_priority_bounded(impl):
    q = impl.PriorityQueue(2)
    assert q.capacity == 2
    assert q.enqueue(1, "a") and q.enqueue(0, "b")
    assert not q.enqueue(-1, "c")
    assert q.dequeue()[1] == "b"
    assert q.enqueue(-1, "c")
    assert q.dequeue()[1] == "c"


def test_priority_matches_heapq_model(impl):
    rng = random.Random(11)
    q, model, seq = impl.PriorityQueue(), [], 0
    for _ in range(20_000):
        if rng.random() < 0.55:
            prio = rng.randrange(-50, 50) if rng.random() < 0.9 else rng.choice([-2**63, 2**63 - 1])
            q.enqueue(prio, seq)
            heapq.heappush(model, (prio, seq))
            seq += 1
        else:
            got = q.dequeue()
            if model:
                assert got[:2] == heapq.heappop(model)
            else:
                assert got is None
        assert len(q) == len(model)


@pytest.mark.parametrize("prio, error", [(1.5, TypeError), ("1", TypeError), (None, TypeError),
                                         (2**63, ValueError), (-2**63 - 1, ValueError)])
def test_priority_bad_priority(impl, prio, error):
    q = impl.PriorityQueue()
    with pytest.raises(error, match="priority"):
        q.enqueue(prio, "x")
    assert len(q) == 0


def test_priority_bad_capacity(impl):
    with pytest.raises(ValueError, match="capacity"):
        impl.PriorityQueue(0)
    with pytest.raises(TypeError, match="capacity"):
        impl.PriorityQueue(1.0)


def test_priority_reference_counts(impl):
    item = object()
    base = sys.getrefcount(item)
    q = impl.PriorityQueue()
    for p in range(100):
        q.enqueue(p % 7, item)
    assert sys.getrefcount(item) == base + 100
    for _ in range(40):
        q.dequeue()
    assert sys.getrefcount(item) == base + 60
    del q
    assert sys.getrefcount(item) == base


def test_latency_agrees_with_the_perf_counter_clock(impl):
    """Queue latencies (TSC-based where the compiled core uses it) match perf_counter_ns within 1%."""
    q = impl.TimestampedQueue(4)
    pq = impl.PriorityQueue()
    t0 = time.perf_counter_ns()
    q.enqueue("m")
    pq.enqueue(0, "m")
    time.sleep(0.05)
    latency = q.dequeue()[2]
    pq_latency = pq.dequeue()[2]
    elapsed = time.perf_counter_ns() - t0
    for value in (latency, pq_latency):
        assert 0.99 * 50_000_000 <= value <= elapsed * 1.01


def test_stamp_clock_falls_back_to_clock_gettime():
    """LOWLAT_NO_TSC=1 (or a kernel not clocked by the TSC) stamps with CLOCK_MONOTONIC instead."""
    import os
    import subprocess

    from conftest import load_backend

    load_backend("cython")  # skips (or fails when required) without the compiled core
    code = ("import time, lowlat.containers._c as c; print(c._calibrate_ticks()); q = c.TimestampedQueue(4); q.enqueue(1); "
            "time.sleep(0.01); print(q.dequeue()[2] >= 10_000_000)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LOWLAT_NO_TSC": "1"},
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["(False, 1.0)", "True"]


def test_failing_histogram_loses_no_message(impl):
    class Flaky:
        fail = True

        def record(self, value_ns):
            if Flaky.fail:
                raise OSError("histogram store unavailable")

    q = impl.TimestampedQueue(4, histogram=Flaky())
    q.enqueue("keep me")
    with pytest.raises(OSError):
        q.dequeue()
    assert len(q) == 1 and q.stats["dequeue_count"] == 0
    Flaky.fail = False
    assert q.dequeue()[:2] == (0, "keep me")


def test_enqueue_takes_the_stamp_by_keyword(impl):
    q = impl.TimestampedQueue(4)
    stamp = impl.now_ns() - 1_000_000
    assert q.enqueue("m", timestamp_ns=stamp)
    assert q.dequeue()[2] >= 1_000_000
    with pytest.raises(TypeError):
        q.enqueue(message="m")  # the message stays positional


def test_peek_empty_full(impl):
    q = impl.TimestampedQueue(2)
    assert q.peek() is None and q.empty() and not q.full()
    q.enqueue("a")
    q.enqueue("b")
    seq, message, latency = q.peek()
    assert (seq, message) == (0, "a") and latency >= 0 and q.full() and len(q) == 2
    assert q.dequeue()[:2] == (0, "a")
    pq = impl.PriorityQueue(2)
    assert pq.peek() is None and pq.empty() and not pq.full()
    pq.enqueue(5, "late")
    pq.enqueue(1, "early")
    assert pq.peek()[:2] == (1, "early") and pq.full() and len(pq) == 2
    assert pq.dequeue()[:2] == (1, "early")
    assert not impl.PriorityQueue().full()


def test_no_tsc_flag_reads_false_as_unset():
    """LOWLAT_NO_TSC follows the one rule of every lowlat flag: 0/false/no/off mean not set."""
    import subprocess

    from conftest import load_backend

    load_backend("cython")
    code = "import lowlat.containers._c as c; print(c._calibrate_ticks()[0])"
    results = []
    for value in (None, "false", "off", "1"):
        env = {k: v for k, v in os.environ.items() if k != "LOWLAT_NO_TSC"}
        if value is not None:
            env["LOWLAT_NO_TSC"] = value
        results.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout.strip())
    assert results[1] == results[2] == results[0]
    assert results[3] == "False"
