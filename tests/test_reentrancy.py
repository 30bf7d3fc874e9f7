"""No caller can crash the containers: lying arrays, re-entrant Python code, torn-down internals.

Each test is a reproducer from the memory-safety issue, run against both backends: whatever the
caller does, the result is correct behaviour or a clear exception, never a crash, a hang, a
phantom item or a lost one.
"""

import gc
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest


class Bomb:
    """Cyclic garbage whose finaliser runs ``action`` when the collector finds it."""

    def __init__(self, action):
        self.action = action
        self.cycle = self

    def __del__(self):
        self.action()


def with_collection_inside(action, call):
    """Return ``call()``, during which the cycle collector runs ``action`` at the first allocation.

    The garbage is made while the collector is off, then the threshold is set so low that the
    first container ``call`` allocates starts a collection.
    """
    gc.collect()
    old = gc.get_threshold()
    gc.disable()
    try:
        Bomb(action)  # unreachable at once, but only the collector can free it
        gc.set_threshold(1, 1, 1)
        gc.enable()
        return call()
    finally:
        gc.enable()
        gc.set_threshold(*old)
        gc.collect()


# --- 1. lying arrays ---------------------------------------------------------------------------


class LyingDtype(np.ndarray):
    dtype = property(lambda self: np.dtype("i8"))


class LyingFlags(np.ndarray):
    flags = property(lambda self: SimpleNamespace(writeable=True, c_contiguous=True, aligned=True))


class LyingShape(np.ndarray):
    shape = property(lambda self: (1 << 20,))
    ndim = property(lambda self: 1)

    def __len__(self):
        return 1 << 20


def test_read_into_takes_the_dtype_from_the_array_not_its_attribute(impl):
    ring = impl.RecordRing("i8", 16)
    ring.write(np.arange(16, dtype="i8"))
    with pytest.raises(TypeError, match="out"):
        ring.read_into(np.zeros(16, "i1").view(LyingDtype))
    assert len(ring) == 16


def test_write_takes_the_dtype_from_the_array_not_its_attribute(impl):
    ring = impl.RecordRing("i8", 16)
    with pytest.raises(TypeError, match="array"):
        ring.write(np.zeros(4, "i1").view(LyingDtype))
    assert len(ring) == 0


def test_read_into_refuses_a_read_only_array_whatever_its_flags_say(impl):
    ring = impl.RecordRing("i8", 4)
    ring.write(np.arange(4, dtype="i8"))
    immutable = bytes(32)
    with pytest.raises(ValueError, match="writable"):
        ring.read_into(np.frombuffer(immutable, "i8").view(LyingFlags))
    assert immutable == bytes(32) and len(ring) == 4


def test_read_into_and_write_take_the_length_from_the_array(impl):
    ring = impl.RecordRing("i8", 64)
    ring.write(np.arange(64, dtype="i8"))
    out = np.zeros(4, "i8").view(LyingShape)
    assert ring.read_into(out) == 4
    assert np.asarray(out).view(np.ndarray).tolist() == [0, 1, 2, 3]
    ring.read()
    assert ring.write(np.arange(3, dtype="i8").view(LyingShape)) == 3
    assert ring.read().tolist() == [0, 1, 2]


def test_read_into_a_strided_array(impl):
    dtype = np.dtype([("a", "i8"), ("b", "f4")])
    ring = impl.RecordRing(dtype, 8)
    batch = np.zeros(6, dtype)
    batch["a"] = np.arange(6)
    ring.write(batch[:3])
    ring.read(2)
    ring.write(batch[3:])  # wraps: records 2..5 stored around the end of the buffer
    base = np.full(10, -1, dtype=[("a", "i8"), ("b", "f4")])
    assert ring.read_into(base[::2]) == 4
    assert base["a"].tolist() == [2, -1, 3, -1, 4, -1, 5, -1, -1, -1]
    backwards = np.zeros(3, "i8")
    ring2 = impl.RecordRing("i8", 4)
    ring2.write(np.arange(3, dtype="i8"))
    assert ring2.read_into(backwards[::-1]) == 3
    assert backwards.tolist() == [2, 1, 0]


def test_write_from_a_strided_array(impl):
    ring = impl.RecordRing("i8", 8)
    ring.write(np.arange(6, dtype="i8"))
    ring.read(5)
    assert ring.write(np.arange(20, dtype="i8")[::-3]) == 7
    assert ring.read().tolist() == [5, 19, 16, 13, 10, 7, 4, 1]


# --- 2. flexible numpy scalars -----------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, values",
    [
        ("S4", [np.bytes_(b"AAAA"), np.bytes_(b"ZZZZ"), np.bytes_(b"QR")]),
        ("U3", [np.str_("abc"), np.str_("xyz"), np.str_("q")]),
        ("V4", [np.void(b"\x01\x02\x03\x04"), np.void(b"\x05\x06\x07\x08"), np.void(b"\x09\x0a\x0b\x0c")]),
    ],
)
def test_flexible_scalars_store_their_data(impl, dtype, values):
    ring = impl.RecordRing(dtype, 4)
    for value in values:
        assert ring.push(value)
    expected = np.array(values, dtype=dtype)
    got = ring.read()
    assert got.tobytes() == expected.tobytes()


