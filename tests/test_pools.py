"""ObjectPool and RecordPool: life cycle, identity tracking, exhaustion, bad input, refcounts."""

import gc
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from conftest import counted_class


@dataclass
class Order:  # eq=True makes instances unhashable: the pool must track them by identity
    order_id: int = 0
    price: float = 0.0


def test_preallocates_and_reuses(impl):
    made = []

    def factory():
        made.append(Order())
        return made[-1]

    pool = impl.ObjectPool(factory, 3)
    assert len(made) == 3 and len(pool) == 3 and pool.in_use == 0 and pool.allocated == 0
    a = pool.acquire()
    b = pool.acquire()
    assert a is not b and a in made and b in made
    assert len(pool) == 1 and pool.in_use == 2
    pool.release(a)
    assert pool.acquire() is a  # LIFO: the warmest object comes back first
    assert len(made) == 3


def test_grows_when_empty_and_counts_allocations(impl):
    pool = impl.ObjectPool(Order, 1)
    first, second, third = pool.acquire(), pool.acquire(), pool.acquire()
    assert pool.allocated == 2 and pool.in_use == 3 and len(pool) == 0
    for o in (first, second, third):
        pool.release(o)
    assert len(pool) == 3 and pool.in_use == 0
    objs = [pool.acquire() for _ in range(3)]
    assert pool.allocated == 2 and {id(o) for o in objs} == {id(first), id(second), id(third)}


def test_max_size_exhaustion(impl):
    pool = impl.ObjectPool(Order, 2, max_size=3)
    held = [pool.acquire() for _ in range(3)]
    with pytest.raises(impl.PoolExhausted):
        pool.acquire()
    assert issubclass(impl.PoolExhausted, RuntimeError)
    pool.release(held.pop())
    assert pool.acquire() is not None


def test_release_foreign_or_twice(impl):
    pool = impl.ObjectPool(Order, 2)
    other = impl.ObjectPool(Order, 1)
    obj = pool.acquire()
    with pytest.raises(ValueError, match="not handed out"):
        pool.release(Order())
    with pytest.raises(ValueError, match="not handed out"):
        pool.release(other.acquire())
    pool.release(obj)
    with pytest.raises(ValueError, match="twice"):
        pool.release(obj)
    assert len(pool) == 2 and pool.in_use == 0
    with pytest.raises(ValueError, match="twice"):
        pool.release(obj)


def test_reset_is_called_and_failure_keeps_object_out(impl):
    calls = []

    def reset(o):
        calls.append(o)
        if o.order_id < 0:
            raise RuntimeError("cannot reset")
        o.order_id = 0

    pool = impl.ObjectPool(Order, 1, reset=reset)
    o = pool.acquire()
    o.order_id = 5
    pool.release(o)
    assert calls == [o] and o.order_id == 0
    o = pool.acquire()
    o.order_id = -1
    with pytest.raises(RuntimeError, match="cannot reset"):
        pool.release(o)
    assert pool.in_use == 1
    o.order_id = 1
    pool.release(o)
    assert pool.in_use == 0


def test_borrow_releases_on_exception(impl):
    pool = impl.ObjectPool(Order, 1)
    with pool.borrow() as o:
        assert pool.in_use == 1 and isinstance(o, Order)
    assert pool.in_use == 0
    with pytest.raises(KeyError):
        with pool.borrow() as o:
            raise KeyError("boom")
    assert pool.in_use == 0 and len(pool) == 1
    with pool.borrow() as a, pool.borrow() as b:
        assert a is not b and pool.in_use == 2
    assert pool.in_use == 0


def test_borrow_cannot_be_entered_twice(impl):
    pool = impl.ObjectPool(Order, 2)
    ctx = pool.borrow()
    with ctx:
        with pytest.raises(RuntimeError, match="already entered"):
            ctx.__enter__()
    assert pool.in_use == 0


def test_borrow_exhausted_raises_and_holds_nothing(impl):
    pool = impl.ObjectPool(Order, 1, max_size=1)
    with pool.borrow():
        with pytest.raises(impl.PoolExhausted):
            with pool.borrow():
                pass
        assert pool.in_use == 1
    assert pool.in_use == 0


def test_factory_returning_same_object_is_refused(impl):
    singleton = Order()
    with pytest.raises(ValueError, match="already holds"):
        impl.ObjectPool(lambda: singleton, 2)
    pool = impl.ObjectPool(lambda: singleton, 1)
    pool.acquire()
    with pytest.raises(ValueError, match="already holds"):
        pool.acquire()


def test_growth_keeps_identity_tracking(impl):
    pool = impl.ObjectPool(list, 0)
    objs = [pool.acquire() for _ in range(1000)]
    assert pool.allocated == 1000
    for o in objs[::2]:
        pool.release(o)
    for o in objs[::2]:
        with pytest.raises(ValueError, match="twice"):
            pool.release(o)
    for o in objs[1::2]:
        pool.release(o)
    assert len(pool) == 1000 and pool.in_use == 0


