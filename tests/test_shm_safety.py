"""Shared-memory rings against hostile input: segment names, lying arrays, racing attaches.

Every test runs on both backends (or across them) and failed on the code before the fixes of the
memory-safety issue: names that injected commands into the resource tracker, ``.flags``/``.dtype``
properties that steered copies, two winners of one role, ``KeyError`` noise from the tracker.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import _shm_workers as workers

SPAWN = multiprocessing.get_context("spawn")
SHM_DIR = "/dev/shm"
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="needs POSIX shared memory in /dev/shm")


@pytest.fixture
def segments():
    """Names registered here are unlinked after the test, whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            os.unlink(os.path.join(SHM_DIR, name.lstrip("/")))
        except (OSError, ValueError):
            pass


def child_env() -> dict:
    """The environment for a child interpreter that imports lowlat and ``_shm_workers`` as we do."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, *filter(None, [env.get("PYTHONPATH")])])
    return env


# ---------------------------------------------------------------------------------------------
# Segment names (issue items 9 and 13)
# ---------------------------------------------------------------------------------------------

BAD_NAMES = [
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("/..", id="slash-dotdot"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a:b", id="colon"),
    pytest.param("x:shared_memory\nREGISTER:lowlat_victim", id="tracker-injection"),
    pytest.param("a b", id="space"),
    pytest.param("a\0b", id="nul"),
    pytest.param("//a", id="two-slashes"),
    pytest.param("a/b", id="inner-slash"),
    pytest.param("", id="empty"),
    pytest.param("/", id="only-slash"),
    pytest.param("é" * 200, id="long-non-ascii"),
    pytest.param("é", id="non-ascii"),
    pytest.param("a" * 256, id="256-bytes"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_segment_names_are_refused_with_value_error(impl, segments, name):
    segments.append(name)  # unlinked afterwards should a create ever succeed
    before = set(os.listdir(SHM_DIR))
    with pytest.raises(ValueError, match="name"):
        impl.ShmRing.create(name, 1024)
    with pytest.raises(ValueError, match="name"):
        impl.ShmRecordRing.create("i8", 4, name)
    with pytest.raises(ValueError, match="name"):
        impl.ShmRing.attach(name)
    with pytest.raises(ValueError, match="name"):
        impl.ShmRecordRing.attach(name)
    assert set(os.listdir(SHM_DIR)) - before == set()


@pytest.mark.parametrize(
    "name", ["a" * 255, "/Lowlat.test-name_0", "x.y", "..a", "a..", "-", "_"], ids=lambda n: n[:12]
)
def test_good_segment_names_are_accepted(impl, segments, name):
    name = name.replace("a" * 255, f"t{os.getpid()}".ljust(255, "a"))
    segments.append(name)
    with impl.ShmRing.create(name, 1024) as producer:
        assert producer.name == name.lstrip("/")
        with impl.ShmRing.attach(name) as consumer:
            assert producer.put(b"hello")
            assert consumer.get() == b"hello"
        producer.unlink()


INJECT = """
import sys, importlib
module = importlib.import_module(sys.argv[1])
try:
    ring = module.ShmRing.create("x:shared_memory\\nREGISTER:" + sys.argv[2], 1024)
except ValueError as exc:
    print("refused", exc)
else:
    ring.close()
    ring.unlink()
    print("created")