# --- 3. the borrow context ---------------------------------------------------------------------


def test_borrow_context_made_directly_is_refused(impl):
    pool = impl.ObjectPool(list, 1)
    kind = type(pool.borrow())
    with pytest.raises(TypeError):
        with kind():
            pass
    with kind(pool) as item:  # given its pool, it is an ordinary borrow context
        assert isinstance(item, list) and pool.in_use == 1
    assert pool.in_use == 0


# --- 4. finalisers run by the collector during an allocation -----------------------------------


def _conserved(pushed, *takes):
    got = [x for take in takes for x in take]
    assert None not in got
    assert sorted(got) == sorted(pushed)


def test_finaliser_popping_during_pop_many(impl):
    ring = impl.SpscRing(16)
    for _ in range(10):
        items = list(range(10))
        ring.push_many(items)
        stolen = []
        got = with_collection_inside(lambda: stolen.append(ring.pop()), ring.pop_many)
        _conserved(items, got, [s for s in stolen if s is not None], ring.pop_many())


def test_finaliser_popping_during_record_ring_read(impl):
    ring = impl.RecordRing("i8", 16)
    for _ in range(10):
        ring.write(np.arange(1, 11, dtype="i8"))
        stolen = []
        got = with_collection_inside(lambda: stolen.append(ring.pop()), ring.read).tolist()
        rest = ring.read().tolist()
        _conserved(list(range(1, 11)), got, [int(s) for s in stolen if s is not None], rest)


def test_finaliser_popping_during_record_ring_pop(impl):
    ring = impl.RecordRing([("a", "i8"), ("b", "i8")], 16)
    for _ in range(10):
        ring.write(np.array([(i, i) for i in range(1, 6)], dtype=ring.dtype))
        stolen = []
        first = with_collection_inside(lambda: stolen.append(ring.pop()), ring.pop)
        rest = [int(r["a"]) for r in ring.read()]
        _conserved(list(range(1, 6)), [int(first["a"])], [int(s["a"]) for s in stolen if s is not None], rest)


def test_finaliser_dequeuing_during_dequeue(impl):
    for q in (impl.TimestampedQueue(16), impl.PriorityQueue()):
        for _ in range(10):
            for i in range(1, 6):
                q.enqueue(i, i) if isinstance(q, impl.PriorityQueue) else q.enqueue(i)
            stolen = []
            first = with_collection_inside(lambda: stolen.append(q.dequeue()), q.dequeue)
            rest = []
            while len(q):
                rest.append(q.dequeue()[1])
            _conserved(list(range(1, 6)), [first[1]], [s[1] for s in stolen if s is not None], rest)


# --- 5. a histogram that re-enters its queue ---------------------------------------------------


def test_histogram_dequeuing_from_its_own_queue(impl):
    class Reentrant:
        active = True
        inner = []

        def record(self, value_ns):
            if Reentrant.active:
                Reentrant.inner.append(q.dequeue())

    q = impl.TimestampedQueue(8, histogram=Reentrant())
    q.enqueue("a")
    q.enqueue("b")
    with pytest.raises(RuntimeError, match="re-enter"):
        q.dequeue()
    assert len(q) == 2 and Reentrant.inner == []
    Reentrant.active = False
    assert [q.dequeue()[:2] for _ in range(2)] == [(0, "a"), (1, "b")]
    assert q.dequeue() is None


# --- 6. iterators and conversions that push and pop ---------------------------------------------


def test_push_many_iterator_that_pushes_and_pops(impl):
    ring = impl.SpscRing(8)
    accepted, popped = [], []

    def items():
        for i in range(40):
            if ring.push(("inner", i)):
                accepted.append(("inner", i))
            got = ring.pop()
            if got is not None:
                popped.append(got)
            yield ("outer", i)

    for _ in range(3):
        try:
            n = ring.push_many(items())
        except RuntimeError:
            n = None
        assert len(ring) >= 0
        assert n is None or n >= 0
        remaining = ring.pop_many()
        outer_in = [x for x in popped + remaining if x[0] == "outer"]
        inner_in = [x for x in popped + remaining if x[0] == "inner"]
        assert inner_in == accepted  # no inner push vanished, none duplicated, order kept
        if n is not None:
            assert len(outer_in) == n
        accepted.clear(), popped.clear()


def test_push_from_inside_push_many_iterator_never_vanishes(impl):
    ring = impl.SpscRing(16)

    def items():
        yield 1
        assert ring.push(100)
        yield 2

    try:
        n = ring.push_many(items())
    except RuntimeError:
        n = None
    got = ring.pop_many()
    if n is None:
        assert 100 not in got
    else:
        assert sorted(got) == [1, 2, 100] and n == 2