@pytest.mark.parametrize("kwargs, error, word", [
    (dict(factory=None, size=1), TypeError, "factory"),
    (dict(factory=Order, size=-1), ValueError, "size"),
    (dict(factory=Order, size="3"), TypeError, "size"),
    (dict(factory=Order, size=1, reset=5), TypeError, "reset"),
    (dict(factory=Order, size=4, max_size=2), ValueError, "max_size"),
    (dict(factory=Order, size=1, max_size=1.5), TypeError, "max_size"),
])
def test_object_pool_bad_arguments(impl, kwargs, error, word):
    kwargs = dict(kwargs)
    factory = kwargs.pop("factory")
    size = kwargs.pop("size")
    with pytest.raises(error, match=word):
        impl.ObjectPool(factory, size, **kwargs)


def test_factory_error_propagates(impl):
    def broken():
        raise OSError("no memory today")

    with pytest.raises(OSError):
        impl.ObjectPool(broken, 1)
    pool = impl.ObjectPool(broken, 0)
    with pytest.raises(OSError):
        pool.acquire()
    assert pool.in_use == 0 and pool.allocated == 0


def test_object_pool_reference_counts(impl):
    keep = []

    def factory():
        keep.append(Order())
        return keep[-1]

    pool = impl.ObjectPool(factory, 4)
    base = [sys.getrefcount(o) for o in keep]
    got = [pool.acquire() for _ in range(3)]
    for o in got:
        pool.release(o)
    del got, o
    assert [sys.getrefcount(o) for o in keep] == base
    with pool.borrow() as o:
        pass
    del o
    assert [sys.getrefcount(o) for o in keep] == base
    del pool
    gc.collect()
    fresh = [Order() for _ in keep]  # referenced by a list only, as `keep` now is
    assert [sys.getrefcount(o) for o in keep] == [sys.getrefcount(o) for o in fresh]


def test_object_pool_frees_objects_when_freed(impl):
    Probe = counted_class()

    pool = impl.ObjectPool(Probe, 3)
    held = pool.acquire()
    del pool
    gc.collect()
    assert Probe.alive == 1  # the one still held by the caller
    del held
    assert Probe.alive == 0


def test_record_pool(impl):
    dtype = np.dtype([("id", "i8"), ("px", "f8")])
    pool = impl.RecordPool(dtype, 3)
    assert len(pool) == 3 and pool.records.shape == (3,) and pool.records.dtype == dtype
    slots = [pool.acquire() for _ in range(3)]
    assert sorted(slots) == [0, 1, 2] and all(type(s) is int for s in slots)
    pool.records[slots[1]] = (7, 1.5)
    with pytest.raises(impl.PoolExhausted):
        pool.acquire()
    pool.release(slots[1])
    assert len(pool) == 1
    assert pool.acquire() == slots[1] and tuple(pool.records[slots[1]]) == (7, 1.5)
    pool.release(np.int64(slots[0]))


@pytest.mark.parametrize("index, error, word", [(3, ValueError, "out of range"), (-1, ValueError, "out of range"),
                                                (2**70, ValueError, "out of range"), (1.0, TypeError, "index"),
                                                ("1", TypeError, "index"), (None, TypeError, "index")])
def test_record_pool_bad_release(impl, index, error, word):
    pool = impl.RecordPool("i8", 3)
    pool.acquire()
    with pytest.raises(error, match=word):
        pool.release(index)
    assert len(pool) == 2


def test_record_pool_double_release(impl):
    pool = impl.RecordPool("i8", 2)
    i = pool.acquire()
    pool.release(i)
    with pytest.raises(ValueError, match="already free"):
        pool.release(i)
    with pytest.raises(ValueError, match="already free"):
        pool.release(1 - i)
    assert len(pool) == 2


@pytest.mark.parametrize("dtype, size, error", [("i8", 0, ValueError), ("i8", "2", TypeError), ("O", 2, TypeError)])
def test_record_pool_bad_arguments(impl, dtype, size, error):
    with pytest.raises(error):
        impl.RecordPool(dtype, size)


def test_objects_referring_to_their_pool_are_collected(impl):
    Node = counted_class()

    pool = impl.ObjectPool(Node, 4)
    for _ in range(6):
        node = pool.acquire()
        node.pool = pool  # the self-releasing pattern: a back-reference
    del pool, node
    gc.collect()
    assert Node.alive == 0


def test_borrow_contexts_are_never_shared(impl):
    pool = impl.ObjectPool(Order, 4)
    first = pool.borrow()
    second = pool.borrow()  # `first` is still referenced: must be a different context
    assert first is not second
    with first as a, second as b:
        assert a is not b and pool.in_use == 2
    with first as a:  # a context can be entered again once it has exited
        with pool.borrow() as b:
            assert a is not b
    del first, second
    for _ in range(3):
        with pool.borrow() as a:
            with pool.borrow() as b:
                assert a is not b and pool.in_use == 2
    assert pool.in_use == 0 and len(pool) == 4


def test_manually_entered_borrow_is_not_reused(impl):
    pool = impl.ObjectPool(Order, 2)
    ctx = pool.borrow()
    held = ctx.__enter__()
    del ctx  # entered, never exited, dropped
    with pool.borrow() as other:
        assert other is not held
    assert pool.in_use == 1


def test_pool_with_borrowed_context_is_collected(impl):
    Probe = counted_class()

    pool = impl.ObjectPool(Probe, 2)
    with pool.borrow():
        pass
    del pool
    gc.collect()
    assert Probe.alive == 0
