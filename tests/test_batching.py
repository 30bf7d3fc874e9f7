"""AdaptiveBatcher on both backends: size and deadline flushes, threads, failures, refcounts, a model."""

import gc
import inspect
import os
import pickle
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_backend


@pytest.fixture(scope="session")
def batching(backend_name):
    """``lowlat.batching``'s module for the backend under test."""
    return load_backend(backend_name, "lowlat.batching")


def _both():
    return [load_backend(name, "lowlat.batching") for name in ("cython", "python")]


# ------------------------------------------------------------------ one interface


def _parameters(obj):
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def _public(cls):
    return sorted(name for name in dir(cls) if not name.startswith("_"))


def test_same_names_signatures_and_docstrings():
    compiled, pure = _both()
    assert compiled.__all__ == pure.__all__ == ["AdaptiveBatcher"]
    a, b = compiled.AdaptiveBatcher, pure.AdaptiveBatcher
    assert inspect.cleandoc(a.__doc__) == inspect.cleandoc(b.__doc__)
    assert _parameters(a) == _parameters(b)
    assert _public(a) == _public(b)
    for name in _public(b):
        x, y = getattr(a, name), getattr(b, name)
        assert inspect.cleandoc(x.__doc__ or "") == inspect.cleandoc(y.__doc__ or ""), name
        if callable(y):
            assert _parameters(x) == _parameters(y), name


@pytest.mark.skipif(os.environ.get("LOWLAT_PURE_PYTHON", "") not in ("", "0"), reason="pure Python forced")
def test_default_import_is_compiled_when_required():
    import lowlat.batching

    if os.environ.get("LOWLAT_REQUIRE_EXTENSIONS", "") in ("", "0"):
        pytest.skip("extensions not required here")
    assert lowlat.batching.BACKEND == "cython"
    assert type(lowlat.batching.AdaptiveBatcher(1, 0).batch_sizes).__module__ == "lowlat.hist._c"


BAD_ARGUMENTS = [
    ((0, 10), ValueError, "max_batch"),
    ((2**20 + 1, 10), ValueError, "max_batch"),
    (("4", 10), TypeError, "max_batch"),
    ((True, 10), TypeError, "max_batch"),
    ((4.0, 10), TypeError, "max_batch"),
    ((4, -1), ValueError, "max_delay_ns"),
    ((4, 1.5), TypeError, "max_delay_ns"),
    ((4, 2**63), ValueError, "max_delay_ns"),
    ((4, 10, 5), TypeError, "on_batch"),
]


@pytest.mark.parametrize("args, error, word", BAD_ARGUMENTS)
def test_constructor_errors_match(args, error, word):
    messages = []
    for module in _both():
        with pytest.raises(error) as info:
            module.AdaptiveBatcher(*args)
        assert word in str(info.value)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("now_ns, error", [("1", TypeError), (1.0, TypeError), (False, TypeError), (2**63, ValueError)])
def test_bad_now_ns_matches_and_changes_nothing(now_ns, error):
    messages = []
    for module in _both():
        b = module.AdaptiveBatcher(4, 10)
        b.add("a", now_ns=0)
        for call in (lambda: b.add("x", now_ns=now_ns), lambda: b.poll(now_ns), lambda: b.flush(now_ns)):
            with pytest.raises(error) as info:
                call()
            assert "now_ns" in str(info.value)
            messages.append(str(info.value))
        assert len(b) == 1 and b.items_added == 1 and b.batches == 0
    assert messages[:3] == messages[3:]


def test_start_without_on_batch_is_refused(batching):
    b = batching.AdaptiveBatcher(4, 1000)
    with pytest.raises(ValueError, match="on_batch"):
        b.start()
    assert not b.running


def test_not_picklable(batching):
    with pytest.raises(TypeError):
        pickle.dumps(batching.AdaptiveBatcher(4, 10))


