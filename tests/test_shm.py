"""Shared-memory rings: ShmRing and ShmRecordRing, in one process and across real processes.

Every test takes the backend from the ``impl`` fixture (or both from ``backends``); worker functions
for spawned processes live in ``_shm_workers`` and get the backend by name. Every wait has a
timeout, and every segment a test makes is unlinked in a ``finally`` or a fixture.
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _shm_workers as workers

SPAWN = multiprocessing.get_context("spawn")
SHM_DIR = "/dev/shm"
HEADER = 512
W_VERSION, W_KIND, W_HEADER_SIZE, W_CAPACITY, W_MAX_MESSAGE, W_DESCRIPTOR_LENGTH = 1, 2, 3, 4, 5, 6
W_PRODUCER_PID, W_CONSUMER_PID, W_PRODUCER_POSITION, W_CONSUMER_POSITION = 16, 17, 32, 48

pytestmark = pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="needs POSIX shared memory in /dev/shm")


def segment_path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def poke(name: str, word: int, value: int) -> None:
    """Overwrite one u64 header word of a segment, as a hostile or buggy process could."""
    with open(segment_path(name), "r+b") as fh:
        fh.seek(word * 8)
        fh.write(struct.pack("=Q", value))


def poke_bytes(name: str, offset: int, data: bytes) -> None:
    with open(segment_path(name), "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def peek(name: str, word: int) -> int:
    with open(segment_path(name), "rb") as fh:
        fh.seek(word * 8)
        return struct.unpack("=Q", fh.read(8))[0]


def unlink_quietly(name: str) -> None:
    try:
        os.unlink(segment_path(name))
    except FileNotFoundError:
        pass


@pytest.fixture
def segments():
    """Names registered here are unlinked after the test, whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        unlink_quietly(name)


@pytest.fixture
def ring_pair(impl, segments):
    """A fresh ShmRing (producer end) and its consumer end, same backend."""
    producer = impl.ShmRing.create(capacity_bytes=4096)
    segments.append(producer.name)
    consumer = impl.ShmRing.attach(producer.name)
    yield producer, consumer
    producer.close()
    consumer.close()


def join_all(processes, timeout: float) -> None:
    """Join spawned processes; kill and fail on any that outlive ``timeout``."""
    deadline = time.monotonic() + timeout
    stuck = []
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            stuck.append(process)
            process.kill()
            process.join(5)
    assert not stuck, f"processes did not finish within {timeout} s: {stuck}"


def collect(results, count: int, timeout: float) -> dict:
    out = {}
    deadline = time.monotonic() + timeout
    while len(out) < count:
        try:
            who, status, detail = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            break
        out[who] = (status, detail)
    return out


# ---------------------------------------------------------------------------------------------
# The basics
# ---------------------------------------------------------------------------------------------


def test_create_attach_round_trip(impl, segments):
    with impl.ShmRing.create(capacity_bytes=1000) as producer:
        segments.append(producer.name)
        assert producer.name.startswith("lowlat_")
        assert producer.capacity == 1024  # rounded up to a power of two
        assert producer.max_message == 1024 // 2 - 8
        assert producer.role == "producer"
        assert os.stat(segment_path(producer.name)).st_mode & 0o777 == 0o600
        with impl.ShmRing.attach(producer.name) as consumer:
            assert consumer.role == "consumer"
            assert (consumer.capacity, consumer.max_message) == (producer.capacity, producer.max_message)
            assert consumer.get() is None
            assert producer.put(b"hello")
            assert producer.put(bytearray(b"")) and producer.put(memoryview(b"abc"))
            assert producer.put(np.arange(3, dtype=np.int16))
            assert consumer.get() == b"hello"
            assert consumer.get() == b""
            assert consumer.get() == b"abc"
            assert consumer.get() == np.arange(3, dtype=np.int16).tobytes()
            assert consumer.get() is None
        assert consumer.closed
    assert producer.closed


def test_max_message_is_recorded_and_enforced(impl, segments):
    producer = impl.ShmRing.create(capacity_bytes=4096, max_message=100)
    segments.append(producer.name)
    with impl.ShmRing.attach(producer.name) as consumer:
        assert producer.max_message == consumer.max_message == 100
        assert producer.put(bytes(100))
        with pytest.raises(ValueError, match="101 bytes"):
            producer.put(bytes(101))
        assert consumer.get() == bytes(100)
    producer.close()


def test_named_segment_and_name_errors(impl, segments):
    name = f"lowlat_test_{os.getpid()}_named"
    ring = impl.ShmRing.create(name, 256)
    segments.append(name)
    assert ring.name == name
    with pytest.raises(FileExistsError):
        impl.ShmRing.create(name, 256)
    ring.close()
    with pytest.raises(FileNotFoundError):
        impl.ShmRing.attach(name + "_missing")
    with pytest.raises(TypeError, match="name"):
        impl.ShmRing.attach(42)
    with pytest.raises(ValueError, match="name"):
        impl.ShmRing.create("a/b")
    with pytest.raises(ValueError, match="name"):
        impl.ShmRing.create("")
    with impl.ShmRing.attach("/" + name) as consumer:  # a leading slash is the same name
        assert consumer.name == name


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"capacity_bytes": 32}, ValueError, "capacity_bytes"),
        ({"capacity_bytes": 1 << 41}, ValueError, "capacity_bytes"),
        ({"capacity_bytes": 1.5}, TypeError, "capacity_bytes"),
        ({"capacity_bytes": True}, TypeError, "capacity_bytes"),
        ({"max_message": 1 << 20}, ValueError, "max_message"),
        ({"max_message": -1}, ValueError, "max_message"),
        ({"max_message": "9"}, TypeError, "max_message"),
        ({"role": "reader"}, ValueError, "role"),
        ({"role": 1}, TypeError, "role"),
        ({"wait_strategy": "nap"}, ValueError, "wait_strategy"),
    ],
)
def test_create_argument_errors(impl, kwargs, error, words):
    def ours() -> set:
        return {name for name in os.listdir(SHM_DIR) if name.startswith("lowlat_")}

    before = ours()
    with pytest.raises(error, match=words):
        impl.ShmRing.create(**kwargs)
    assert ours() - before == set()  # nothing left behind