def test_push_from_a_conversion_during_record_ring_push_never_vanishes(impl):
    ring = impl.RecordRing("f8", 8)

    class Sneaky:
        def __float__(self):
            ring.push(1.0)
            return 2.0

    for record in (Sneaky(),):
        try:
            ok = ring.push(record)
        except RuntimeError:
            ok = None
        got = ring.read().tolist()
        assert (ok is None and got == []) or (ok and sorted(got) == [1.0, 2.0])

    structured = impl.RecordRing([("a", "i8"), ("b", "f8")], 8)

    class SneakyField:
        def __float__(self):
            structured.push((7, 7.0))
            return 2.0

    try:
        ok = structured.push((1, SneakyField()))
    except RuntimeError:
        ok = None
    got = structured.read().tolist()
    assert (ok is None and got == []) or (ok and sorted(got) == [(1, 2.0), (7, 7.0)])


# --- 7. clear() with finalisers ------------------------------------------------------------------


def test_clear_ends_when_a_finaliser_pushes_one_and_pops_two(impl):
    ring = impl.SpscRing(8)

    class Greedy:
        def __del__(self):
            ring.push("x")
            ring.pop()
            ring.pop()

    ring.push(Greedy())
    ring.push("b")
    ring.clear()
    assert 0 <= len(ring) <= 1


# --- 8. internals torn down from outside --------------------------------------------------------


def test_pool_survives_its_internals_being_cleared(impl):
    pool = impl.ObjectPool(list, 8)
    held = [pool.acquire() for _ in range(8)]  # full: the next acquire must grow the pool's tables
    for ref in gc.get_referents(pool):
        if isinstance(ref, (list, dict)):
            ref.clear()
    for _ in range(2000):
        try:
            pool.acquire()
        except RuntimeError:
            pass
    for obj in held:
        try:
            pool.release(obj)
        except (RuntimeError, ValueError):
            pass
    len(pool), pool.in_use, repr(pool)


def test_record_ring_storage_cannot_be_released_or_resized(impl):
    ring = impl.RecordRing([("a", "i8"), ("b", "f8")], 8)
    ring.push((1, 1.0))
    for ref in gc.get_referents(ring):
        if isinstance(ref, memoryview):
            ref.release()
    for ref in gc.get_referents(ring):
        if isinstance(ref, np.ndarray):
            with pytest.raises(ValueError):
                ref.resize(1 << 16, refcheck=False)
    for i in range(2, 20):
        ring.push((i, float(i)))
        assert int(ring.pop()["a"]) == i - 1
    assert ring.read().tolist() == [(19, 19.0)]


# --- 12. stamps and histograms that could wedge a queue ------------------------------------------


@pytest.mark.parametrize("stamp", [-(2**63), -1, 2**62 + 1, 2**63 - 1])
def test_stamps_outside_the_sane_range_are_refused(impl, stamp):
    q = impl.TimestampedQueue(4)
    with pytest.raises(ValueError, match="timestamp_ns"):
        q.enqueue("x", stamp)
    assert len(q) == 0


def test_extreme_sane_stamps_never_wedge_a_histogram(impl):
    hist = impl.LatencyHistogram()
    q = impl.TimestampedQueue(4, histogram=hist)
    q.enqueue("old", 0)
    q.enqueue("future", 2**62)
    assert q.dequeue()[1] == "old"
    assert q.dequeue()[1] == "future"
    assert len(q) == 0 and hist.count == 2


def test_a_histogram_that_always_raises_does_not_wedge_the_queue(impl):
    class Broken:
        calls = 0

        def record(self, value_ns):
            Broken.calls += 1
            raise OverflowError(f"cannot record {value_ns}")

    q = impl.TimestampedQueue(4, histogram=Broken())
    for name in "abc":
        q.enqueue(name)
    got = []
    for _ in range(6):
        with pytest.raises(OverflowError):
            q.dequeue()
        got.append(q.dequeue()[1])  # the retry delivers the message, unrecorded
        if not len(q):
            break
    assert got == ["a", "b", "c"] and Broken.calls == 3 and q.dequeue() is None


def test_a_histogram_that_raises_once_does_not_wedge_the_queue(impl):
    class Once:
        failed = False

        def record(self, value_ns):
            if not Once.failed:
                Once.failed = True
                raise OverflowError("too big")

    q = impl.TimestampedQueue(4, histogram=Once())
    q.enqueue("m")
    with pytest.raises(OverflowError):
        q.dequeue()
    assert q.dequeue()[:2] == (0, "m")


# --- 13. the twins agree --------------------------------------------------------------------------


def test_huge_batch_limits_are_clamped(impl):
    ring = impl.SpscRing(4)
    ring.push_many([1, 2, 3])
    assert ring.pop_many(2**63) == [1, 2, 3]
    assert ring.pop_many(2**200) == []
    records = impl.RecordRing("i8", 4)
    records.write(np.arange(3, dtype="i8"))
    assert records.read(2**63).tolist() == [0, 1, 2]


def test_reset_re_entering_release(impl):
    calls = []

    def reset(obj):
        calls.append(obj)
        if len(calls) == 1:
            pool.release(obj)  # the inner release's reset returns at once

    pool = impl.ObjectPool(list, 2, reset=reset)
    obj = pool.acquire()
    with pytest.raises(ValueError, match="released twice"):
        pool.release(obj)
