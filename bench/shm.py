"""Messages between two processes, side by side: ShmRing and ShmRecordRing against the peers.

One spawned worker process is the consumer (or the echo side of a ping-pong) for every transport,
so all figures come from the same pair of processes in one run:

* throughput, 16-byte and 256-byte messages: ``multiprocessing.Queue`` (the reference row),
  ``multiprocessing.Pipe`` (``send_bytes``), ``faster-fifo`` (when installed; it pickles, as its
  users do) and ``ShmRing`` of both backends (1 MiB ring, "yield" wait strategy), one message per
  call and batched (``put_many``/``get_many``). Time runs from the first put to the consumer's
  report that it has taken the last message; the median of 3 runs (1 run with ``--quick``).
* one-way latency: a ping-pong of round trips, each halved, with both sides busy-waiting on the
  ShmRings (blocking calls for the peers, which have no busy-wait mode), summarised in
  ``lowlat.LatencyHistogram`` when the package has it, else ``numpy.percentile``.
* ``ShmRecordRing`` throughput: 16-byte records written in batches of 1024, read with ``read_into``.
"""

from __future__ import annotations

import gc
import multiprocessing
import statistics
import time
from typing import Any

import numpy as np

from lowlat._backend import BACKENDS

from ._harness import Row

TITLE = "Shared-memory rings between two processes"
SEED = ""
SEED_SAYS = ""

SIZES = (16, 256)
BATCH = 256
RECORD_BATCH = 1024
RECORD_DTYPE = np.dtype([("ts", "<i8"), ("price", "<f4"), ("size", "<i4")])
WAIT = 30.0  # no single wait in the benchmark may take longer (a stuck peer fails loudly)
# Throughput runs wait (when the ring is full or empty) by spinning, then yielding: on a machine
# with as many busy processes as cores, a pure busy-spin keeps the other end off the CPU it needs
# (measured here: 10-100x slower whenever the ring fills). Latency runs busy-spin.
THROUGHPUT_WAIT = "yield"

# Progress steps: per message size, one per throughput transport; then latency, records.
_RINGS = tuple(f"ShmRing {backend}" for backend in reversed(BACKENDS))  # pure first, as the table reads
_THROUGHPUT = ("mp.Queue", "mp.Pipe", "faster-fifo", "faster-fifo many", *(f"{r}{m}" for r in _RINGS for m in ("", " many")))
_LATENCY = ("mp.Queue", "mp.Pipe", "faster-fifo", *_RINGS)
STEPS = 1 + len(SIZES) * len(_THROUGHPUT) + len(_LATENCY) + 2


def _backend(name: str):
    from lowlat._backend import load

    return load("lowlat", name)


def _missing_ring(label: str) -> bool:
    """Return whether ``label`` is a ShmRing row of a backend not built here (a pure install)."""
    if not label.startswith("ShmRing"):
        return False
    try:
        _backend(label.split()[1])
    except ImportError:
        return True
    return False


def _faster_fifo():
    try:
        import faster_fifo
    except ImportError:
        return None
    return faster_fifo


# ---------------------------------------------------------------------------------------------
# The worker process: consumer / echo side of every measurement
# ---------------------------------------------------------------------------------------------


def _serve(control, queue_in, queue_out, pipe, fifo_in, fifo_out) -> None:
    """Run commands from ``control`` until told to stop (runs in the spawned worker)."""
    while True:
        command = control.recv()
        kind = command[0]
        if kind == "stop":
            return
        try:
            if kind == "consume":
                _, transport, batched, count, name = command
                _consume(control, transport, batched, count, name, queue_in, pipe, fifo_in)
            elif kind == "echo":
                _, transport, rounds, name_in, name_out = command
                _echo(control, transport, rounds, name_in, name_out, queue_in, queue_out, pipe, fifo_in, fifo_out)
            elif kind == "records":
                _, backend, name, count = command
                _consume_records(control, backend, name, count)
            else:
                raise ValueError(f"unknown command {kind!r}")
        except BaseException as exc:  # report and keep serving
            control.send(("error", repr(exc)))