def test_put_get_errors(impl, ring_pair):
    producer, consumer = ring_pair
    with pytest.raises(TypeError, match="data"):
        producer.put("text")
    with pytest.raises(TypeError, match="data"):
        producer.put(None)
    with pytest.raises(TypeError, match="data"):
        producer.put(memoryview(b"abcdef")[::2])  # not contiguous
    with pytest.raises(ValueError, match="max_message"):
        producer.put(bytes(producer.max_message + 1))
    with pytest.raises(ValueError, match="max_message"):
        producer.put(bytes(producer.capacity + 1))
    assert producer.put(bytes(producer.max_message))
    with pytest.raises(TypeError, match="timeout"):
        producer.put(b"x", timeout="soon")
    with pytest.raises(TypeError, match="timeout"):
        consumer.get(timeout=True)
    with pytest.raises(ValueError, match="timeout"):
        producer.put(b"x", timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        consumer.get(timeout=float("nan"))
    with pytest.raises(TypeError, match="messages"):
        producer.put_many(b"abc")
    with pytest.raises(TypeError, match=r"messages\[1\]"):
        producer.put_many([b"ok", 3])
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        producer.put_many([bytes(producer.max_message + 1)])
    with pytest.raises(ValueError, match="max_messages"):
        consumer.get_many(-1)
    with pytest.raises(TypeError, match="max_messages"):
        consumer.get_many("3")
    # The checks above wrote nothing: only the max_message-sized message is there.
    assert consumer.get_many() == [bytes(producer.max_message)]


def test_roles_enforced(impl, ring_pair):
    producer, consumer = ring_pair
    with pytest.raises(RuntimeError, match="producer"):
        consumer.put(b"x")
    with pytest.raises(RuntimeError, match="consumer"):
        producer.get()
    with pytest.raises(RuntimeError, match="consumer"):
        producer.get_many()
    with pytest.raises(RuntimeError, match="consumer"):
        producer.get_into(bytearray(8))
    with pytest.raises(RuntimeError, match="producer"):
        consumer.put_many([b"x"])


def test_role_held_by_live_process_is_refused(impl, ring_pair):
    producer, consumer = ring_pair
    pid = str(os.getpid())
    with pytest.raises(RuntimeError, match=pid):
        impl.ShmRing.attach(producer.name, role="producer")
    with pytest.raises(RuntimeError, match=pid):
        impl.ShmRing.attach(producer.name, role="consumer", force=True)  # force only takes over the dead
    consumer.close()
    again = impl.ShmRing.attach(producer.name)  # a closed end gives its role back
    again.close()


def test_role_of_dead_process_needs_force(impl, segments):
    ring = impl.ShmRing.create(capacity_bytes=256)
    segments.append(ring.name)
    try:
        child = SPAWN.Process(
            target=workers.attach_and_die, args=(workers.backend_name(impl), ring.name, "consumer")
        )
        child.start()
        join_all([child], 60)
        assert child.exitcode == -signal.SIGKILL
        holder = peek(ring.name, W_CONSUMER_PID)
        assert holder == child.pid
        with pytest.raises(RuntimeError, match=rf"pid {child.pid}.*force=True"):
            impl.ShmRing.attach(ring.name)
        with impl.ShmRing.attach(ring.name, force=True) as consumer:
            assert peek(ring.name, W_CONSUMER_PID) == os.getpid()
            assert ring.put(b"after takeover")
            assert consumer.get() == b"after takeover"
        assert peek(ring.name, W_CONSUMER_PID) == 0
    finally:
        ring.close()


def test_close_makes_calls_raise(impl, segments):
    producer = impl.ShmRing.create(capacity_bytes=256)
    segments.append(producer.name)
    consumer = impl.ShmRing.attach(producer.name)
    producer.close()
    producer.close()  # idempotent
    consumer.close()
    for call in (
        lambda: producer.put(b"x"),
        lambda: producer.put_many([b"x"]),
        lambda: consumer.get(),
        lambda: consumer.get(timeout=0.01),
        lambda: consumer.get_into(bytearray(8)),
        lambda: consumer.get_many(),
    ):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert producer.role == "producer" and producer.closed
    assert "closed" in repr(producer)
    producer.unlink()  # allowed after close
    assert not os.path.exists(segment_path(producer.name))
    with pytest.raises(FileNotFoundError):
        producer.unlink()


def test_ends_do_not_pickle(impl, ring_pair):
    import pickle

    with pytest.raises(TypeError, match="attach"):
        pickle.dumps(ring_pair[0])


def test_direct_construction_is_refused(impl):
    with pytest.raises(TypeError, match="create"):
        impl.ShmRing()
    with pytest.raises(TypeError, match="create"):
        impl.ShmRecordRing()


def test_get_into(impl, ring_pair):
    producer, consumer = ring_pair
    buffer = bytearray(16)
    assert consumer.get_into(buffer) == -1
    assert consumer.get_into(bytearray(0)) == -1
    producer.put(b"0123456789abcdefXYZ")
    with pytest.raises(ValueError, match="19"):
        consumer.get_into(buffer)  # too small: the message stays
    with pytest.raises(TypeError, match="buffer"):
        consumer.get_into(b"read-only bytes are not a buffer to write to")
    with pytest.raises(TypeError, match="buffer"):
        consumer.get_into(12)
    big = np.zeros(32, dtype=np.uint8)
    assert consumer.get_into(big) == 19
    assert big[:19].tobytes() == b"0123456789abcdefXYZ"
    producer.put(b"")
    assert consumer.get_into(bytearray(0)) == 0
    assert consumer.get_into(buffer) == -1


def test_put_many_get_many(impl, segments):
    producer = impl.ShmRing.create(capacity_bytes=256)  # 256 bytes: 16 records of 16 bytes
    segments.append(producer.name)
    with impl.ShmRing.attach(producer.name) as consumer:
        messages = [bytes([i]) * 5 for i in range(40)]
        assert producer.put_many([]) == 0
        assert producer.put_many(messages) == 16  # only the leading ones that fit
        assert producer.put_many(messages) == 0
        assert consumer.get_many(0) == []
        assert consumer.get_many(3) == messages[:3]
        assert consumer.get_many(1 << 70) == messages[3:16]
        assert producer.put_many(messages[:3]) == 3
        assert consumer.get_many(1 << 70) == messages[:3]
        assert producer.put_many(messages[:3]) == 3
        assert producer.put_many(tuple(messages[16:])) == 13
        assert consumer.get_many() == messages[:3] + messages[16:29]
        assert consumer.get_many() == []
    producer.close()


@pytest.mark.parametrize("strategy", ["spin", "yield", "backoff"])
def test_timeouts_return_without_losing_anything(impl, segments, strategy):
    producer = impl.ShmRing.create(capacity_bytes=128, wait_strategy=strategy)
    segments.append(producer.name)
    with impl.ShmRing.attach(producer.name, wait_strategy=strategy) as consumer:
        assert consumer.wait_strategy == strategy
        started = time.perf_counter()
        assert consumer.get(timeout=0.05) is None
        assert consumer.get_into(bytearray(8), timeout=0.05) == -1
        assert 0.1 <= time.perf_counter() - started < 5
        while producer.put(b"12345678"):
            pass
        started = time.perf_counter()
        assert producer.put(b"87654321", timeout=0.05) is False
        assert producer.put(b"87654321", timeout=0) is False
        assert 0.05 <= time.perf_counter() - started < 5
        assert consumer.get_many() == [b"12345678"] * 8
        assert producer.put(b"87654321", timeout=0.05) is True
        assert consumer.get(timeout=float("inf")) == b"87654321"
    producer.close()


def test_wait_wakes_when_the_other_side_moves(impl, ring_pair):
    import threading

    producer, consumer = ring_pair
    timer = threading.Timer(0.05, lambda: producer.put(b"late"))
    timer.start()
    try:
        started = time.perf_counter()
        assert consumer.get(timeout=5) == b"late"
        assert time.perf_counter() - started < 4
    finally:
        timer.cancel()


@pytest.mark.parametrize("side", ["consumer", "producer"])
def test_close_from_another_thread_during_a_wait(impl, segments, side):
    import threading

    producer = impl.ShmRing.create(capacity_bytes=64)
    segments.append(producer.name)
    consumer = impl.ShmRing.attach(producer.name)
    if side == "producer":
        while producer.put(b"fill"):
            pass
        waiting, call = producer, lambda: producer.put(b"more", timeout=10)
    else:
        waiting, call = consumer, lambda: consumer.get(timeout=10)
    outcome = []

    def wait() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.1)
    started = time.perf_counter()
    waiting.close()
    thread.join(5)
    assert not thread.is_alive()
    assert time.perf_counter() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError), outcome
    producer.close()
    consumer.close()


