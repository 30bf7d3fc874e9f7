"""SpscRing: FIFO semantics, bad input, reference counts, and a threaded SPSC stress test."""

import gc
import sys
import time

import pytest

from conftest import counted_class, run_producer_consumer


def test_capacity_rounds_up_to_power_of_two(impl):
    for asked, got in [(1, 1), (2, 2), (3, 4), (1000, 1024), (1024, 1024), (2**20 - 1, 2**20)]:
        assert impl.SpscRing(asked).capacity == got


def test_holds_exactly_capacity_items(impl):
    ring = impl.SpscRing(8)
    assert all(ring.push(i) for i in range(8))
    assert not ring.push("overflow")
    assert len(ring) == 8
    assert [ring.pop() for _ in range(8)] == list(range(8))
    assert ring.pop() is None and len(ring) == 0


@pytest.mark.parametrize("bad", [0, -1, 2**30 + 1, 2**64])
def test_capacity_out_of_range(impl, bad):
    with pytest.raises(ValueError, match="capacity"):
        impl.SpscRing(bad)


@pytest.mark.parametrize("bad", [1.5, "8", None, True])
def test_capacity_not_int(impl, bad):
    with pytest.raises(TypeError, match="capacity"):
        impl.SpscRing(bad)


def test_pop_peek_default(impl):
    ring = impl.SpscRing(2)
    marker = object()
    assert ring.pop(marker) is marker
    assert ring.peek(marker) is marker
    ring.push(None)
    assert ring.peek(marker) is None
    assert ring.pop(marker) is None
    assert ring.pop(marker) is marker


def test_wraps_around_many_times(impl):
    from collections import deque
    import random

    rng = random.Random(7)
    ring, model = impl.SpscRing(4), deque()
    counter = 0
    for _ in range(5000):
        op = rng.randrange(4)
        if op == 0:
            accepted = ring.push(counter)
            assert accepted == (len(model) < 4)
            if accepted:
                model.append(counter)
            counter += 1
        elif op == 1:
            batch = list(range(counter, counter + rng.randrange(6)))
            taken = ring.push_many(batch)
            assert taken == min(len(batch), 4 - len(model))
            model.extend(batch[:taken])
            counter += len(batch)
        elif op == 2:
            assert ring.pop("empty") == (model.popleft() if model else "empty")
        else:
            n = rng.randrange(4)
            assert ring.pop_many(n) == [model.popleft() for _ in range(min(n, len(model)))]
        assert len(ring) == len(model)


def test_push_many_stops_when_full_and_consumes_nothing_more(impl):
    ring = impl.SpscRing(4)
    source = iter(range(10))
    assert ring.push_many(source) == 4
    assert next(source) == 4  # the fifth item was not taken
    assert ring.pop_many() == [0, 1, 2, 3]
    assert ring.push_many((10, 11)) == 2
    assert ring.push_many([12, 13, 14]) == 2
    assert ring.pop_many(3) == [10, 11, 12]
    assert ring.pop_many(0) == []
    assert ring.pop_many() == [13]
    assert ring.push_many(x for x in "ab") == 2
    assert ring.pop_many() == ["a", "b"]


def test_push_many_publishes_what_it_took_when_the_iterator_fails(impl):
    ring = impl.SpscRing(8)

    def source():
        yield 1
        yield 2
        raise RuntimeError("feed broke")

    with pytest.raises(RuntimeError, match="feed broke"):
        ring.push_many(source())
    assert ring.pop_many() == [1, 2]


def test_push_many_requires_an_iterable(impl):
    with pytest.raises(TypeError):
        impl.SpscRing(4).push_many(5)


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_pop_many_bad_limit(impl, bad, error):
    ring = impl.SpscRing(4)
    ring.push(1)
    with pytest.raises(error, match="max_items"):
        ring.pop_many(bad)
    assert len(ring) == 1


def test_clear(impl):
    ring = impl.SpscRing(4)
    ring.push_many([1, 2, 3])
    ring.clear()
    assert len(ring) == 0 and ring.pop() is None
    assert ring.push_many(range(4)) == 4


def test_not_picklable(impl):
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(impl.SpscRing(4))


