"""Differential property tests: hypothesis drives one operation sequence through both backends
and a plain model (deque, heapq, set), comparing results *and* exceptions.

The machines also re-enter the containers: items whose finalisers push and whose ``__eq__``
reads the ring, iterators that push and pop, conversions that push or pop, histograms that raise
or dequeue, resets that release. Both backends must match the model: no crash, no phantom item,
no lost one.
"""

import heapq
from collections import deque

import numpy as np
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conftest import BACKENDS, load_backend

SETTINGS = settings(max_examples=60, stateful_step_count=60, deadline=None)
ints = st.integers(min_value=-(2**70), max_value=2**70)
bad_limits = st.one_of(st.integers(-3, 10), st.none(), st.just(1.5), st.just("2"))


MARKER = "pushed by a finaliser"


class Finalising:
    """A ring item whose finaliser pushes MARKER back into its ring and whose ``__eq__`` reads it."""

    def __init__(self, ring, label, switch):
        self.ring, self.label, self.switch = ring, label, switch

    def __eq__(self, other):
        len(self.ring), self.ring.peek()  # re-enter the ring while it is being compared
        if isinstance(other, Finalising):
            return other.label == self.label
        return other == self.label

    __hash__ = None

    def __del__(self):
        if self.switch["on"]:
            self.ring.push(MARKER)