def test_a_signal_interrupts_a_long_wait(impl, ring_pair):
    """Ctrl-C (here: a timer's handler raising) gets through a wait that runs without the GIL."""
    producer, consumer = ring_pair

    def interrupt(signum, frame):
        raise KeyboardInterrupt("timer")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            consumer.get(timeout=10)
        assert time.perf_counter() - started < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert producer.put(b"still works")
    assert consumer.get() == b"still works"


def record_size(length: int) -> int:
    return (length + 15) & ~7


def advance(position: int, length: int, capacity: int) -> int:
    """The layout's rule: a record that would straddle the end starts at offset 0 (after padding)."""
    offset = position % capacity
    if record_size(length) > capacity - offset:
        position += capacity - offset
    return position + record_size(length)


@pytest.mark.parametrize("mixed", [False, True], ids=["same", "mixed"])
def test_wrap_around_at_every_offset(impl, backends, segments, mixed):
    capacity = 256
    consumer_impl = impl
    if mixed:
        consumer_impl = backends[1] if impl is backends[0] else backends[0]
    producer = impl.ShmRing.create(capacity_bytes=capacity)
    segments.append(producer.name)
    consumer = consumer_impl.ShmRing.attach(producer.name)
    try:
        lengths = [0, 1, 7, 8, 9, 15, 16, 17, 55, 63, 64, 100, producer.max_message]
        position = 0
        seq = 0
        for start in range(0, capacity, 8):
            for length in lengths:
                while position % capacity != start:  # step with empty messages (8-byte records)
                    assert producer.put(b"")
                    assert consumer.get() == b""
                    position = advance(position, 0, capacity)
                first = workers.make_message(seq, max(0, length - 12))[:length]
                second = bytes(reversed(first))
                assert producer.put(first)
                assert producer.put_many([second]) in (0, 1)
                taken = consumer.get_many()
                assert taken[0] == first
                position = advance(position, len(first), capacity)
                if len(taken) == 2:
                    assert taken[1] == second
                    position = advance(position, len(second), capacity)
                else:
                    assert len(taken) == 1
                seq += 1
    finally:
        producer.close()
        consumer.close()