def test_uninitialised_object_raises_instead_of_crashing(batching):
    cls = batching.AdaptiveBatcher
    b = cls.__new__(cls)
    for call in (lambda: b.add(1), lambda: b.flush(), lambda: b.start(), lambda: b.reset_statistics()):
        with pytest.raises(Exception):
            call()


# ------------------------------------------------------------------ flushing by size and by deadline


def test_size_flush_returns_the_batch_in_order(batching):
    b = batching.AdaptiveBatcher(4, 10**12)
    assert [b.add(i, now_ns=100 + i) for i in range(3)] == [None, None, None]
    assert len(b) == 3 and b.deadline_ns == 100 + 10**12
    assert b.add(3, now_ns=110) == [0, 1, 2, 3]
    assert len(b) == 0 and b.deadline_ns is None
    assert (b.batches, b.size_flushes, b.deadline_flushes, b.items_added, b.items_flushed) == (1, 1, 0, 4, 4)
    assert b.batch_sizes.count == 1 and b.batch_sizes.max == 4
    # added latency: each item's wait from its add to the add that filled the batch
    assert (b.added_latency.count, b.added_latency.min, b.added_latency.max) == (4, 0, 10)
    assert b.added_latency.mean == pytest.approx((10 + 9 + 8 + 0) / 4)


def test_size_flush_with_on_batch(batching):
    got = []
    b = batching.AdaptiveBatcher(3, 10**12, got.append)
    assert [b.add(i) for i in range(7)] == [None] * 7
    assert got == [[0, 1, 2], [3, 4, 5]] and len(b) == 1
    assert b.flush() is None and got[-1] == [6]
    assert b.flush() is None and len(got) == 3
    assert (b.size_flushes, b.explicit_flushes) == (2, 1)


def test_large_batches_take_the_vectorised_statistics_path(batching):
    b = batching.AdaptiveBatcher(1000, 10**12)
    for i in range(999):
        assert b.add(i, now_ns=i) is None
    batch = b.add(999, now_ns=2000)
    assert batch == list(range(1000))
    assert b.added_latency.count == 1000
    assert (b.added_latency.min, b.added_latency.max) == (0, 2000)  # the filling item waited 0
    assert b.added_latency.percentile(50) == 1500  # waits 0, 1002, 1003, ..., 2000: rank 500
    assert b.batch_sizes.percentile(50) == 1000


def test_deadline_flush_by_poll_and_by_add(batching):
    b = batching.AdaptiveBatcher(100, 50)
    b.add("a", now_ns=1000)
    b.add("b", now_ns=1030)
    assert b.poll(1049) is None and len(b) == 2
    assert b.poll(1050) == ["a", "b"]
    assert b.poll(5000) is None
    b.add("c", now_ns=2000)
    assert b.add("d", now_ns=2050) == ["c", "d"]  # late: the add flushes, itself included
    assert (b.deadline_flushes, b.size_flushes, b.batches) == (2, 0, 2)
    assert b.added_latency.max == 50 and b.added_latency.min == 0


def test_zero_delay_flushes_every_add(batching):
    b = batching.AdaptiveBatcher(8, 0)
    assert [b.add(i, now_ns=7) for i in range(3)] == [[0], [1], [2]]
    assert b.deadline_flushes == 3 and b.added_latency.max == 0


def test_max_batch_one(batching):
    got = []
    b = batching.AdaptiveBatcher(1, 10**12, got.append)
    for i in range(5):
        b.add(i)
    assert got == [[i] for i in range(5)] and b.size_flushes == 5


def test_flush_when_empty(batching):
    assert batching.AdaptiveBatcher(4, 10).flush() == []
    assert batching.AdaptiveBatcher(4, 10, lambda batch: None).flush() is None