"""


def test_resource_tracker_injection_is_refused(impl, segments):
    """A name carrying a tracker command must not let another process's exit delete our segment."""
    victim = impl.ShmRing.create(capacity_bytes=1024)
    segments.append(victim.name)
    try:
        completed = subprocess.run(
            [sys.executable, "-c", INJECT, impl.ShmRing.__module__, victim.name],
            capture_output=True, text=True, timeout=60, env=child_env(),
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.startswith("refused"), completed.stdout
        assert "name" in completed.stdout
        time.sleep(0.2)  # a resource tracker acts just after its process exits
        assert os.path.exists(os.path.join(SHM_DIR, victim.name))
        with impl.ShmRing.attach(victim.name) as consumer:
            assert victim.put(b"still here")
            assert consumer.get() == b"still here"
    finally:
        victim.close()


# ---------------------------------------------------------------------------------------------
# Timeouts (item 13)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", ["1", b"1", "0", True, [1]], ids=repr)
def test_timeout_must_be_a_number(impl, segments, timeout):
    producer = impl.ShmRing.create(capacity_bytes=1024)
    segments.append(producer.name)
    with producer, impl.ShmRing.attach(producer.name) as consumer:
        with pytest.raises(TypeError, match="timeout"):
            producer.put(b"x", timeout=timeout)
        with pytest.raises(TypeError, match="timeout"):
            consumer.get(timeout=timeout)
        with pytest.raises(TypeError, match="timeout"):
            consumer.get_into(bytearray(8), timeout=timeout)
        assert len(consumer.get_many()) == 0  # nothing was put by the refused calls


def test_timeout_accepts_real_numbers(impl, segments):
    import fractions

    producer = impl.ShmRing.create(capacity_bytes=1024)
    segments.append(producer.name)
    with producer, impl.ShmRing.attach(producer.name) as consumer:
        for timeout in (0, 0.0, np.float64(0.001), fractions.Fraction(1, 1000), np.int64(0)):
            assert consumer.get(timeout=timeout) is None
            assert producer.put(b"x", timeout=timeout)
            assert consumer.get(timeout=timeout) == b"x"


# ---------------------------------------------------------------------------------------------
# Lying arrays (item 1): sizes, dtype, contiguity and writability come from the buffer itself
# ---------------------------------------------------------------------------------------------


def liar(array: np.ndarray, dtype=None, writeable=None, c_contiguous=None) -> np.ndarray:
    """Return ``array`` as an ndarray subclass whose ``dtype``/``flags`` properties say what we like."""
    real_flags = array.flags

    class Flags:
        def __getattr__(self, attribute):
            if attribute == "writeable" and writeable is not None:
                return writeable
            if attribute == "c_contiguous" and c_contiguous is not None:
                return c_contiguous
            return getattr(real_flags, attribute)

    namespace = {"flags": property(lambda self: Flags())}
    if dtype is not None:
        namespace["dtype"] = property(lambda self: np.dtype(dtype))
    return array.view(type("Liar", (np.ndarray,), namespace))


@pytest.fixture
def records(impl, segments):
    producer = impl.ShmRecordRing.create("i8", 16)
    segments.append(producer.name)
    consumer = impl.ShmRecordRing.attach(producer.name)
    yield producer, consumer
    producer.close()
    consumer.close()


def test_read_into_a_smaller_dtype_that_claims_the_ring_dtype(records):
    producer, consumer = records
    assert producer.write(np.arange(8, dtype="i8")) == 8
    guard = np.zeros(64, "i1")
    small = liar(guard[:16], dtype="i8")  # 16 bytes that claim to be 16 records of 8 bytes
    with pytest.raises(TypeError, match="dtype"):
        consumer.read_into(small)
    assert not guard.any()  # nothing written past (or into) the 16 bytes
    assert list(consumer.read()) == list(range(8))  # and nothing consumed


def test_read_into_same_size_other_dtype_that_claims_the_ring_dtype(records):
    producer, consumer = records
    producer.write(np.arange(4, dtype="i8"))
    out = np.zeros(4, "f8")
    with pytest.raises(TypeError, match="dtype"):
        consumer.read_into(liar(out, dtype="i8"))
    assert not out.any()
    assert len(consumer) == 4


def test_read_into_read_only_memory_that_claims_to_be_writable(records):
    producer, consumer = records
    producer.write(np.arange(4, dtype="i8"))
    frozen = bytes(32)
    out = liar(np.frombuffer(frozen, dtype="i8"), writeable=True)
    with pytest.raises(ValueError, match="writable"):
        consumer.read_into(out)
    assert frozen == bytes(32)
    assert len(consumer) == 4


def test_read_into_strided_memory_that_claims_to_be_contiguous(records):
    producer, consumer = records
    producer.write(np.arange(4, dtype="i8"))
    backing = np.zeros(8, "i8")
    # Strided memory is taken (as RecordRing takes it), by its real strides, whatever .flags says.
    assert consumer.read_into(liar(backing[::2], c_contiguous=True)) == 4
    assert backing.tolist() == [0, 0, 1, 0, 2, 0, 3, 0]
    assert len(consumer) == 0


def test_write_from_a_smaller_dtype_that_claims_the_ring_dtype(records):
    producer, consumer = records
    source = liar(np.arange(16, dtype="i1"), dtype="i8")  # 16 bytes claiming 128
    with pytest.raises(TypeError, match="dtype"):
        producer.write(source)
    assert len(consumer) == 0
    same_size = liar(np.arange(4, dtype="f8"), dtype="i8")
    with pytest.raises(TypeError, match="dtype"):
        producer.write(same_size)
    assert len(consumer) == 0


def test_write_from_strided_memory_that_claims_to_be_contiguous(records):
    producer, consumer = records
    backing = np.arange(8, dtype="i8")
    assert producer.write(liar(backing[::2], c_contiguous=True)) == 4
    assert list(consumer.read()) == [0, 2, 4, 6]


def test_a_class_attribute_claiming_ndarray_is_not_an_array(records):
    producer, consumer = records
    producer.write(np.arange(2, dtype="i8"))

    class Impostor:
        __class__ = np.ndarray  # isinstance() believes this; type() does not
        dtype = np.dtype("i8")
        ndim = 1

        def __len__(self):
            return 2

    with pytest.raises(TypeError, match="numpy.ndarray"):
        consumer.read_into(Impostor())
    with pytest.raises(TypeError, match="numpy.ndarray"):
        producer.write(Impostor())
    assert len(consumer) == 2


def test_byte_ring_takes_sizes_from_the_buffer(impl, segments):
    producer = impl.ShmRing.create(capacity_bytes=1024)
    segments.append(producer.name)
    with producer, impl.ShmRing.attach(producer.name) as consumer:
        assert producer.put(liar(np.arange(4, dtype="i1"), dtype="i8"))  # 4 bytes, whatever it says
        assert producer.put_many([liar(np.arange(3, dtype="i1"), dtype="i8")]) == 1
        frozen = bytes(16)
        with pytest.raises(TypeError, match="writable"):
            consumer.get_into(liar(np.frombuffer(frozen, "u1"), writeable=True))
        assert frozen == bytes(16)
        guard = np.zeros(16, "u1")
        assert consumer.get_into(liar(guard[:8], dtype="i8")) == 4
        assert list(guard) == [0, 1, 2, 3] + [0] * 12
        with pytest.raises(ValueError, match="buffer has 2 bytes"):
            consumer.get_into(liar(guard[:2], dtype="i8"))
        assert consumer.get() == bytes([0, 1, 2])


# ---------------------------------------------------------------------------------------------
# The resource tracker stays quiet (item 10)
# ---------------------------------------------------------------------------------------------


def test_spawned_children_attaching_at_once_keep_the_tracker_quiet(backend_name):
    """Two spawned children of one parent attach one segment 50 times at once: no tracker output."""
    code = f"import _shm_workers as w; w.tracker_parent({backend_name!r}, 50)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=child_env()
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""


# ---------------------------------------------------------------------------------------------
# Racing attaches give exactly one winner, across backends (item 11)
# ---------------------------------------------------------------------------------------------

RACERS = [("python", "python"), ("python", "cython"), ("cython", "cython")]


@pytest.mark.parametrize("racers", RACERS, ids=lambda pair: "-".join(pair))
def test_racing_attaches_have_exactly_one_winner(backends, segments, racers):
    if "cython" in racers and len(backends) < 2:
        pytest.skip("needs the compiled backend")
    rounds = 100
    module = backends[0]
    line = SPAWN.RawArray("q", 3)
    pipes = [SPAWN.Pipe() for _ in racers]
    children = [
        SPAWN.Process(target=workers.race_for_role, args=(backend, index, line, pipes[index][1]))
        for index, backend in enumerate(racers)
    ]
    for child in children:
        child.start()
    try:
        for number in range(1, rounds + 1):
            kind = ("ShmRing", "ShmRecordRing")[number % 2]
            role = ("producer", "consumer")[(number // 2) % 2]
            other = "consumer" if role == "producer" else "producer"
            if kind == "ShmRing":
                ring = module.ShmRing.create(capacity_bytes=1024, role=other)
            else:
                ring = module.ShmRecordRing.create("i8", 4, role=other)
            segments.append(ring.name)
            with ring:
                for parent_end, _ in pipes:
                    parent_end.send((kind, ring.name, role, number))
                deadline = time.monotonic() + 30
                while not (line[workers.READY] == number and line[workers.READY + 1] == number):
                    assert time.monotonic() < deadline, "racers did not get ready"
                line[workers.GO] = number
                outcomes = []
                for parent_end, _ in pipes:
                    assert parent_end.poll(30), "a racer did not report"
                    outcomes.append(parent_end.recv())
                winners = [result for result, _ in outcomes if result == "won"]
                assert len(winners) == 1, f"round {number} ({kind} {role}): {outcomes}"
                for result, detail in outcomes:
                    assert result == "won" or ("RuntimeError" in detail and role in detail), detail
                for parent_end, _ in pipes:
                    parent_end.send("release")
                for parent_end, _ in pipes:
                    assert parent_end.poll(30) and parent_end.recv() == "closed"
                ring.unlink()
    finally:
        for parent_end, _ in pipes:
            try:
                parent_end.send(None)
            except OSError:
                pass
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
                child.join(5)
    assert [child.exitcode for child in children] == [0, 0]


@pytest.mark.parametrize("kind", ["ShmRing", "ShmRecordRing"])
def test_attach_claims_its_role_under_the_segment_lock(impl, segments, kind):
    """The claim protocol both backends follow: flock the segment, read the slot, write it, unlock.

    This test plays a second attach that holds the lock between its read and its write: an attach
    started meanwhile must wait, then see the slot taken (before the fix it claimed the role too).
    """
    import fcntl
    import struct
    import threading

    cls = getattr(impl, kind)
    ring = cls.create(capacity_bytes=1024, role="consumer") if kind == "ShmRing" else cls.create("i8", 4, role="consumer")
    segments.append(ring.name)
    outcome: dict = {}

    def attach() -> None:
        try:
            outcome["ring"] = cls.attach(ring.name, role="producer")
        except Exception as exc:
            outcome["error"] = exc

    slot = 16 * 8  # the producer's pid word
    with ring, open(os.path.join(SHM_DIR, ring.name), "r+b", buffering=0) as segment:
        fcntl.flock(segment, fcntl.LOCK_EX)
        try:
            racer = threading.Thread(target=attach)
            racer.start()
            racer.join(0.3)
            assert racer.is_alive(), f"attach did not wait for the role lock: {outcome}"
            segment.seek(slot)
            assert struct.unpack("=Q", segment.read(8))[0] == 0
            segment.seek(slot)
            segment.write(struct.pack("=Q", os.getpid()))
        finally:
            fcntl.flock(segment, fcntl.LOCK_UN)
            racer.join(30)
        assert not racer.is_alive()
        if "ring" in outcome:
            outcome["ring"].close()
        assert isinstance(outcome.get("error"), RuntimeError), outcome
        assert str(os.getpid()) in str(outcome["error"])
        segment.seek(slot)
        segment.write(struct.pack("=Q", 0))


def test_shm_ring_len_counts_bytes_waiting(impl):
    """``len(ShmRing)`` is the bytes in flight, length words and padding included; both ends see it."""
    ring = impl.ShmRing.create(capacity_bytes=1024)
    reader = impl.ShmRing.attach(ring.name)
    try:
        assert len(ring) == len(reader) == 0
        assert ring.put(b"abc")
        assert len(ring) == len(reader) == 16  # 8-byte length word + 3 bytes padded to 8
        assert ring.put(b"12345678")
        assert len(reader) == 32
        assert reader.get() == b"abc" and len(ring) == 16
        assert reader.get() == b"12345678" and len(reader) == 0
    finally:
        reader.close()
        ring.close()
        ring.unlink()


def test_record_rings_share_one_rule_and_one_wording(impl):
    """ShmRecordRing and RecordRing refuse the same arrays in the same words, and both take strided ones."""
    local = impl.RecordRing("i8", 8)
    writer = impl.ShmRecordRing.create("i8", 8)
    reader = impl.ShmRecordRing.attach(writer.name)
    try:
        for method_a, method_b, name in ((local.write, writer.write, "array"), (local.read_into, reader.read_into, "out")):
            messages = []
            for method in (method_a, method_b):
                with pytest.raises(TypeError) as info:
                    method(np.zeros(3, "i4"))
                messages.append(str(info.value))
            assert messages[0] == messages[1] == f"{name} must have dtype int64, got int32"
        assert writer.write(np.arange(12, dtype="i8")[::2]) == 6
        out = np.full(8, -1, dtype="i8")
        assert reader.read_into(out[::2]) == 4
        assert out.tolist() == [0, -1, 2, -1, 4, -1, 6, -1]
        with pytest.raises(ValueError, match="writable"):
            frozen = np.zeros(4, "i8")
            frozen.flags.writeable = False
            reader.read_into(frozen)
    finally:
        reader.close()
        writer.close()
        writer.unlink()