# ---------------------------------------------------------------------------------------------
# Hypothesis: put/get against a model of the layout, both backends and mixed
# ---------------------------------------------------------------------------------------------


class RingModel:
    """The specification: 8-byte aligned [length | payload] records, padding to the end on straddle."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.produced = 0
        self.consumed = 0
        self.messages: deque = deque()  # (message, position after it)

    def put(self, message: bytes) -> bool:
        after = advance(self.produced, len(message), self.capacity)
        if after - self.consumed > self.capacity:
            return False
        self.produced = after
        self.messages.append((message, after))
        return True

    def get(self):
        if not self.messages:
            return None
        message, self.consumed = self.messages.popleft()
        return message


MESSAGE = st.binary(max_size=130)  # max_message is 120 here: longer ones must raise ValueError
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), MESSAGE),
        st.tuples(st.just("put_many"), st.lists(MESSAGE, max_size=6)),
        st.tuples(st.just("get"), st.none()),
        st.tuples(st.just("get_many"), st.one_of(st.none(), st.integers(0, 5))),
        st.tuples(st.just("get_into"), st.integers(0, 130)),
    ),
    max_size=60,
)


def run_against_model(producer, consumer, ops) -> None:
    model = RingModel(producer.capacity)
    longest = producer.max_message
    for op, argument in ops:
        if op == "put" and len(argument) > longest:
            with pytest.raises(ValueError, match="max_message"):
                producer.put(argument)
        elif op == "put":
            assert producer.put(argument) == model.put(argument)
        elif op == "put_many" and any(len(message) > longest for message in argument):
            with pytest.raises(ValueError, match="max_message"):
                producer.put_many(argument)  # and nothing of the batch is written
        elif op == "put_many":
            expected = 0
            for message in argument:
                if not model.put(message):
                    break
                expected += 1
            assert producer.put_many(argument) == expected
        elif op == "get":
            assert consumer.get() == model.get()
        elif op == "get_many":
            limit = len(model.messages) if argument is None else min(argument, len(model.messages))
            assert consumer.get_many(argument) == [model.get() for _ in range(limit)]
        else:
            buffer = bytearray(argument)
            if not model.messages:
                assert consumer.get_into(buffer) == -1
            elif len(model.messages[0][0]) > argument:
                with pytest.raises(ValueError):
                    consumer.get_into(buffer)
            else:
                message = model.get()
                assert consumer.get_into(buffer) == len(message)
                assert bytes(buffer[: len(message)]) == message
    assert consumer.get_many() == [model.get() for _ in range(len(model.messages))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_hypothesis_against_model(impl, ops):
    producer = impl.ShmRing.create(capacity_bytes=256)
    try:
        with impl.ShmRing.attach(producer.name) as consumer:
            run_against_model(producer, consumer, ops)
    finally:
        producer.close()
        producer.unlink()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, compiled_produces=st.booleans())
def test_hypothesis_mixed_backends(backends, ops, compiled_produces):
    compiled, pure = backends
    producer_impl, consumer_impl = (compiled, pure) if compiled_produces else (pure, compiled)
    producer = producer_impl.ShmRing.create(capacity_bytes=256)
    try:
        with consumer_impl.ShmRing.attach(producer.name) as consumer:
            run_against_model(producer, consumer, ops)
    finally:
        producer.close()
        producer.unlink()


# ---------------------------------------------------------------------------------------------
# Real processes
# ---------------------------------------------------------------------------------------------


def run_cross_process(producer_backend: str, consumer_backend: str, count: int, segments, creator) -> None:
    ring = creator.ShmRing.create(capacity_bytes=1 << 16)
    name = ring.name
    segments.append(name)
    ring.close()  # the children take both roles
    results = SPAWN.Queue()
    budget = 120.0
    processes = [
        SPAWN.Process(target=workers.consume, args=(consumer_backend, name, count, budget, results)),
        SPAWN.Process(target=workers.produce, args=(producer_backend, name, count, 11, 200, budget, results)),
    ]
    for process in processes:
        process.start()
    try:
        outcome = collect(results, 2, budget + 30)
        join_all(processes, 30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    assert outcome.get("producer") == ("ok", count), outcome
    assert outcome.get("consumer") == ("ok", count), outcome
    assert peek(name, W_PRODUCER_PID) == 0 and peek(name, W_CONSUMER_PID) == 0


def test_million_messages_between_processes(impl, segments):
    """1,000,000 random-length checksummed messages: none lost, duplicated, reordered or corrupted."""
    backend = workers.backend_name(impl)
    run_cross_process(backend, backend, 1_000_000, segments, impl)


@pytest.mark.parametrize("producer_backend, consumer_backend", [("cython", "python"), ("python", "cython")])
def test_mixed_backends_between_processes(backends, segments, producer_backend, consumer_backend):
    run_cross_process(producer_backend, consumer_backend, 200_000, segments, backends[0])


def test_producer_killed_mid_stream(impl, segments):
    """Everything published before SIGKILL is readable and intact; nothing half-written shows."""
    backend = workers.backend_name(impl)
    ring = impl.ShmRing.create(capacity_bytes=1 << 14)
    segments.append(ring.name)
    ring.close()
    child = SPAWN.Process(target=workers.produce_until_killed, args=(backend, ring.name, 300))
    child.start()
    try:
        consumer = impl.ShmRing.attach(ring.name, wait_strategy="yield")
        expected = 0
        deadline = time.monotonic() + 60
        while expected < 20_000 and time.monotonic() < deadline:
            message = consumer.get(timeout=0.05)
            if message is not None:
                assert workers.check_message(message, expected) is None
                expected += 1
        assert expected >= 20_000, "the producer did not get going"
        os.kill(child.pid, signal.SIGKILL)  # while it is writing
        join_all([child], 10)
        assert child.exitcode == -signal.SIGKILL
        while True:
            message = consumer.get(timeout=0.2)
            if message is None:
                break
            assert workers.check_message(message, expected) is None
            expected += 1
        assert consumer.get_many() == []
        # The dead producer's role can be taken over, and the stream goes on.
        with pytest.raises(RuntimeError, match=str(child.pid)):
            impl.ShmRing.attach(ring.name, role="producer")
        with impl.ShmRing.attach(ring.name, role="producer", force=True) as producer:
            assert producer.put(workers.make_message(expected, 5))
            assert workers.check_message(consumer.get(timeout=1), expected) is None
        consumer.close()
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)


def test_consumer_death_leaves_a_full_ring_not_a_hang(impl, segments):
    backend = workers.backend_name(impl)
    producer = impl.ShmRing.create(capacity_bytes=1024, wait_strategy="backoff")
    segments.append(producer.name)
    child = SPAWN.Process(target=workers.consume_then_die, args=(backend, producer.name, 10))
    child.start()
    try:
        sent = 0
        deadline = time.monotonic() + 60
        while sent < 10 and time.monotonic() < deadline:
            if producer.put(workers.make_message(sent, 20), timeout=0.05):
                sent += 1
        join_all([child], 60)
        assert child.exitcode == -signal.SIGKILL
        while producer.put(workers.make_message(sent, 20)):
            sent += 1
        started = time.perf_counter()
        assert producer.put(workers.make_message(sent, 20), timeout=0.2) is False
        assert producer.put_many([workers.make_message(sent, 20)]) == 0
        assert 0.2 <= time.perf_counter() - started < 5
        with pytest.raises(RuntimeError, match="force=True"):
            impl.ShmRing.attach(producer.name)
        with impl.ShmRing.attach(producer.name, force=True) as consumer:
            received = consumer.get_many()
        assert len(received) == sent - 10
        for offset, message in enumerate(received):
            assert workers.check_message(message, 10 + offset) is None
    finally:
        producer.close()
        if child.is_alive():
            child.kill()
            child.join(5)


def test_segment_of_dead_creator_can_be_drained_and_unlinked(impl, segments):
    backend = workers.backend_name(impl)
    receiver, sender = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=workers.create_fill_and_die, args=(backend, 500, 60, sender))
    child.start()
    sender.close()
    try:
        assert receiver.poll(60), "the creator never reported"
        status, name = receiver.recv()
        assert status == "ok", (status, name)
        segments.append(name)
        join_all([child], 30)
        assert child.exitcode == -signal.SIGKILL
        assert os.path.exists(segment_path(name))  # nobody unlinked it behind our back
        consumer = impl.ShmRing.attach(name)
        drained = consumer.get_many()
        assert len(drained) == 500
        for seq, message in enumerate(drained):
            assert workers.check_message(message, seq) is None
        consumer.unlink()
        consumer.close()
        assert not os.path.exists(segment_path(name))
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)


ATTACH_AND_EXIT = """
import sys, importlib
module = importlib.import_module(sys.argv[1])
kind, name, close = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
ring = getattr(module, kind).attach(name)
if close:
    ring.close()