def test_deadline_honoured_by_poll_without_new_items_real_clock(batching):
    delay_ns = 5_000_000
    b = batching.AdaptiveBatcher(1000, delay_ns)
    started = time.perf_counter_ns()
    b.add("only")
    batch = None
    while batch is None and time.perf_counter_ns() - started < 5_000_000_000:
        batch = b.poll()
        time.sleep(0.0005)
    assert batch == ["only"]
    waited = b.added_latency.max
    assert delay_ns <= waited <= time.perf_counter_ns() - started


def test_deadline_honoured_by_the_timer_thread_without_new_items(batching):
    delay_ns = 20_000_000
    delivered = []
    arrived = threading.Event()

    def on_batch(batch):
        delivered.append((batch, threading.current_thread().name, time.perf_counter_ns()))
        arrived.set()

    b = batching.AdaptiveBatcher(1000, delay_ns, on_batch)
    b.start()
    try:
        assert b.running
        for _ in range(2):  # twice: the second batch wakes a timer that went idle
            arrived.clear()
            started = time.perf_counter_ns()
            b.add("x")
            b.add("y")
            assert arrived.wait(5.0), "the timer thread never flushed"
            batch, thread, when = delivered[-1]
            assert batch == ["x", "y"]
            assert thread.startswith("lowlat-batcher-timer")
            assert when - started >= delay_ns
            assert b.added_latency.max >= delay_ns - (time.perf_counter_ns() - started)  # sanity: recorded
        assert b.deadline_flushes == 2 and len(b) == 0
    finally:
        b.close()
    assert not b.running


def test_timer_keeps_going_after_on_batch_raises(batching):
    calls = []
    second = threading.Event()
    hooked = []

    def on_batch(batch):
        calls.append(list(batch))
        if len(calls) == 1:
            raise RuntimeError("first batch fails")
        second.set()

    old_hook = threading.excepthook
    threading.excepthook = lambda args: hooked.append(args.exc_type)
    b = batching.AdaptiveBatcher(100, 2_000_000, on_batch)
    try:
        b.start()
        b.add(1)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.001)
        b.add(2)
        assert second.wait(5.0)
    finally:
        b.close()
        threading.excepthook = old_hook
    assert calls == [[1], [2]] and b.errors == 1 and hooked == [RuntimeError]


def test_stop_from_on_batch_on_the_timer_thread(batching):
    done = threading.Event()
    holder = {}

    def on_batch(batch):
        holder["b"].stop()  # must not join its own thread
        done.set()

    b = batching.AdaptiveBatcher(100, 1_000_000, on_batch)
    holder["b"] = b
    b.start()
    b.add(1)
    assert done.wait(5.0)
    deadline = time.monotonic() + 5
    while b.running and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not b.running
    b.close()


def test_start_twice_is_refused(batching):
    with batching.AdaptiveBatcher(4, 1000, lambda batch: None) as b:
        b.start()
        with pytest.raises(RuntimeError):
            b.start()
    assert not b.running


def test_with_block_flushes_to_on_batch_but_keeps_pull_items(batching):
    got = []
    with batching.AdaptiveBatcher(4, 10**12, got.append) as b:
        b.add(1)
    assert got == [[1]]
    with batching.AdaptiveBatcher(4, 10**12) as b:
        b.add(1)
    assert len(b) == 1 and b.close() == [1]


# ------------------------------------------------------------------ failures and re-entrance


def test_on_batch_that_raises_loses_and_duplicates_nothing(batching):
    delivered = []

    def on_batch(batch):
        delivered.extend(batch)
        if len(delivered) % 2:
            raise KeyError("odd")

    b = batching.AdaptiveBatcher(3, 5, on_batch)
    raised = 0
    now = 0
    for i in range(300):
        now += i % 4
        try:
            b.add(i, now_ns=now)
            if i % 7 == 0:
                b.poll(now + 3)
        except KeyError:
            raised += 1
    try:
        b.flush(now)
    except KeyError:
        raised += 1
    assert sorted(delivered) == list(range(300)) and delivered == list(range(300))
    assert raised == b.errors > 0 and len(b) == 0
    assert b.items_flushed == b.items_added == 300