def outcome(fn, *args):
    """Return ('ok', result) or ('error', exception type) so backends can be compared."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return ("error", type(exc))


class SpscRingMachine(RuleBasedStateMachine):
    @initialize(capacity=st.integers(1, 9))
    def setup(self, capacity):
        self.rings = [load_backend(b).SpscRing(capacity) for b in BACKENDS]
        self.capacity = self.rings[0].capacity
        self.model = deque()
        self.switch = {"on": True}
        self.labels = 0

    def teardown(self):
        if hasattr(self, "rings"):
            self.switch["on"] = False  # items refer to their ring: break the cycles quietly
            for ring in self.rings:
                ring.clear()

    def finalised(self, dropped):
        """Model the finalisers of ``dropped`` items, which the test has just let go of."""
        for item in dropped:
            if isinstance(item, str) and item.startswith("F") and len(self.model) < self.capacity:
                self.model.append(MARKER)

    @rule()
    def push_finalising(self):
        label = f"F{self.labels}"
        self.labels += 1
        results = [outcome(r.push, Finalising(r, label, self.switch)) for r in self.rings]
        ok = len(self.model) < self.capacity
        assert results == [("ok", ok)] * 2
        if ok:
            self.model.append(label)
        else:
            self.finalised([label])  # refused: the test's item was dropped at once

    @rule(plan=st.lists(st.tuples(st.sampled_from(["none", "push", "pop", "both"]), st.integers(0, 99)), max_size=10))
    def push_many_reentrant(self, plan):
        logs = [[], []]

        def items(ring, log):
            for action, value in plan:
                if action in ("push", "both"):
                    log.append(("push", ring.push(("inner", value))))
                if action in ("pop", "both"):
                    log.append(("pop", ring.pop("empty")))
                yield ("outer", value)

        results = [outcome(r.push_many, items(r, log)) for r, log in zip(self.rings, logs)]
        model_log, count, expected = [], 0, None
        for action, value in plan:
            if len(self.model) >= self.capacity:
                break
            if action in ("push", "both"):
                ok = len(self.model) < self.capacity
                if ok:
                    self.model.append(("inner", value))
                model_log.append(("push", ok))
            if action in ("pop", "both"):
                model_log.append(("pop", self.model.popleft() if self.model else "empty"))
            if len(self.model) >= self.capacity:
                expected = ("error", RuntimeError)
                break
            self.model.append(("outer", value))
            count += 1
        agree = results == [expected or ("ok", count)] * 2 and logs == [model_log] * 2
        del results, logs
        assert agree, (plan, expected, count, model_log)
        self.finalised(entry[1] for entry in model_log if entry[0] == "pop")

    def same(self, method, *args):
        results = [outcome(getattr(r, method), *args) for r in self.rings]
        assert results[0] == results[1], (method, args, results)
        return results[0]

    @rule(item=ints)
    def push(self, item):
        assert self.same("push", item) == ("ok", len(self.model) < self.capacity)
        if len(self.model) < self.capacity:
            self.model.append(item)

    @rule(items=st.lists(ints, max_size=12), as_generator=st.booleans())
    def push_many(self, items, as_generator):
        results = [outcome(r.push_many, (x for x in items) if as_generator else list(items)) for r in self.rings]
        assert results[0] == results[1]
        taken = min(len(items), self.capacity - len(self.model))
        assert results[0] == ("ok", taken)
        self.model.extend(items[:taken])

    @rule()
    def pop(self):
        expected = self.model.popleft() if self.model else "empty"
        result = self.same("pop", "empty")
        agree = result == ("ok", expected)
        del result  # lets the popped item go: its finaliser may push
        assert agree
        self.finalised([expected])

    @rule()
    def peek(self):
        assert self.same("peek") == ("ok", self.model[0] if self.model else None)

    @rule(limit=bad_limits)
    def pop_many(self, limit):
        result = self.same("pop_many", limit)
        if result[0] == "ok":
            n = len(self.model) if limit is None else min(limit, len(self.model))
            expected = [self.model.popleft() for _ in range(n)]
            agree = result[1] == expected
            del result
            assert agree
            self.finalised(expected)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def clear(self):
        self.same("clear")
        for _ in range(len(self.model)):  # finalisers run one by one; what they push stays
            self.finalised([self.model.popleft()])

    @invariant()
    def lengths(self):
        if hasattr(self, "model"):
            assert [len(r) for r in self.rings] == [len(self.model)] * 2


class RecordRingMachine(RuleBasedStateMachine):
    dtype = np.dtype([("seq", "i8"), ("px", "f4")])

    @initialize(capacity=st.integers(1, 9))
    def setup(self, capacity):
        self.rings = [load_backend(b).RecordRing(self.dtype, capacity) for b in BACKENDS]
        self.capacity = self.rings[0].capacity
        self.model = deque()
        self.counter = 0

    def batch(self, n):
        arr = np.zeros(n, dtype=self.dtype)
        arr["seq"] = np.arange(self.counter, self.counter + n)
        arr["px"] = arr["seq"] * 0.5
        self.counter += n
        return arr

    @rule(n=st.integers(0, 12))
    def write(self, n):
        arr = self.batch(n)
        results = [r.write(arr) for r in self.rings]
        taken = min(n, self.capacity - len(self.model))
        assert results == [taken, taken]
        self.model.extend(arr["seq"][:taken].tolist())

    @rule()
    def push(self):
        rec = self.batch(1)[0]
        results = [r.push(tuple(rec)) for r in self.rings]
        ok = len(self.model) < self.capacity
        assert results == [ok, ok]
        if ok:
            self.model.append(int(rec["seq"]))

    @rule(value=st.integers(0, 99), inner=st.sampled_from(["push", "pop"]))
    def push_reentrant_conversion(self, value, inner):
        popped = [[], []]

        class Sneaky:
            def __init__(self, ring, log):
                self.ring, self.log = ring, log

            def __index__(self):
                if inner == "push":
                    self.ring.push((-1, 0.0))  # refused: push is not re-entrant
                else:
                    got = self.ring.pop()
                    self.log.append(None if got is None else int(got["seq"]))
                return value

            __int__ = __index__

        results = [outcome(r.push, (Sneaky(r, log), 0.5)) for r, log in zip(self.rings, popped)]
        if inner == "push" or len(self.model) == self.capacity:
            full = len(self.model) == self.capacity
            assert results == [("ok", False) if full else ("error", RuntimeError)] * 2
            return
        expected = self.model.popleft() if self.model else None
        assert popped[0][:1] == popped[1][:1] == [expected]
        assert results == [("ok", True)] * 2
        self.model.append(value)
        assert [len(r) for r in self.rings] == [len(self.model)] * 2

    @rule()
    def pop(self):
        got = [r.pop() for r in self.rings]
        if self.model:
            seq = self.model.popleft()
            assert [int(g["seq"]) for g in got] == [seq, seq]
        else:
            assert got == [None, None]

    @rule(limit=bad_limits)
    def read(self, limit):
        results = [outcome(r.read, limit) for r in self.rings]
        assert [k for k, _ in results] == [results[0][0]] * 2
        if results[0][0] == "error":
            assert results[0] == results[1]
            return
        n = len(self.model) if limit is None else min(limit, len(self.model))
        expected = [self.model.popleft() for _ in range(n)]
        assert [r["seq"].tolist() for _, r in results] == [expected, expected]

    @rule(size=st.integers(0, 10))
    def read_into(self, size):
        outs = [np.zeros(size, dtype=self.dtype) for _ in self.rings]
        results = [r.read_into(o) for r, o in zip(self.rings, outs)]
        n = min(size, len(self.model))
        expected = [self.model.popleft() for _ in range(n)]
        assert results == [n, n]
        assert [o["seq"][:n].tolist() for o in outs] == [expected, expected]


class ObjectPoolMachine(RuleBasedStateMachine):
    @initialize(size=st.integers(0, 4), max_extra=st.one_of(st.none(), st.integers(0, 3)))
    def setup(self, size, max_extra):
        max_size = None if max_extra is None else max(size, 1) + max_extra
        self.reenter = {"on": False}

        def make_reset(index):
            def reset(obj):
                if self.reenter["on"]:
                    self.reenter["on"] = False
                    self.pools[index].release(obj)  # the inner release frees it; the outer must refuse
            return reset

        self.pools = [load_backend(b).ObjectPool(list, size, max_size=max_size, reset=make_reset(i))
                      for i, b in enumerate(BACKENDS)]
        self.max_size = max_size
        self.free = size
        self.total = size
        self.allocated = 0
        self.out = [[], []]  # objects handed out, per backend, in acquisition order
        self.released = [[], []]

    @rule()
    def acquire(self):
        results = [outcome(p.acquire) for p in self.pools]
        assert [k for k, _ in results] == [results[0][0]] * 2
        can = self.free > 0 or self.max_size is None or self.total < self.max_size
        if not can:
            assert results[0][0] == "error" and results[0] == results[1]
            return
        assert results[0][0] == "ok"
        if self.free:
            self.free -= 1
        else:
            self.total += 1
            self.allocated += 1
        for out, (_, obj), rel in zip(self.out, results, self.released):
            out.append(obj)
            if any(obj is r for r in rel):
                rel[:] = [r for r in rel if r is not obj]

    @precondition(lambda self: self.out[0])
    @rule(data=st.data())
    def release(self, data):
        i = data.draw(st.integers(0, len(self.out[0]) - 1))
        for pool, out, rel in zip(self.pools, self.out, self.released):
            obj = out.pop(i)
            pool.release(obj)
            rel.append(obj)
        self.free += 1

    @precondition(lambda self: self.out[0])
    @rule(data=st.data())
    def release_reentrant(self, data):
        i = data.draw(st.integers(0, len(self.out[0]) - 1))
        results = []
        for pool, out, rel in zip(self.pools, self.out, self.released):
            obj = out.pop(i)
            self.reenter["on"] = True
            results.append(outcome(pool.release, obj))
            rel.append(obj)
        assert results == [("error", ValueError)] * 2
        self.free += 1

    @precondition(lambda self: self.released[0])
    @rule(data=st.data())
    def release_twice(self, data):
        i = data.draw(st.integers(0, len(self.released[0]) - 1))
        results = [outcome(p.release, rel[i]) for p, rel in zip(self.pools, self.released)]
        assert results == [("error", ValueError)] * 2

    @rule()
    def release_foreign(self):
        assert [outcome(p.release, []) for p in self.pools] == [("error", ValueError)] * 2

    @invariant()
    def counts(self):
        if hasattr(self, "pools"):
            assert [len(p) for p in self.pools] == [self.free] * 2
            assert [p.in_use for p in self.pools] == [len(self.out[0])] * 2
            assert [p.allocated for p in self.pools] == [self.allocated] * 2


class RecordPoolMachine(RuleBasedStateMachine):
    @initialize(size=st.integers(1, 6))
    def setup(self, size):
        self.pools = [load_backend(b).RecordPool("i8", size) for b in BACKENDS]
        self.size = size
        self.used = set()

    @rule()
    def acquire(self):
        results = [outcome(p.acquire) for p in self.pools]
        assert results[0] == results[1]
        if len(self.used) == self.size:
            assert results[0][0] == "error"
        else:
            index = results[0][1]
            assert 0 <= index < self.size and index not in self.used
            self.used.add(index)

    @rule(index=st.one_of(st.integers(-2, 8), st.just(2**65), st.just("1")))
    def release(self, index):
        results = [outcome(p.release, index) for p in self.pools]
        assert results[0] == results[1]
        if index in self.used:
            assert results[0] == ("ok", None)
            self.used.discard(index)
        else:
            assert results[0][0] == "error"

    @invariant()
    def free_count(self):
        if hasattr(self, "pools"):
            assert [len(p) for p in self.pools] == [self.size - len(self.used)] * 2


class QueueMachine(RuleBasedStateMachine):
    @initialize(capacity=st.integers(1, 9), bounded=st.booleans())
    def setup(self, capacity, bounded):
        self.mode = "ok"
        self.unrecorded = False  # whether record() failed for the oldest message
        machine = self

        class Histogram:
            def __init__(self, index):
                self.index = index

            def record(self, value_ns):
                assert 0 <= value_ns < 2**63
                if machine.mode == "raise":
                    raise OSError("histogram store unavailable")
                if machine.mode == "reenter":
                    machine.tq[self.index].dequeue()

        self.tq = [load_backend(b).TimestampedQueue(capacity, histogram=Histogram(i)) for i, b in enumerate(BACKENDS)]
        self.tq_capacity = self.tq[0].capacity
        self.tq_model = deque()
        self.tq_seq = 0
        self.drops = 0
        self.pq = [load_backend(b).PriorityQueue(capacity if bounded else None) for b in BACKENDS]
        self.pq_bound = capacity if bounded else None
        self.pq_model = []
        self.pq_seq = 0

    @rule(message=ints, stamp=st.one_of(st.none(), st.integers(-(2**64), 2**64)))
    def enqueue(self, message, stamp):
        results = [outcome(q.enqueue, message, stamp) for q in self.tq]
        assert results[0] == results[1]
        if results[0][0] == "error":
            return
        if len(self.tq_model) < self.tq_capacity:
            assert results[0] == ("ok", True)
            self.tq_model.append((self.tq_seq, message))
            self.tq_seq += 1
        else:
            assert results[0] == ("ok", False)
            self.drops += 1

    @rule(mode=st.sampled_from(["raise", "reenter"]))
    def dequeue_with_failing_histogram(self, mode):
        self.mode = mode
        try:
            results = [outcome(q.dequeue) for q in self.tq]
        finally:
            self.mode = "ok"
        if not self.tq_model:
            assert results == [("ok", None)] * 2
        elif self.unrecorded:  # record() failed for this message before: it leaves unrecorded
            expected = self.tq_model.popleft()
            assert [r[0] for r in results] == ["ok", "ok"] and [r[1][:2] for r in results] == [expected] * 2
            self.unrecorded = False
        else:
            assert results == [("error", OSError if mode == "raise" else RuntimeError)] * 2
            self.unrecorded = True

    @rule()
    def dequeue(self):
        got = [q.dequeue() for q in self.tq]
        self.unrecorded = False
        if self.tq_model:
            expected = self.tq_model.popleft()
            assert [g[:2] for g in got] == [expected, expected]
        else:
            assert got == [None, None]

    @rule(priority=st.one_of(ints, st.just(1.0)), message=ints)
    def pq_enqueue(self, priority, message):
        results = [outcome(q.enqueue, priority, message) for q in self.pq]
        assert results[0] == results[1]
        if results[0][0] == "error":
            return
        full = self.pq_bound is not None and len(self.pq_model) == self.pq_bound
        assert results[0] == ("ok", not full)
        if not full:
            heapq.heappush(self.pq_model, (priority, self.pq_seq, message))
            self.pq_seq += 1

    @rule()
    def pq_dequeue(self):
        got = [q.dequeue() for q in self.pq]
        if self.pq_model:
            prio, _, message = heapq.heappop(self.pq_model)
            assert [g[:2] for g in got] == [(prio, message)] * 2
        else:
            assert got == [None, None]

    @invariant()
    def stats(self):
        if hasattr(self, "tq"):
            expected = {"enqueue_count": self.tq_seq, "dequeue_count": self.tq_seq - len(self.tq_model), "drops": self.drops}
            assert [q.stats for q in self.tq] == [expected, expected]
            assert [len(q) for q in self.pq] == [len(self.pq_model)] * 2


@pytest.mark.parametrize("machine", [SpscRingMachine, RecordRingMachine, ObjectPoolMachine, RecordPoolMachine, QueueMachine],
                         ids=lambda m: m.__name__)
def test_backends_agree_with_model(machine, backends):
    machine.TestCase.settings = SETTINGS
    machine.TestCase().runTest()