"""


@pytest.mark.parametrize("close", [True, False], ids=["closed", "left-open"])
@pytest.mark.parametrize("kind", ["ShmRing", "ShmRecordRing"])
def test_attaching_process_exit_does_not_unlink(impl, segments, close, kind):
    """Before 3.13 the resource tracker would unlink an attached segment at exit, and warn."""
    if kind == "ShmRing":
        ring = impl.ShmRing.create(capacity_bytes=256)
    else:
        ring = impl.ShmRecordRing.create(np.float64, 16)
    segments.append(ring.name)
    try:
        completed = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(ATTACH_AND_EXIT), impl.ShmRing.__module__, kind, ring.name, "1" if close else "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stderr == ""  # no resource_tracker "leaked shared_memory" warning
        time.sleep(0.2)  # a resource tracker would unlink just after the child exits
        assert os.path.exists(segment_path(ring.name))
    finally:
        ring.close()


def test_creating_process_exit_leaves_segment_for_others(impl, segments):
    code = "import sys, importlib; r = importlib.import_module(sys.argv[1]).ShmRing.create(); print(r.name)"
    completed = subprocess.run([sys.executable, "-c", code, impl.ShmRing.__module__], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    name = completed.stdout.strip()
    segments.append(name)
    assert completed.stderr == ""
    time.sleep(0.2)
    assert os.path.exists(segment_path(name))


# ---------------------------------------------------------------------------------------------
# Hostile segments
# ---------------------------------------------------------------------------------------------


def make_valid(impl, segments, **kwargs) -> str:
    ring = impl.ShmRing.create(capacity_bytes=kwargs.pop("capacity_bytes", 256), **kwargs)
    segments.append(ring.name)
    ring.close()
    return ring.name


@pytest.fixture
def raw_segment(segments):
    """Make a segment with arbitrary contents, as another program could."""

    def make(data: bytes) -> str:
        name = f"lowlat_hostile_{os.getpid()}_{len(segments)}"
        fd = os.open(segment_path(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        segments.append(name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return name

    return make


@pytest.mark.parametrize(
    "contents, words",
    [
        (b"\x00" * 4096, "not a lowlat ring"),
        (os.urandom(4096), "not a lowlat ring"),
        (b"LOWLATRG" + b"\x00" * 100, "not a lowlat ring"),  # too small for the header
        (b"", None),  # empty: cannot even be mapped
    ],
)
def test_foreign_segments_refused(impl, raw_segment, contents, words):
    name = raw_segment(contents)
    for kind in (impl.ShmRing, impl.ShmRecordRing):
        with pytest.raises(ValueError, match=words):
            kind.attach(name)


@pytest.mark.parametrize(
    "word, value, words",
    [
        (W_VERSION, 2, "layout version 2"),
        (W_VERSION, 0, "layout version 0"),
        (W_KIND, 2, "holds a ShmRecordRing"),
        (W_KIND, 77, "unknown kind"),
        (W_HEADER_SIZE, 100, "header size"),
        (W_HEADER_SIZE, 1 << 40, "header size"),
        (W_CAPACITY, 1 << 20, "needs"),  # larger than the segment
        (W_CAPACITY, 200, "power of two"),
        (W_CAPACITY, 0, "power of two"),
        (W_CAPACITY, 1 << 63, "power of two"),
        (W_MAX_MESSAGE, 1 << 62, "max_message"),
        (W_PRODUCER_POSITION, 264, "positions out of range"),  # more than capacity in flight
        (W_PRODUCER_POSITION, 12, "positions out of range"),  # misaligned
        (W_CONSUMER_POSITION, 64, "positions out of range"),  # consumer ahead of producer
        (W_PRODUCER_POSITION, (1 << 64) - 8, "positions out of range"),
    ],
)
def test_inconsistent_headers_refused(impl, segments, word, value, words):
    name = make_valid(impl, segments)
    poke(name, word, value)
    for role in ("producer", "consumer"):
        with pytest.raises(ValueError, match=words):
            impl.ShmRing.attach(name, role=role)
    assert peek(name, W_PRODUCER_PID) == 0 and peek(name, W_CONSUMER_PID) == 0


def test_corruption_after_attach_raises_not_crashes(impl, segments):
    name = make_valid(impl, segments)
    producer = impl.ShmRing.attach(name, role="producer")
    consumer = impl.ShmRing.attach(name)
    try:
        assert producer.put(b"abc")
        poke(name, W_PRODUCER_POSITION, 1 << 40)  # far beyond what the ring can hold
        with pytest.raises(ValueError, match="corrupt"):
            consumer.get()
        poke(name, W_PRODUCER_POSITION, 16)
        poke_bytes(name, HEADER, struct.pack("=Q", 1 << 50))  # a wild length
        with pytest.raises(ValueError, match="corrupt"):
            consumer.get()
        with pytest.raises(ValueError, match="corrupt"):
            consumer.get_many()
        poke_bytes(name, HEADER, struct.pack("=Q", 100))  # longer than what was published
        with pytest.raises(ValueError, match="corrupt"):
            consumer.get_into(bytearray(200))
        poke_bytes(name, HEADER, struct.pack("=Q", 3))
        assert consumer.get() == b"abc"  # repaired: it reads again
        poke(name, W_CONSUMER_POSITION, 1 << 30)  # consumer ahead of producer
        for _ in range(40):
            try:
                if not producer.put(b"0123456789"):
                    break
            except ValueError as exc:
                assert "corrupt" in str(exc)
                break
        else:
            pytest.fail("a corrupt consumer position went unnoticed")
    finally:
        producer.close()
        consumer.close()


def test_padding_word_past_published_data_is_refused(impl, segments):
    name = make_valid(impl, segments)
    with impl.ShmRing.attach(name, role="producer") as producer, impl.ShmRing.attach(name) as consumer:
        assert producer.put(b"x")
        poke_bytes(name, HEADER, struct.pack("=Q", (1 << 64) - 1))
        with pytest.raises(ValueError, match="corrupt"):
            consumer.get()


# ---------------------------------------------------------------------------------------------
# ShmRecordRing
# ---------------------------------------------------------------------------------------------

TICK = np.dtype([("seq", "<i8"), ("value", "<f8")])
SMALL = np.dtype([("price", "<f4"), ("size", "<i4"), ("side", "u1"), ("flags", "u1")], align=True)


@pytest.fixture
def record_pair(impl, segments):
    producer = impl.ShmRecordRing.create(TICK, 8)
    segments.append(producer.name)
    consumer = impl.ShmRecordRing.attach(producer.name)
    yield producer, consumer
    producer.close()
    consumer.close()


def ticks(start: int, count: int) -> np.ndarray:
    block = np.zeros(count, dtype=TICK)
    block["seq"] = np.arange(start, start + count)
    block["value"] = block["seq"] * 0.25
    return block


def test_record_ring_basics(impl, record_pair):
    producer, consumer = record_pair
    assert producer.capacity == consumer.capacity == 8
    assert consumer.dtype == TICK and producer.dtype == TICK
    assert len(producer) == len(consumer) == 0
    assert consumer.pop() is None and consumer.pop("empty") == "empty"
    assert len(consumer.read()) == 0 and consumer.read().dtype == TICK
    assert producer.write(ticks(0, 5)) == 5
    assert len(consumer) == 5
    assert producer.write(ticks(5, 5)) == 3  # the leading records that fit
    assert producer.push((99, 1.0)) is False
    np.testing.assert_array_equal(consumer.read(2), ticks(0, 2))
    record = consumer.pop()
    assert isinstance(record, np.void) and record["seq"] == 2 and record["value"] == 0.5
    assert producer.push(ticks(8, 1)[0]) and producer.push((9, 2.25))
    out = np.zeros(4, dtype=TICK)
    assert consumer.read_into(out) == 4
    np.testing.assert_array_equal(out, ticks(3, 4))
    np.testing.assert_array_equal(consumer.read(), ticks(7, 3))
    assert consumer.read_into(out) == 0
    assert len(producer) == 0


def test_record_ring_plain_dtype_and_attach_checks(impl, segments):
    producer = impl.ShmRecordRing.create("<u8", 5)
    segments.append(producer.name)
    assert producer.capacity == 8
    with pytest.raises(TypeError, match="dtype"):
        impl.ShmRecordRing.attach(producer.name, dtype=np.float64)
    with impl.ShmRecordRing.attach(producer.name, dtype="<u8") as consumer:
        assert producer.push(7) and producer.push(np.uint64(8))
        value = consumer.pop()
        assert value == 7 and isinstance(value, np.uint64)
        np.testing.assert_array_equal(consumer.read(), np.array([8], dtype="<u8"))
    producer.close()


def test_record_ring_aligned_struct_round_trips(impl, segments):
    producer = impl.ShmRecordRing.create(SMALL, 64)
    segments.append(producer.name)
    with impl.ShmRecordRing.attach(producer.name) as consumer:
        assert consumer.dtype == SMALL
        block = np.zeros(10, dtype=SMALL)
        block["price"] = np.arange(10) * 1.5
        block["side"] = 1
        assert producer.write(block) == 10
        np.testing.assert_array_equal(consumer.read(), block)
    producer.close()


def test_record_ring_errors(impl, record_pair, segments):
    producer, consumer = record_pair
    with pytest.raises(TypeError, match="dtype"):
        producer.write(np.zeros(3, dtype=np.float64))
    with pytest.raises(TypeError, match="array"):
        producer.write([(1, 2.0)])
    with pytest.raises(ValueError, match="one-dimensional"):
        producer.write(np.zeros((2, 2), dtype=TICK))
    with pytest.raises(ValueError, match="single record"):
        producer.push(ticks(0, 2))
    with pytest.raises(TypeError, match="dtype"):
        consumer.read_into(np.zeros(3, dtype=np.float64))
    with pytest.raises(TypeError, match="out"):
        consumer.read_into(bytearray(32))
    read_only = np.zeros(6, dtype=TICK)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        consumer.read_into(read_only)
    with pytest.raises(ValueError, match="max_records"):
        consumer.read(-1)
    with pytest.raises(TypeError, match="max_records"):
        consumer.read(1.5)
    assert len(consumer.read(1 << 70)) == 0
    with pytest.raises(RuntimeError, match="producer"):
        consumer.write(ticks(0, 1))
    with pytest.raises(RuntimeError, match="consumer"):
        producer.read()
    with pytest.raises(TypeError, match="dtype"):
        impl.ShmRecordRing.create(object, 4)
    with pytest.raises(ValueError, match="capacity"):
        impl.ShmRecordRing.create(TICK, 0)
    with pytest.raises(TypeError, match="capacity"):
        impl.ShmRecordRing.create(TICK, "8")
    with pytest.raises(ValueError, match="holds a ShmRecordRing"):
        impl.ShmRing.attach(producer.name, role="consumer", force=True)
    name = make_valid(impl, segments)
    with pytest.raises(ValueError, match="holds a ShmRing"):
        impl.ShmRecordRing.attach(name)
    # A non-contiguous array of the right dtype is fine (copied first).
    assert producer.write(ticks(0, 6)[::2]) == 3
    np.testing.assert_array_equal(consumer.read(), ticks(0, 6)[::2])
    producer.close()
    with pytest.raises(ValueError, match="closed"):
        producer.write(ticks(0, 1))
    with pytest.raises(ValueError, match="closed"):
        len(producer)


@pytest.mark.parametrize(
    "word, value, words",
    [
        (W_MAX_MESSAGE, 8, "itemsize"),  # the itemsize word disagrees with the dtype
        (W_DESCRIPTOR_LENGTH, 0, "descriptor length"),
        (W_DESCRIPTOR_LENGTH, 1 << 20, "descriptor length"),
        (W_CAPACITY, 1 << 20, "needs"),
        (W_PRODUCER_POSITION, 9, "positions out of range"),
    ],
)
def test_record_ring_hostile_headers(impl, segments, word, value, words):
    ring = impl.ShmRecordRing.create(TICK, 8)
    segments.append(ring.name)
    ring.close()
    poke(ring.name, word, value)
    with pytest.raises(ValueError, match=words):
        impl.ShmRecordRing.attach(ring.name)


@pytest.mark.parametrize("garbage", [b"[('a', '<i8'", b"__import__('os').system('true')", b"'<i9'", b"\xff\xfe"])
def test_record_ring_garbage_descriptor(impl, segments, garbage):
    ring = impl.ShmRecordRing.create(TICK, 8)
    segments.append(ring.name)
    ring.close()
    length = peek(ring.name, W_DESCRIPTOR_LENGTH)
    poke_bytes(ring.name, HEADER, garbage.ljust(length, b" ")[:length])
    with pytest.raises(ValueError, match="descriptor"):
        impl.ShmRecordRing.attach(ring.name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("write"), st.integers(0, 12)),
            st.tuples(st.just("push"), st.none()),
            st.tuples(st.just("pop"), st.none()),
            st.tuples(st.just("read"), st.one_of(st.none(), st.integers(0, 12))),
            st.tuples(st.just("read_into"), st.integers(0, 12)),
        ),
        max_size=50,
    ),
    producer_backend=st.integers(0, 1),
    consumer_backend=st.integers(0, 1),
)
def test_record_ring_hypothesis_against_deque(backends, ops, producer_backend, consumer_backend):
    producer = backends[producer_backend].ShmRecordRing.create(TICK, 8)
    try:
        with backends[consumer_backend].ShmRecordRing.attach(producer.name) as consumer:
            model: deque = deque()
            seq = 0
            for op, argument in ops:
                if op in ("write", "push"):
                    count = 1 if op == "push" else argument
                    fits = min(count, 8 - len(model))
                    if op == "push":
                        assert producer.push(ticks(seq, 1)[0]) == bool(fits)
                    else:
                        assert producer.write(ticks(seq, count)) == fits
                    model.extend(range(seq, seq + fits))
                    seq += fits
                elif op == "pop":
                    record = consumer.pop()
                    assert (None if record is None else int(record["seq"])) == (model.popleft() if model else None)
                elif op == "read":
                    got = consumer.read(argument)
                    take = len(model) if argument is None else min(argument, len(model))
                    assert got["seq"].tolist() == [model.popleft() for _ in range(take)]
                else:
                    out = np.zeros(argument, dtype=TICK)
                    taken = consumer.read_into(out)
                    assert out["seq"][:taken].tolist() == [model.popleft() for _ in range(taken)]
                    assert taken == argument or not model
                assert len(consumer) == len(model)
    finally:
        producer.close()
        producer.unlink()


def test_record_ring_between_processes(impl, segments):
    backend = workers.backend_name(impl)
    ring = impl.ShmRecordRing.create(TICK, 4096)
    segments.append(ring.name)
    ring.close()
    count = 1_000_000
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=workers.records_consume, args=(backend, ring.name, count, 60.0, results)),
        SPAWN.Process(target=workers.records_produce, args=(backend, ring.name, count, 1000, 60.0, results)),
    ]
    for process in processes:
        process.start()
    try:
        outcome = collect(results, 2, 90)
        join_all(processes, 30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    assert outcome == {"producer": ("ok", count), "consumer": ("ok", count)}, outcome


# ---------------------------------------------------------------------------------------------
# The two backends agree
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ShmRing", "ShmRecordRing"])
def test_backends_have_the_same_interface(backends, kind):
    compiled, pure = (getattr(module, kind) for module in backends)
    public = lambda cls: sorted(n for n in dir(cls) if not n.startswith("_") or n in ("__enter__", "__exit__", "__len__"))
    assert public(compiled) == public(pure)
    assert inspect.getdoc(compiled) == inspect.getdoc(pure)
    for name in public(pure):
        ours, theirs = getattr(compiled, name), getattr(pure, name)
        assert inspect.getdoc(ours) == inspect.getdoc(theirs), name
        if callable(theirs) and name not in ("__enter__", "__exit__", "__len__"):
            expected = inspect.signature(theirs)  # classmethods: cls already bound
            got = inspect.signature(ours)
            if "self" in expected.parameters:  # Cython marks self positional-only
                expected = expected.replace(parameters=list(expected.parameters.values())[1:])
                got = got.replace(parameters=list(got.parameters.values())[1:])
            assert list(got.parameters) == list(expected.parameters), name
            for parameter in expected.parameters.values():
                assert got.parameters[parameter.name].kind == parameter.kind, (name, parameter.name)
                assert got.parameters[parameter.name].default == parameter.default, (name, parameter.name)
    assert "ShmRing" in backends[0].__all__ and "ShmRecordRing" in backends[1].__all__


def test_public_names_exported():
    import lowlat

    assert {"ShmRing", "ShmRecordRing"} <= set(lowlat.__all__)
    assert lowlat.ShmRing.__module__ in ("lowlat.shm._c", "lowlat.shm._py")


@pytest.mark.parametrize("kind", ["ShmRing", "ShmRecordRing"])
def test_type_stubs_match(backends, kind):
    """The ``.pyi`` stubs list the same methods and parameters as the implementation."""
    import ast

    import lowlat

    stub_path = os.path.join(os.path.dirname(lowlat.__file__), "shm", "_c.pyi")
    tree = ast.parse(open(stub_path).read())
    stub = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == kind)
    stubbed = {}
    for node in stub.body:
        if isinstance(node, ast.FunctionDef):
            arguments = node.args
            names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs][1:]
            stubbed[node.name] = names
    cls = getattr(backends[1], kind)
    for name, parameters in stubbed.items():
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property) or name in ("__enter__", "__exit__", "__len__"):
            continue
        actual = list(inspect.signature(getattr(cls, name)).parameters)
        if not isinstance(member, classmethod):
            actual = actual[1:]  # self
        assert actual == parameters, name
    public = {n for n in dir(cls) if not n.startswith("_")}
    assert public <= set(stubbed), public - set(stubbed)


def test_forked_child_does_not_give_back_the_parents_role(impl, segments):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    ring = impl.ShmRing.create(capacity_bytes=256)
    segments.append(ring.name)
    try:
        pid = os.fork()
        if pid == 0:  # the child drops its inherited copy the way interpreter exit would
            try:
                ring.close()
                del ring
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        assert peek(ring.name, W_PRODUCER_PID) == os.getpid()
        with pytest.raises(RuntimeError, match=str(os.getpid())):
            impl.ShmRing.attach(ring.name, role="producer")
    finally:
        ring.close()