def _consume(control, transport, batched, count, name, queue_in, pipe, fifo_in) -> None:
    taken = 0
    if transport.startswith("shm-"):
        ring = _backend(transport[4:]).ShmRing.attach(name, wait_strategy=THROUGHPUT_WAIT)
        get, get_many = ring.get, ring.get_many
        control.send("ready")
        if batched:
            while taken < count:
                taken += len(get_many(4096)) or (get(WAIT) is not None)
        else:
            while taken < count:
                if get() is None and get(WAIT) is None:
                    raise TimeoutError("ShmRing consumer starved")
                taken += 1
        ring.close()
    elif transport == "mp-queue":
        control.send("ready")
        get = queue_in.get
        for _ in range(count):
            get(timeout=WAIT)
        taken = count
    elif transport == "mp-pipe":
        control.send("ready")
        recv = pipe.recv_bytes
        for _ in range(count):
            recv()
        taken = count
    elif transport == "faster-fifo":
        control.send("ready")
        if batched:
            while taken < count:
                taken += len(fifo_in.get_many(timeout=WAIT, max_messages_to_get=4096))
        else:
            get = fifo_in.get
            for _ in range(count):
                get(timeout=WAIT)
            taken = count
    control.send(("done", taken))


def _echo(control, transport, rounds, name_in, name_out, queue_in, queue_out, pipe, fifo_in, fifo_out) -> None:
    if transport.startswith("shm-"):
        module = _backend(transport[4:])
        ring_in = module.ShmRing.attach(name_in, role="consumer")
        ring_out = module.ShmRing.attach(name_out, role="producer")
        get, put = ring_in.get, ring_out.put
        control.send("ready")
        for _ in range(rounds):
            put(get(WAIT))
        ring_in.close()
        ring_out.close()
    elif transport == "mp-queue":
        control.send("ready")
        for _ in range(rounds):
            queue_out.put(queue_in.get(timeout=WAIT))
    elif transport == "mp-pipe":
        control.send("ready")
        for _ in range(rounds):
            pipe.send_bytes(pipe.recv_bytes())
    elif transport == "faster-fifo":
        control.send("ready")
        for _ in range(rounds):
            fifo_out.put(fifo_in.get(timeout=WAIT))
    control.send(("done", rounds))


def _consume_records(control, backend, name, count) -> None:
    ring = _backend(backend).ShmRecordRing.attach(name)
    out = np.empty(RECORD_BATCH, dtype=ring.dtype)
    read_into = ring.read_into
    control.send("ready")
    taken = 0
    deadline = time.monotonic() + WAIT
    while taken < count:
        got = read_into(out)
        if got == 0 and time.monotonic() > deadline:
            raise TimeoutError("ShmRecordRing consumer starved")
        taken += got
    ring.close()
    control.send(("done", taken))


# ---------------------------------------------------------------------------------------------
# The parent: producer / ping side
# ---------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.control, child_control = context.Pipe()
        self.queue_out, self.queue_in = context.Queue(), context.Queue()  # parent -> worker, worker -> parent
        self.pipe, child_pipe = context.Pipe()
        fifo = _faster_fifo()
        self.fifo_out = fifo.Queue(max_size_bytes=1 << 20) if fifo else None
        self.fifo_in = fifo.Queue(max_size_bytes=1 << 20) if fifo else None
        self.process = context.Process(
            target=_serve,
            args=(child_control, self.queue_out, self.queue_in, child_pipe, self.fifo_out, self.fifo_in),
            daemon=True,
        )
        self.process.start()

    def expect(self, what: str):
        if not self.control.poll(WAIT + 30):
            raise TimeoutError(f"benchmark worker did not answer ({what})")
        answer = self.control.recv()
        if isinstance(answer, tuple) and answer[0] == "error":
            raise RuntimeError(f"benchmark worker failed ({what}): {answer[1]}")
        return answer

    def fifos(self) -> tuple[Any, Any]:
        """Return the faster-fifo queues (parent -> worker, worker -> parent)."""
        # The faster-fifo transports are only run when faster_fifo imports, so both queues exist.
        assert self.fifo_out is not None and self.fifo_in is not None
        return self.fifo_out, self.fifo_in

    def close(self) -> None:
        try:
            self.control.send(("stop",))
            self.process.join(10)
        finally:
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)