def test_repr(impl):
    ring = impl.SpscRing(3)
    ring.push(1)
    assert repr(ring) == "SpscRing(capacity=4, len=1)"


def test_reference_counts_exact(impl):
    item = object()
    base = sys.getrefcount(item)
    ring = impl.SpscRing(8)
    ring.push(item)
    ring.push(item)
    assert sys.getrefcount(item) == base + 2
    assert ring.peek() is item
    assert sys.getrefcount(item) == base + 2
    assert ring.pop() is item
    assert sys.getrefcount(item) == base + 1
    ring.push_many([item, item, item])
    assert sys.getrefcount(item) == base + 4
    got = ring.pop_many(2)
    assert sys.getrefcount(item) == base + 4
    del got
    assert sys.getrefcount(item) == base + 2
    ring.clear()
    assert sys.getrefcount(item) == base
    ring.push_many(iter([item, item]))
    ring.push_many((item,))
    assert sys.getrefcount(item) == base + 3
    del ring
    gc.collect()
    assert sys.getrefcount(item) == base


def test_popped_items_are_freed(impl):
    Probe = counted_class()

    ring = impl.SpscRing(16)
    for _ in range(10):
        ring.push(Probe())
    ring.pop()
    ring.pop_many(3)
    assert Probe.alive == 6
    ring.clear()
    assert Probe.alive == 0
    ring.push(Probe())
    del ring
    assert Probe.alive == 0


def test_finalizer_reentering_during_clear(impl):
    ring = impl.SpscRing(8)

    class Reentrant:
        def __del__(self):
            ring.push("from finalizer")

    ring.push(Reentrant())
    ring.push(1)
    ring.clear()
    assert ring.pop_many() == ["from finalizer"]


def _spsc_stress(ring, total, batch):
    errors = []
    received = []
    deadline = time.monotonic() + 120

    def producer():
        i = 0
        while i < total:
            if batch and i % 2:
                end = min(i + batch, total)
                i += ring.push_many(range(i, end))
            elif ring.push(i):
                i += 1
            else:
                if time.monotonic() > deadline:
                    errors.append("producer timed out")
                    return
                time.sleep(0)

    def consumer():
        expected = 0
        miss = object()
        while expected < total:
            if batch and expected % 3 == 0:
                items = ring.pop_many(batch)
                if items:
                    if items != list(range(expected, expected + len(items))):
                        errors.append(f"batch at {expected}: {items[:5]}")
                        return
                    expected += len(items)
                    continue
            else:
                item = ring.pop(miss)
                if item is not miss:
                    if item != expected:
                        errors.append(f"expected {expected}, got {item}")
                        return
                    expected += 1
                    continue
            if time.monotonic() > deadline:
                errors.append("consumer timed out")
                return
            time.sleep(0)
        received.append(expected)

    run_producer_consumer(producer, consumer)
    assert not errors, errors
    assert received == [total]
    assert len(ring) == 0


@pytest.mark.stress
def test_threaded_spsc_stress_one_million(impl):
    _spsc_stress(impl.SpscRing(1024), 1_000_000, batch=0)


@pytest.mark.stress
def test_threaded_spsc_stress_batches(impl):
    _spsc_stress(impl.SpscRing(256), 1_000_000, batch=64)


def test_empty_and_full(impl):
    ring = impl.SpscRing(2)
    assert ring.empty() and not ring.full()
    ring.push(1)
    assert not ring.empty() and not ring.full()
    ring.push(2)
    assert ring.full() and not ring.empty()
    ring.pop_many()
    assert ring.empty()


def test_subscript_at_run_time(impl):
    alias = impl.SpscRing[int]
    assert alias.__origin__ is impl.SpscRing and alias.__args__ == (int,)
    assert isinstance(alias(4), impl.SpscRing)
    for name in ("ObjectPool", "TimestampedQueue", "PriorityQueue"):
        assert getattr(impl, name)[str].__origin__ is getattr(impl, name)


@pytest.mark.parametrize("name", ["SpscRing", "RecordRing", "ObjectPool", "RecordPool", "TimestampedQueue", "PriorityQueue"])
def test_classes_are_final_in_both_backends(impl, name):
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (getattr(impl, name),), {})