def test_on_batch_reentering_the_batcher(batching):
    delivered = []
    holder = {}
    extra = iter(range(1000, 2000))

    def on_batch(batch):
        b = holder["b"]
        delivered.append(list(batch))
        if len(delivered) < 40:
            b.add(next(extra))  # may fill the batch: delivered by a nested call
            b.add(next(extra))
            b.poll()
            if len(delivered) % 5 == 0:
                b.flush()
            assert b.statistics()["batches"] >= 1

    b = batching.AdaptiveBatcher(2, 10**12, on_batch)
    holder["b"] = b
    for i in range(20):
        b.add(i)
    b.flush()
    flat = [x for batch in delivered for x in batch]
    assert sorted(flat) == sorted(set(flat))  # nothing twice
    added = list(range(20)) + list(range(1000, 1000 + (b.items_added - 20)))
    assert sorted(flat) == sorted(added) and len(b) == 0
    assert all(1 <= len(batch) <= 2 for batch in delivered)
    holder.clear()


def test_reentrant_add_in_pull_mode_is_impossible_to_confuse(batching):
    # No on_batch: a flushing call returns its batch; an add during nothing else is plain.
    b = batching.AdaptiveBatcher(2, 10**12)
    out = [b.add(i) for i in range(5)]
    assert out == [None, [0, 1], None, [2, 3], None] and b.flush() == [4]


# ------------------------------------------------------------------ references


class _Item:
    pass


def test_refcounts_exact(batching):
    probes = [_Item() for _ in range(40)]
    def counts():
        return [sys.getrefcount(probes[i]) for i in range(len(probes))]

    base = counts()

    def deltas():
        return [now - then for now, then in zip(counts(), base)]

    b = batching.AdaptiveBatcher(40, 10**12)
    for i in range(39):
        assert b.add(probes[i]) is None
    assert deltas() == [1] * 39 + [0]
    batch = b.add(probes[39])  # the numpy path (> 16 items)
    assert deltas() == [1] * 40
    del batch
    assert deltas() == [0] * 40
    small = batching.AdaptiveBatcher(8, 10**12)
    for i in range(5):
        small.add(probes[i])
    batch = small.flush()
    assert deltas() == [1] * 5 + [0] * 35
    del batch
    for i in range(5):
        small.add(probes[i])
    del small  # pending items are released with the batcher
    gc.collect()
    assert deltas() == [0] * 40


def test_refcounts_exact_when_on_batch_raises(batching):
    probe = _Item()
    before = sys.getrefcount(probe)

    def on_batch(batch):
        raise ValueError("no")

    b = batching.AdaptiveBatcher(2, 10**12, on_batch)
    b.add(probe)
    with pytest.raises(ValueError):
        b.add(probe)
    gc.collect()
    assert sys.getrefcount(probe) == before
    assert sys.getrefcount(on_batch) >= 2


# ------------------------------------------------------------------ threads


def test_producers_and_the_timer_thread_lose_nothing(batching):
    producers, per_producer = 3, 4000
    delivered = []
    b = batching.AdaptiveBatcher(16, 200_000, delivered.append)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)

    def produce(k):
        for i in range(per_producer):
            b.add((k, i))
            if i % 512 == 0:
                time.sleep(0.0003)  # gaps: some batches leave on their deadline

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    try:
        b.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        b.close()
    finally:
        sys.setswitchinterval(old)
    flat = [x for batch in delivered for x in batch]
    assert len(flat) == producers * per_producer == len(set(flat))
    for k in range(producers):  # batches are delivered in the order they were formed
        assert [i for (kk, i) in flat if kk == k] == list(range(per_producer))
    assert all(1 <= len(batch) <= 16 for batch in delivered)
    assert b.items_flushed == b.items_added == producers * per_producer
    assert b.batch_sizes.count == len(delivered) == b.batches


