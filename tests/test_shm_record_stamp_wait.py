"""ShmRecordRing's hop primitives: ``push(record, stamp=)`` and ``read_into(out, timeout=)``.

``stamp`` has the ring write a clock reading into a record's int64 field as the last write before
the record is published; ``timeout`` has ``read_into`` spin inside the call for the first record.
Both backends, in one process, across threads and across a real process; every wait is bounded.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

import _shm_workers as workers

SPAWN = multiprocessing.get_context("spawn")
UPDATE = np.dtype([("arrival", "i8"), ("published", "i8"), ("sequence", "i8"), ("price", "f8"), ("flag", "u1")])

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")


@pytest.fixture
def pair(impl):
    producer = impl.ShmRecordRing.create(UPDATE, 8)
    consumer = impl.ShmRecordRing.attach(producer.name)
    yield producer, consumer
    consumer.close()
    producer.close()
    producer.unlink()


def stamped_push_in(backend: str, name: str, delay: float, count: int) -> None:
    """Worker: after ``delay`` s, push ``count`` records stamping "published"; then close."""
    ring = workers.load(backend).ShmRecordRing.attach(name, "producer")
    time.sleep(delay)
    for sequence in range(count):  # perf_counter_ns: the clock of both backends' now_ns and stamps
        while not ring.push((time.perf_counter_ns(), 0, sequence, 0.5, 1), "published"):
            pass
    ring.close()


# ---------------------------------------------------------------------------------------------
# push(record, stamp=)
# ---------------------------------------------------------------------------------------------


def test_stamp_is_the_clock_at_publication_and_only_in_the_ring(impl, pair):
    producer, consumer = pair
    record = np.zeros((), dtype=UPDATE)
    record["arrival"], record["published"], record["sequence"] = 11, 22, 33
    before = impl.now_ns()
    assert producer.push(record, "published")
    assert producer.push((1, 5, 2, 0.25, 1))  # no stamp: the field is copied as given
    after = impl.now_ns()
    assert int(record["published"]) == 22  # the caller's record is untouched
    out = np.zeros(4, dtype=UPDATE)
    assert consumer.read_into(out) == 2
    assert before <= out[0]["published"] <= after
    assert (out[0]["arrival"], out[0]["sequence"]) == (11, 33)
    assert tuple(out[1].tolist()) == (1, 5, 2, 0.25, 1)


def test_stamp_on_a_plain_int64_ring_and_at_an_unaligned_offset(impl):
    packed = np.dtype([("flag", "u1"), ("when", "<i8")])  # 9-byte records: "when" at offset 1
    producer = impl.ShmRecordRing.create(packed, 4)
    try:
        with impl.ShmRecordRing.attach(producer.name) as consumer:
            before = impl.now_ns()
            for flag in range(4):
                assert producer.push((flag, -1), "when")
            assert producer.push((9, -1), "when") is False  # full: nothing written, no error
            after = impl.now_ns()
            out = consumer.read()
            assert out["flag"].tolist() == [0, 1, 2, 3]
            assert all(before <= when <= after for when in out["when"].tolist())
            assert out["when"].tolist() == sorted(out["when"].tolist())
    finally:
        producer.close()
        producer.unlink()


@pytest.mark.parametrize("stamp, error, words", [
    (1, TypeError, "stamp must be None or a field name"),
    (b"published", TypeError, "stamp must be None or a field name"),
    ("missing", ValueError, "no field 'missing'"),
    ("price", TypeError, "field 'price' must be a native int64"),
    ("flag", TypeError, "field 'flag' must be a native int64"),
])
def test_a_bad_stamp_is_refused_in_the_same_words_even_when_full(backends, stamp, error, words):
    for module in backends:
        producer = module.ShmRecordRing.create(UPDATE, 1)
        try:
            with pytest.raises(error, match=words):
                producer.push((0, 0, 0, 0.0, 0), stamp)
            assert producer.push((0, 0, 0, 0.0, 0), "published")
            with pytest.raises(error, match=words):  # checked before the ring's fullness
                producer.push((0, 0, 0, 0.0, 0), stamp)
            assert len(producer) == 1
        finally:
            producer.close()
            producer.unlink()


def test_stamp_needs_a_native_int64(impl):
    swapped = np.dtype([("when", ">i8" if np.little_endian else "<i8")])
    producer = impl.ShmRecordRing.create(swapped, 2)
    try:
        with pytest.raises(TypeError, match="native int64"):
            producer.push((0,), "when")
    finally:
        producer.close()
        producer.unlink()


@pytest.mark.parametrize("direction", ["cython->python", "python->cython"])
def test_a_stamp_written_by_one_backend_is_read_by_the_other(backends, direction):
    compiled, pure = backends
    producer_module, consumer_module = (compiled, pure) if direction == "cython->python" else (pure, compiled)
    producer = producer_module.ShmRecordRing.create(UPDATE, 8)
    try:
        with consumer_module.ShmRecordRing.attach(producer.name) as consumer:
            before = consumer_module.now_ns()  # the two backends read the same clock
            assert producer.push((1, 0, 1, 1.0, 1), "published")
            after = consumer_module.now_ns()
            assert before <= consumer.pop()["published"] <= after
    finally:
        producer.close()
        producer.unlink()


# ---------------------------------------------------------------------------------------------
# read_into(out, timeout=)
# ---------------------------------------------------------------------------------------------


def test_read_into_without_a_timeout_never_waits_and_with_one_waits_that_long(pair):
    producer, consumer = pair
    out = np.zeros(4, dtype=UPDATE)
    started = time.perf_counter()
    assert consumer.read_into(out) == 0
    assert consumer.read_into(out, None) == 0
    assert consumer.read_into(out, 0) == 0
    assert consumer.read_into(out[:0], 5.0) == 0  # nothing fits: nothing to wait for
    assert time.perf_counter() - started < 1
    started = time.perf_counter()
    assert consumer.read_into(out, 0.05) == 0
    assert 0.05 <= time.perf_counter() - started < 5
    for sequence in range(6):
        assert producer.push((0, 0, sequence, 0.0, 0))
    assert consumer.read_into(out, 10.0) == 4  # records there: no wait, at most len(out)
    assert out["sequence"].tolist() == [0, 1, 2, 3]
    assert consumer.read_into(out, float("inf")) == 2
    assert out["sequence"].tolist()[:2] == [4, 5]


def test_read_into_wakes_when_a_record_is_published(pair):
    producer, consumer = pair
    out = np.zeros(8, dtype=UPDATE)
    timer = threading.Timer(0.05, lambda: producer.push((7, 0, 3, 0.0, 0), "published"))
    timer.start()
    try:
        started = time.perf_counter()
        assert consumer.read_into(out, 10.0) == 1
        assert time.perf_counter() - started < 5
        assert out[0]["sequence"] == 3 and out[0]["published"] > 0
    finally:
        timer.cancel()


def test_read_into_waits_into_a_strided_out(pair):
    producer, consumer = pair
    out = np.zeros(8, dtype=UPDATE)
    timer = threading.Timer(0.05, lambda: producer.write(np.array([(1, 1, 1, 1.0, 1), (2, 2, 2, 2.0, 2)], UPDATE)))
    timer.start()
    try:
        assert consumer.read_into(out[::2], 10.0) == 2
        assert out["sequence"].tolist() == [1, 0, 2, 0, 0, 0, 0, 0]
    finally:
        timer.cancel()


@pytest.mark.parametrize("timeout, error", [("1", TypeError), (True, TypeError), (-1.0, ValueError),
                                            (float("nan"), ValueError)], ids=repr)
def test_read_into_refuses_a_bad_timeout_before_reading(backends, timeout, error):
    for module in backends:
        producer = module.ShmRecordRing.create(UPDATE, 4)
        try:
            with module.ShmRecordRing.attach(producer.name) as consumer:
                producer.push((0, 0, 1, 0.0, 0))
                with pytest.raises(error, match="timeout"):
                    consumer.read_into(np.zeros(2, UPDATE), timeout)
                assert len(consumer) == 1  # nothing was taken by the refused call
                with pytest.raises(TypeError, match="dtype"):  # out is checked whatever the timeout
                    consumer.read_into(np.zeros(2, np.int64), 0.01)
        finally:
            producer.close()
            producer.unlink()


def test_close_from_another_thread_ends_a_read_into_wait(impl):
    producer = impl.ShmRecordRing.create(UPDATE, 4)
    consumer = impl.ShmRecordRing.attach(producer.name)
    outcome = []

    def wait() -> None:
        try:
            outcome.append(consumer.read_into(np.zeros(2, UPDATE), 10.0))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    try:
        time.sleep(0.1)
        started = time.perf_counter()
        consumer.close()
        thread.join(5)
        assert not thread.is_alive()
        assert time.perf_counter() - started < 5
        assert len(outcome) == 1 and isinstance(outcome[0], ValueError), outcome
    finally:
        producer.close()
        producer.unlink()


def test_a_signal_interrupts_a_long_read_into_wait(impl, pair):
    producer, consumer = pair

    def interrupt(signum, frame):
        raise KeyboardInterrupt("timer")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            consumer.read_into(np.zeros(2, UPDATE), 10.0)
        assert time.perf_counter() - started < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert producer.push((0, 0, 5, 0.0, 0))
    assert consumer.pop()["sequence"] == 5


def test_read_into_waits_for_records_stamped_in_another_process(impl):
    backend = workers.backend_name(impl)
    consumer = impl.ShmRecordRing.create(UPDATE, 64, role="consumer")
    process = SPAWN.Process(target=stamped_push_in, args=(backend, consumer.name, 0.2, 200))
    process.start()
    try:
        out = np.zeros(32, dtype=UPDATE)
        received = []
        deadline = time.monotonic() + 60
        while len(received) < 200 and time.monotonic() < deadline:
            count = consumer.read_into(out, 1.0)
            taken = impl.now_ns()
            for arrival, published, sequence, _, _ in out[:count].tolist():
                assert arrival <= published <= taken  # stamped after the record was built, before it was read
                received.append(sequence)
        assert received == list(range(200))
        process.join(30)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)
        consumer.close()
        consumer.unlink()
