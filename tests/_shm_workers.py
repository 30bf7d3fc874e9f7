"""Worker functions for the shared-memory ring tests, run in spawned processes.

They live in an importable module (not in the test file) because ``spawn`` children import the
function by name. Each takes the backend by name ("cython" or "python") and imports it itself.
Messages carry a sequence number and a checksum: ``seq (u64) | body | crc32(seq | body) (u32)``.
"""

from __future__ import annotations

import importlib
import os
import random
import signal
import time
import zlib

from lowlat._backend import module_name

POOL = random.Random(1234).randbytes(1 << 16)


def load(backend: str):
    """Import one backend's shared-memory module by name."""
    return importlib.import_module(module_name("lowlat.shm", backend))


def backend_name(module) -> str:
    """Return "cython" or "python" for a backend module."""
    return "cython" if module.ShmRing.__module__.endswith("._c") else "python"


def make_message(seq: int, length: int) -> bytes:
    """Return message ``seq`` with a body of ``length`` bytes and its checksum."""
    start = (seq * 7919) % (len(POOL) - length) if length < len(POOL) else 0
    head = seq.to_bytes(8, "little") + POOL[start : start + length]
    return head + zlib.crc32(head).to_bytes(4, "little")


def check_message(message: bytes, expected_seq: int) -> str | None:
    """Return None if ``message`` is intact and is number ``expected_seq``, else what is wrong."""
    if len(message) < 12:
        return f"message {expected_seq}: too short ({len(message)} bytes)"
    seq = int.from_bytes(message[:8], "little")
    if zlib.crc32(message[:-4]) != int.from_bytes(message[-4:], "little"):
        return f"message {expected_seq}: checksum mismatch (seq field {seq}, {len(message)} bytes)"
    if seq != expected_seq:
        return f"expected message {expected_seq}, got {seq}"
    return None


def message_lengths(seed: int, max_body: int):
    """Yield random body lengths, reproducibly."""
    rng = random.Random(seed)
    while True:
        yield rng.randint(0, max_body)


def produce(backend: str, name: str, count: int, seed: int, max_body: int, budget_s: float, results) -> None:
    """Attach as producer and put ``count`` checksummed messages, alternating put_many and put."""
    module = load(backend)
    deadline = time.monotonic() + budget_s
    ring = module.ShmRing.attach(name, role="producer", wait_strategy="yield")
    try:
        lengths = message_lengths(seed, max_body)
        seq = 0
        batch_number = 0
        while seq < count:
            batch = [make_message(seq + i, next(lengths)) for i in range(min(256, count - seq))]
            if batch_number % 2 == 0:
                done = 0
                while done < len(batch):
                    put = ring.put_many(batch[done:]) if done else ring.put_many(batch)
                    if put == 0:
                        if ring.put(batch[done], timeout=0.05):
                            put = 1
                        elif time.monotonic() > deadline:
                            raise TimeoutError(f"producer stuck at message {seq + done}")
                    done += put
            else:
                for index, message in enumerate(batch):
                    data = message if index % 3 else memoryview(bytearray(message))
                    while not ring.put(data, timeout=0.05):
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"producer stuck at message {seq + index}")
            seq += len(batch)
            batch_number += 1
        results.put(("producer", "ok", seq))
    except BaseException as exc:  # reported to the test, which fails with it
        results.put(("producer", "error", repr(exc)))
    finally:
        ring.close()


def consume(backend: str, name: str, count: int, budget_s: float, results) -> None:
    """Attach as consumer, take ``count`` messages (get_many, get, get_into in turn) and check each."""
    module = load(backend)
    deadline = time.monotonic() + budget_s
    ring = module.ShmRing.attach(name, role="consumer", wait_strategy="yield")
    buffer = bytearray(ring.max_message)
    try:
        expected = 0
        turn = 0
        while expected < count:
            mode = turn % 3
            turn += 1
            if mode == 0:
                messages = ring.get_many(1000)
            elif mode == 1:
                message = ring.get(timeout=0.05)
                messages = [] if message is None else [message]
            else:
                length = ring.get_into(buffer, timeout=0.05)
                messages = [] if length < 0 else [bytes(buffer[:length])]
            if not messages and time.monotonic() > deadline:
                raise TimeoutError(f"consumer stuck at message {expected}")
            for message in messages:
                problem = check_message(message, expected)
                if problem:
                    results.put(("consumer", "error", problem))
                    return
                expected += 1
        leftover = ring.get(timeout=0.2)
        if leftover is not None:
            results.put(("consumer", "error", f"a message beyond the {count} sent: {leftover[:16]!r}"))
            return
        results.put(("consumer", "ok", expected))
    except BaseException as exc:
        results.put(("consumer", "error", repr(exc)))
    finally:
        ring.close()


def produce_until_killed(backend: str, name: str, max_body: int) -> None:
    """Attach as producer and put checksummed messages until killed."""
    module = load(backend)
    ring = module.ShmRing.attach(name, role="producer", wait_strategy="yield")
    lengths = message_lengths(7, max_body)
    seq = 0
    deadline = time.monotonic() + 60  # never outlive a broken test for long
    while time.monotonic() < deadline:
        message = make_message(seq, next(lengths))
        if seq % 2:
            if ring.put(message, timeout=0.01):
                seq += 1
        elif ring.put_many([message]):
            seq += 1