# ------------------------------------------------------------------ against a plain model


class ModelBatcher:
    """The contract in the plainest words: a list, flushed when full or when the oldest is due."""

    def __init__(self, max_batch, max_delay_ns):
        self.max_batch, self.max_delay_ns = max_batch, max_delay_ns
        self.items, self.stamps = [], []
        self.sizes, self.waits = [], []
        self.reasons = {"size": 0, "deadline": 0, "explicit": 0}

    def _take(self, now, reason):
        batch = self.items
        self.sizes.append(len(batch))
        self.waits.extend(now - s for s in self.stamps)
        self.reasons[reason] += 1
        self.items, self.stamps = [], []
        return batch

    def add(self, item, now):
        due = (self.stamps[0] if self.items else now) + self.max_delay_ns
        self.items.append(item)
        self.stamps.append(now)
        if len(self.items) >= self.max_batch:
            return self._take(now, "size")
        if now >= due:
            return self._take(now, "deadline")
        return None

    def poll(self, now):
        if self.items and now >= self.stamps[0] + self.max_delay_ns:
            return self._take(now, "deadline")
        return None

    def flush(self, now):
        return self._take(now, "explicit") if self.items else []


_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "add", "add", "poll", "flush", "bad"]), st.integers(0, 30)),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(max_batch=st.integers(1, 8), max_delay=st.integers(0, 60), ops=_OPS, push=st.booleans())
def test_differential_against_the_model(max_batch, max_delay, ops, push):
    modules = _both()
    sinks = [[] for _ in modules]
    batchers = [
        m.AdaptiveBatcher(max_batch, max_delay, sink.append if push else None) for m, sink in zip(modules, sinks)
    ]
    model = ModelBatcher(max_batch, max_delay)
    model_out = []
    now = 1_000
    for step, (op, dt) in enumerate(ops):
        now += dt
        if op == "bad":
            errors = []
            for b in batchers:
                with pytest.raises(TypeError) as info:
                    b.add(step, now_ns=str(now))
                errors.append(str(info.value))
            assert errors[0] == errors[1]
            continue
        expected = getattr(model, op)(*((step, now) if op == "add" else (now,)))
        if expected:
            model_out.append(expected)
        for b, sink in zip(batchers, sinks):
            got = getattr(b, op)(*((step,) if op == "add" else ()), now_ns=now)
            if push:
                assert got is None
            else:
                assert got == (expected if (expected or op == "flush") else None)
                if got:
                    sink.append(got)
        for b in batchers:
            assert len(b) == len(model.items)
            assert b.deadline_ns == (model.stamps[0] + max_delay if model.items else None)
    for b, sink in zip(batchers, sinks):
        assert sink == model_out
        assert (b.size_flushes, b.deadline_flushes, b.explicit_flushes) == tuple(model.reasons.values())
        assert b.batches == len(model.sizes) and b.items_added == sum(op == "add" for op, _ in ops)
        for hist, values in ((b.batch_sizes, model.sizes), (b.added_latency, model.waits)):
            assert hist.count == len(values)
            if values:  # every value here is below 2,048: the histograms are exact
                assert (hist.min, hist.max) == (min(values), max(values))
                ordered = sorted(values)
                for p in (0, 50, 90, 100):
                    rank = max(1, int(p / 100 * len(ordered) + 0.5))
                    assert hist.percentile(p) == ordered[rank - 1 if p else 0]
    a, c = batchers
    assert a.statistics() == c.statistics()


def test_stub_lists_every_public_member(batching):
    import ast
    from pathlib import Path

    import lowlat.batching

    stub = Path(lowlat.batching.__file__).with_name("_c.pyi")
    tree = ast.parse(stub.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    stubbed = {n.name for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    assert stubbed == {n for n in dir(batching.AdaptiveBatcher) if not n.startswith("_")}


# ------------------------------------------------------------------ the bench sections' async runner