def _messages(size: int) -> list[bytes]:
    rng = np.random.default_rng(size)
    return [rng.bytes(size) for _ in range(BATCH)]


def _throughput(worker: _Worker, transport: str, batched: bool, size: int, count: int) -> float:
    """Return messages/s from one producer (here) to one consumer (the worker)."""
    messages = _messages(size)
    rounds = max(1, count // BATCH)
    count = rounds * BATCH
    ring = None
    name = None
    if transport.startswith("shm-"):
        ring = _backend(transport[4:]).ShmRing.create(capacity_bytes=1 << 20, wait_strategy=THROUGHPUT_WAIT)
        name = ring.name
    try:
        worker.control.send(("consume", transport, batched, count, name))
        worker.expect("consumer ready")
        started = time.perf_counter_ns()
        if ring is not None:
            if batched:
                put_many = ring.put_many
                for _ in range(rounds):
                    done = put_many(messages)
                    while done < BATCH:
                        if not ring.put(messages[done], WAIT):
                            raise TimeoutError("ShmRing consumer stalled")
                        done += 1 + put_many(messages[done + 1 :])
            else:
                put = ring.put
                for _ in range(rounds):
                    for message in messages:
                        if not put(message):
                            if not put(message, WAIT):
                                raise TimeoutError("ShmRing consumer stalled")
        elif transport == "mp-queue":
            put = worker.queue_out.put
            for _ in range(rounds):
                for message in messages:
                    put(message)
        elif transport == "mp-pipe":
            send = worker.pipe.send_bytes
            for _ in range(rounds):
                for message in messages:
                    send(message)
        elif transport == "faster-fifo":
            if batched:
                put_many = worker.fifos()[0].put_many
                for _ in range(rounds):
                    put_many(messages, timeout=WAIT)
            else:
                put = worker.fifos()[0].put
                for _ in range(rounds):
                    for message in messages:
                        put(message, timeout=WAIT)
        answer = worker.expect("consumer done")
        elapsed = time.perf_counter_ns() - started
    finally:
        if ring is not None:
            ring.close()
            ring.unlink()
    if answer != ("done", count):
        raise RuntimeError(f"consumer reported {answer}, expected {count} messages")
    return count / elapsed * 1e9


def _ping_pong(worker: _Worker, transport: str, rounds: int) -> np.ndarray:
    """Return one-way latencies in ns: round trips timed here, halved."""
    message = bytes(16)
    samples = np.empty(rounds, dtype=np.int64)
    clock = time.perf_counter_ns
    rings = []
    names = (None, None)
    if transport.startswith("shm-"):
        module = _backend(transport[4:])
        rings = [module.ShmRing.create(capacity_bytes=1 << 16), module.ShmRing.create(capacity_bytes=1 << 16, role="consumer")]
        names = (rings[0].name, rings[1].name)
    try:
        worker.control.send(("echo", transport, rounds, *names))
        worker.expect("echo ready")
        if rings:
            put, get = rings[0].put, rings[1].get
            for index in range(rounds):
                started = clock()
                put(message)
                if get(WAIT) is None:
                    raise TimeoutError("ShmRing echo stalled")
                samples[index] = clock() - started
        elif transport == "mp-queue":
            put, get = worker.queue_out.put, worker.queue_in.get
            for index in range(rounds):
                started = clock()
                put(message)
                get(timeout=WAIT)
                samples[index] = clock() - started
        elif transport == "mp-pipe":
            send, recv = worker.pipe.send_bytes, worker.pipe.recv_bytes
            for index in range(rounds):
                started = clock()
                send(message)
                recv()
                samples[index] = clock() - started
        elif transport == "faster-fifo":
            fifo_out, fifo_in = worker.fifos()
            put, get = fifo_out.put, fifo_in.get
            for index in range(rounds):
                started = clock()
                put(message)
                get(timeout=WAIT)
                samples[index] = clock() - started
        worker.expect("echo done")
    finally:
        for ring in rings:
            ring.close()
            ring.unlink()
    return samples // 2


def _percentiles(one_way_ns: np.ndarray) -> dict[float, float]:
    """p50 to p99.99 in ns, from a lowlat.LatencyHistogram of the samples."""
    import lowlat

    histogram = lowlat.LatencyHistogram()
    histogram.record_many(np.maximum(one_way_ns, 1))
    return {p: float(histogram.percentile(p)) for p in (50.0, 90.0, 99.0, 99.9, 99.99)}


def _record_throughput(worker: _Worker, backend: str, count: int) -> float:
    """Return records/s: 16-byte records written in batches of 1024, read with read_into."""
    module = _backend(backend)
    ring = module.ShmRecordRing.create(RECORD_DTYPE, 1 << 16)
    block = np.zeros(RECORD_BATCH, dtype=RECORD_DTYPE)
    block["ts"] = np.arange(RECORD_BATCH)
    rounds = max(1, count // RECORD_BATCH)
    count = rounds * RECORD_BATCH
    try:
        worker.control.send(("records", backend, ring.name, count))
        worker.expect("records ready")
        write = ring.write
        deadline = time.monotonic() + WAIT
        started = time.perf_counter_ns()
        for _ in range(rounds):
            done = write(block)
            while done < RECORD_BATCH:
                done += write(block[done:])
                if time.monotonic() > deadline:
                    raise TimeoutError("ShmRecordRing consumer stalled")
        answer = worker.expect("records done")
        elapsed = time.perf_counter_ns() - started
    finally:
        ring.close()
        ring.unlink()
    if answer != ("done", count):
        raise RuntimeError(f"record consumer reported {answer}, expected {count}")
    return count / elapsed * 1e9


def _plan(quick: bool) -> dict:
    scale = 1 if quick else 8
    return {
        # messages per throughput run, by transport speed class (about 0.1 s each when quick)
        "slow": 12_000 * scale,
        "pure": 50_000 * scale,
        "fast": 250_000 * scale,
        "batched": 500_000 * scale,
        # ping-pong round trips: 100,000 for every transport in a full run, as specified (the
        # peers' round trips cost 30-250 us each: about 35 s of the full run); fewer when quick
        "rounds_ring": 10_000 if quick else 100_000,
        "rounds_peer": 1_000 if quick else 100_000,
        "records": 1_000_000 * scale,
    }


def _without_gc(measure):
    """Return ``measure()`` run with the garbage collector off."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return measure()
    finally:
        if was_enabled:
            gc.enable()


def _median_rate(measure, repeats: int) -> float:
    """Return the median of ``repeats`` runs of ``measure()``, each with the garbage collector off."""
    return statistics.median(_without_gc(measure) for _ in range(repeats))


def _transport_of(label: str, batched: bool, plan: dict) -> tuple[str, int]:
    """Return the worker's transport name and the message count for a throughput row."""
    if label.startswith("mp."):
        return ("mp-queue" if label == "mp.Queue" else "mp-pipe"), plan["slow"]
    if label.startswith("faster-fifo"):
        return "faster-fifo", plan["batched"] // 10 if batched else plan["slow"]
    backend = label.split()[1]
    if batched:
        return f"shm-{backend}", plan["batched"] if backend == "cython" else plan["pure"]
    return f"shm-{backend}", plan["fast"] if backend == "cython" else plan["pure"]


def _throughput_rows(worker, plan, repeats, progress, rows) -> None:
    runs = "1 run" if repeats == 1 else f"median of {repeats} runs"
    have_fifo = _faster_fifo() is not None
    for size in SIZES:
        group = f"shm: {size}-byte messages, two processes (msg/s; MB/s in note)"
        for label in _THROUGHPUT:
            progress.step(f"shm: {size} B, {label}")
            batched = label.endswith("many")
            if (label.startswith("faster-fifo") and not have_fifo) or _missing_ring(label):
                continue
            transport, count = _transport_of(label, batched, plan)
            rate = _median_rate(lambda: _throughput(worker, transport, batched, size, count), repeats)
            shown = label.replace("many", "put_many/get_many") if batched else label
            backend = label.split()[1] if label.startswith("ShmRing") else ""
            rows.append(Row(group, shown, rate, "msg/s", higher_is_better=True, reference=label == "mp.Queue",
                            backend=backend, note=f"{rate * size / 1e6:,.1f} MB/s; {count:,} msgs, {runs}"))


def _latency_rows(worker, plan, progress, rows) -> None:
    have_fifo = _faster_fifo() is not None
    latency_rows: dict[float, list[Row]] = {50.0: [], 99.0: [], 99.9: []}
    for label in _LATENCY:
        progress.step(f"shm: ping-pong, {label}")
        if (label == "faster-fifo" and not have_fifo) or _missing_ring(label):
            continue
        if label.startswith("mp."):
            transport, rounds = ("mp-queue" if label == "mp.Queue" else "mp-pipe"), plan["rounds_peer"]
        elif label == "faster-fifo":
            transport, rounds = "faster-fifo", plan["rounds_peer"]
        else:
            transport, rounds = f"shm-{label.split()[1]}", plan["rounds_ring"]
        figures = _percentiles(_without_gc(lambda: _ping_pong(worker, transport, rounds)))
        mode = "busy-spin" if transport.startswith("shm-") else "blocking"
        in_us = {p: v / 1000.0 for p, v in figures.items()}
        for point, group_rows in latency_rows.items():
            group_rows.append(Row(f"shm: one-way latency p{point:g}, ping-pong halved (us)", label, in_us[point], "us",
                                  reference=label == "mp.Queue", note=f"{rounds:,} round trips, {mode}",
                                  distribution=in_us if point == 50.0 else None,
                                  backend=label.split()[1] if label.startswith("ShmRing") else ""))
    for group_rows in latency_rows.values():
        rows.extend(group_rows)


def _record_rows(worker, plan, repeats, progress, rows) -> None:
    runs = "1 run" if repeats == 1 else f"median of {repeats} runs"
    for backend in reversed(BACKENDS):
        progress.step(f"shm: ShmRecordRing {backend}")
        if _missing_ring(f"ShmRing {backend}"):
            continue
        count = plan["records"] // (4 if backend == "python" else 1)
        rate = _median_rate(lambda: _record_throughput(worker, backend, count), repeats)
        rows.append(Row("shm: ShmRecordRing, 16-byte records in batches of 1024, two processes (records/s)",
                        f"ShmRecordRing {backend} write/read_into", rate, "records/s", higher_is_better=True,
                        backend=backend, note=f"{rate * 16 / 1e6:,.0f} MB/s; {count:,} records, {runs}"))


def run(quick: bool, progress) -> list[Row]:
    """Measure every transport between this process and one spawned worker; return the table rows."""
    plan = _plan(quick)
    repeats = 1 if quick else 3
    rows: list[Row] = []
    progress.step("shm: starting the worker process")
    worker = _Worker()
    try:
        _throughput_rows(worker, plan, repeats, progress, rows)
        _latency_rows(worker, plan, progress, rows)
        _record_rows(worker, plan, repeats, progress, rows)
    finally:
        worker.close()
    return rows