def consume_then_die(backend: str, name: str, count: int) -> None:
    """Attach as consumer, take ``count`` messages, then die by SIGKILL without closing."""
    module = load(backend)
    ring = module.ShmRing.attach(name, role="consumer", wait_strategy="backoff")
    taken = 0
    deadline = time.monotonic() + 30
    while taken < count and time.monotonic() < deadline:
        if ring.get(timeout=0.05) is not None:
            taken += 1
    os.kill(os.getpid(), signal.SIGKILL)


def create_fill_and_die(backend: str, count: int, max_body: int, conn) -> None:
    """Create a ring (as producer), put ``count`` messages, send its name, then die by SIGKILL."""
    module = load(backend)
    ring = module.ShmRing.create(capacity_bytes=1 << 16)
    lengths = message_lengths(3, max_body)
    for seq in range(count):
        if not ring.put(make_message(seq, next(lengths))):
            conn.send(("full", seq))
            break
    conn.send(("ok", ring.name))
    conn.close()
    os.kill(os.getpid(), signal.SIGKILL)


def attach_and_die(backend: str, name: str, role: str) -> None:
    """Attach one end, then die by SIGKILL holding the role."""
    module = load(backend)
    ring = module.ShmRing.attach(name, role=role)  # noqa: F841 (held, never closed)
    os.kill(os.getpid(), signal.SIGKILL)


def records_produce(backend: str, name: str, count: int, batch: int, budget_s: float, results) -> None:
    """Attach a ShmRecordRing as producer and write ``count`` records numbered 0.. in batches."""
    import numpy as np

    module = load(backend)
    deadline = time.monotonic() + budget_s
    ring = module.ShmRecordRing.attach(name, role="producer")
    try:
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            block = np.zeros(n, dtype=ring.dtype)
            block["seq"] = np.arange(sent, sent + n)
            block["value"] = block["seq"] * 0.5
            done = 0
            while done < n:
                written = ring.write(block[done:])
                if written == 0:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"record producer stuck at {sent + done}")
                    time.sleep(0)
                done += written
            sent += n
        results.put(("producer", "ok", sent))
    except BaseException as exc:
        results.put(("producer", "error", repr(exc)))
    finally:
        ring.close()


def records_consume(backend: str, name: str, count: int, budget_s: float, results) -> None:
    """Attach a ShmRecordRing as consumer and check ``count`` records arrive in order, intact."""
    import numpy as np

    module = load(backend)
    deadline = time.monotonic() + budget_s
    ring = module.ShmRecordRing.attach(name, role="consumer")
    out = np.empty(700, dtype=ring.dtype)
    try:
        expected = 0
        turn = 0
        while expected < count:
            turn += 1
            if turn % 2:
                got = ring.read(1000)
            else:
                got = out[: ring.read_into(out)]
            if len(got) == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"record consumer stuck at {expected}")
                time.sleep(0)
                continue
            want = np.arange(expected, expected + len(got))
            if not (np.array_equal(got["seq"], want) and np.array_equal(got["value"], want * 0.5)):
                results.put(("consumer", "error", f"records {expected}..{expected + len(got)} are wrong"))
                return
            expected += len(got)
        results.put(("consumer", "ok", expected))
    except BaseException as exc:
        results.put(("consumer", "error", repr(exc)))
    finally:
        ring.close()


def attach_in_rounds(backend: str, name: str, role: str, rounds: int, barrier) -> None:
    """Attach ``role`` of ``name`` and close it again, ``rounds`` times, in step with a sibling.

    Two spawned children of one parent running this at once used to make the parent's resource
    tracker print ``KeyError`` tracebacks (each attach registered and unregistered the segment).
    """
    module = load(backend)
    for _ in range(rounds):
        barrier.wait(30)
        ring = module.ShmRing.attach(name, role=role)
        barrier.wait(30)
        ring.close()


def tracker_parent(backend: str, rounds: int) -> None:
    """Create a segment, then let two spawned children attach it at once ``rounds`` times; unlink it.

    Run as the main program of its own interpreter, so the resource tracker it starts writes to a
    stderr the test can read.
    """
    import multiprocessing

    module = load(backend)
    context = multiprocessing.get_context("spawn")
    ring = module.ShmRing.create(capacity_bytes=4096)
    name = ring.name
    ring.close()
    try:
        barrier = context.Barrier(2)
        children = [
            context.Process(target=attach_in_rounds, args=(backend, name, role, rounds, barrier))
            for role in ("producer", "consumer")
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
        codes = [child.exitcode for child in children]
        for child in children:
            if child.is_alive():
                child.kill()
        if codes != [0, 0]:
            raise SystemExit(f"children exit codes {codes}")
    finally:
        with module.ShmRing.attach(name, role="producer") as ring:
            ring.unlink()


# Words of the start line shared by the parent and the two racers of race_for_role.
GO, READY = 0, 1


def race_for_role(backend: str, index: int, line, conn) -> None:
    """Attach the role the parent names, at the same instant as a sibling; report, hold, then close.

    For each round the parent sends ``(kind, name, role, round)``; this process marks itself ready
    in ``line[READY + index]``, spins until ``line[GO]`` says the round started (both racers leave
    within a cache-line transfer of each other), attaches, sends ``"won"`` or the error, and holds
    the role until the parent says ``"release"`` (so a loser cannot win by arriving late).
    """
    module = load(backend)
    while True:
        order = conn.recv()
        if order is None:
            return
        kind, name, role, number = order
        line[READY + index] = number
        while line[GO] != number:
            pass
        try:
            ring = getattr(module, kind).attach(name, role=role)
        except Exception as exc:
            ring = None
            conn.send(("lost", f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("won", ""))
        conn.recv()  # "release"
        if ring is not None:
            ring.close()
        conn.send("closed")
