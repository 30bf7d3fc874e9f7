"""Experiment 7, async vs sync (seed section 5), measured so that it also runs inside a running loop.

It reproduces the seed's cells "5. Async vs Sync Processing Comparison": In [9]
(``benchmark_async_vs_sync``: 100 simulated I/O waits of 0.5 ms, one after another with
``time.sleep`` against all at once with ``asyncio.gather``) and In [10]
(``benchmark_async_overhead``: the same CPU-bound function called directly and awaited), which in
the seed raised ``RuntimeError: This event loop is already running`` because it called
``run_until_complete`` from a notebook whose loop was running. Here every coroutine runs through
:func:`run_coroutine`, which notices a running loop in the calling thread and then runs the
measurement on a worker thread with an event loop of its own. ``uvloop`` is a contender when it
is installed (its rows are skipped otherwise), and a sweep over the number of concurrent waits
answers the seed's question: when does async pay off.

The seed's waits are timers; the sweep is repeated with real waits: datagrams over loopback UDP
answered by another process, at once and 200 us late. Figures are
medians of repeats timed as whole loops; the per-operation overheads subtract an empty loop.
"""

from __future__ import annotations

import asyncio
import heapq
import select
import socket
import statistics
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Optional

from ._harness import Progress, Row

TITLE = "Async vs sync: overlapping waits, real I/O over loopback UDP, and what async itself costs"
SEED = "section 5, In [9] benchmark_async_vs_sync and In [10] benchmark_async_overhead"
SEED_SAYS = ("The seed measured 100 waits of 0.5 ms at 63.7 ms one after another against 1.20 ms with asyncio.gather "
             "(53x) and said async suits I/O but adds ~1-5 us; its CPU-bound cell raised RuntimeError (This event "
             "loop is already running).")
STEPS = 4

SEED_CELL_IO = "seed section 5, In [9] (benchmark_async_vs_sync)"
SEED_CELL_CPU = "seed section 5, In [10] (benchmark_async_overhead: RuntimeError in the seed)"
FANOUT = f"async vs sync: the seed's I/O fan-out, 100 waits of 0.5 ms, total ms ({SEED_CELL_IO})"
WORK = f"async vs sync: the seed's CPU-bound work (1,000 squares), us per call ({SEED_CELL_CPU})"
COST = "async vs sync: what async itself costs, ns per operation (empty loop subtracted)"

_now = time.perf_counter_ns

_UVLOOP_NOTE = "did not wait: libuv keeps timers in whole ms and rounds 0.5 ms down to 0 -- not a speedup"


def running_loop() -> Optional[asyncio.AbstractEventLoop]:
    """Return the event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _run_here(factory: Callable[[], Awaitable[Any]], loop_factory: Optional[Callable[[], Any]]) -> Any:
    loop = (loop_factory or asyncio.new_event_loop)()
    try:
        return loop.run_until_complete(factory())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run_coroutine(factory: Callable[[], Awaitable[Any]], loop_factory: Optional[Callable[[], Any]] = None) -> Any:
    """Run ``factory()`` to completion on a fresh event loop and return its result.

    From a script this runs in the calling thread. When an event loop is already running in the
    calling thread (a notebook, an application), ``run_until_complete`` would raise, so the
    coroutine runs on a worker thread with a loop of its own, and this call waits for it (the
    caller's loop is blocked meanwhile: a benchmark must not share its thread anyway).
    ``loop_factory`` makes the loop (``uvloop.new_event_loop``...); the default is asyncio's.
    """
    if running_loop() is None:
        return _run_here(factory, loop_factory)
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["value"] = _run_here(factory, loop_factory)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=worker, name="lowlat-bench-async")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _loops() -> list[tuple[str, Optional[Callable[[], Any]]]]:
    found: list[tuple[str, Optional[Callable[[], Any]]]] = [("asyncio", None)]
    try:
        import uvloop
    except ImportError:
        return found
    found.append((f"uvloop {getattr(uvloop, '__version__', '')}".strip(), uvloop.new_event_loop))
    return found


# ----------------------------------------------------------------------------- the I/O fan-out


def _sync_waits_ns(k: int, wait_s: float, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = _now()
        for _ in range(k):
            time.sleep(wait_s)
        samples.append(_now() - t0)
    return statistics.median(samples)


def _threaded_waits_ns(k: int, wait_s: float, repeats: int, pool: ThreadPoolExecutor) -> float:
    samples = []
    for _ in range(repeats):
        t0 = _now()
        list(pool.map(time.sleep, [wait_s] * k))
        samples.append(_now() - t0)
    return statistics.median(samples)


async def _async_waits_ns(k: int, wait_s: float, repeats: int) -> float:
    sleep, gather = asyncio.sleep, asyncio.gather
    await gather(*[sleep(wait_s) for _ in range(k)])  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = _now()
        await gather(*[sleep(wait_s) for _ in range(k)])
        samples.append(_now() - t0)
    return statistics.median(samples)


def _fanout_rows(quick: bool, loops, in_loop: bool) -> list[Row]:
    repeats = 3 if quick else 7
    k, wait_s = 100, 0.0005
    rows = [Row(FANOUT, "sync: time.sleep one after another (the seed's sync side)",
                _sync_waits_ns(k, wait_s, repeats) / 1e6, "ms", reference=True,
                extra={"seed": SEED_CELL_IO, "ran_inside_a_running_loop": in_loop})]
    with ThreadPoolExecutor(max_workers=k) as pool:
        _threaded_waits_ns(k, wait_s, 1, pool)  # start the workers before timing
        rows.append(Row(FANOUT, f"sync in {k} threads: ThreadPoolExecutor.map(time.sleep)",
                        _threaded_waits_ns(k, wait_s, repeats, pool) / 1e6, "ms"))
    for label, factory in loops:
        total = run_coroutine(lambda: _async_waits_ns(k, wait_s, repeats), factory)
        rows.append(Row(FANOUT, f"{label}: asyncio.gather of asyncio.sleep (the seed's async side)", total / 1e6,
                        "ms", note="a 0.5 ms timer fires after >= 1 ms: epoll's timeout is in whole ms"))
    for row in rows[3:]:
        row.note = _UVLOOP_NOTE
    return rows


def _fanout_finding(rows: list[Row]) -> str:
    fanout = [r for r in rows if r.group == FANOUT]
    sync_ms, threads_ms, async_ms = (r.value for r in fanout[:3])
    one = next(r for r in rows if r.extra.get("wait_ns") == 500_000 and r.extra.get("k") == 1)
    return (f"100 waits of 0.5 ms took {sync_ms:,.1f} ms one after another against {async_ms:,.2f} ms with "
            f"asyncio.gather ({sync_ms / async_ms:,.0f}x; 100 threads {threads_ms:,.2f} ms): async wins for waits that "
            f"overlap, but what is measured is timers, not I/O -- one 0.5 ms asyncio.sleep took "
            f"{one.extra['async_ns'] / 1e6:,.2f} ms (epoll's timeout is in whole ms)"
            + ("; uvloop's timer did not wait at all (libuv rounds 0.5 ms down to 0)." if len(fanout) > 3 else "."))


def _sweep_group(name: str) -> str:
    return f"when does async pay off: k concurrent waits of {name}, sync total / async total"


def _measured_sync(counts: list[int], wait_s: float, repeats: int) -> tuple[dict[int, float], float]:
    """Return sync totals measured for k <= 16 and the time of one wait (larger k are extrapolated from it)."""
    measured: dict[int, float] = {}
    per_wait = 0.0
    for k in counts:
        if k <= 16:  # cheap: more repeats, since a shared machine's noise is largest at small k
            measured[k] = _sync_waits_ns(k, wait_s, 3 * repeats)
            per_wait = measured[k] / k
    return measured, per_wait


def _sweep_loop_rows(group, label, factory, counts, wait_s, repeats, measured_sync, per_wait, first) -> list[Row]:
    rows: list[Row] = []
    rounded_down = False  # set when one wait alone returns early: the loop's timers do not wait
    for k in counts:
        reps = 3 * repeats if k <= 16 else repeats
        async_ns = run_coroutine(lambda: _async_waits_ns(k, wait_s, reps), factory)
        sync_ns = measured_sync.get(k, k * per_wait)
        how = "measured" if k in measured_sync else "k x the measured time.sleep"
        if k == 1 and async_ns < wait_s * 1e9:
            rounded_down = True
        waited = not rounded_down and async_ns >= wait_s * 1e9
        rows.append(Row(group, f"{label}, k={k:,}", sync_ns / async_ns, "x", higher_is_better=True,
                        note=f"sync {sync_ns / 1e6:,.2f} ms ({how}), async {async_ns / 1e6:,.2f} ms, "
                             f"async per wait {async_ns / k / 1000:,.1f} us"
                             + ("" if waited else f"; {_UVLOOP_NOTE.split(':')[0]}: timer rounded to 0 ms"),
                        extra={"k": k, "wait_ns": int(wait_s * 1e9), "sync_ns": sync_ns,
                               "async_ns": async_ns, "loop": label},
                        reference=first and not rows))
    return rows


def _sweep_rows(quick: bool, loops) -> list[Row]:
    repeats = 3 if quick else 5
    counts = [1, 2, 4, 16, 64, 256] if quick else [1, 2, 4, 8, 16, 64, 256, 1024]
    rows: list[Row] = []
    for wait_s, name in ((0.0005, "0.5 ms"), (0.00005, "50 us")):
        measured_sync, per_wait = _measured_sync(counts, wait_s, repeats)
        for i, (label, factory) in enumerate(loops):
            rows += _sweep_loop_rows(_sweep_group(name), label, factory, counts, wait_s, repeats, measured_sync,
                                     per_wait, first=(i == 0))
    return rows


def _pays_from(series: list[Row]):
    """The crossover: the smallest k from which every larger k is ahead (one noisy point cannot make it)."""
    return next((r.extra["k"] for i, r in enumerate(series) if all(x.value > 1.0 for x in series[i:])), None)


def _sweep_finding(rows: list[Row]) -> str:
    parts = []
    for wait_ns in (500_000, 50_000):
        series = [r for r in rows if r.extra.get("wait_ns") == wait_ns and r.extra.get("loop") == "asyncio"]
        pays = _pays_from(series)
        parts.append(f"with waits of {wait_ns / 1000:g} us asyncio is ahead from k={pays} concurrent waits "
                     f"(k=1: {series[0].value:.2f}x; k={series[-1].extra['k']:,}: {series[-1].value:,.0f}x)"
                     if pays is not None else f"with waits of {wait_ns / 1000:g} us asyncio never got ahead")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + ": one wait gains nothing."


# ----------------------------------------------------------------------------- real I/O over loopback UDP

_REQUEST = struct.Struct("<qq")  # (delay_ns, request id): the responder answers after delay_ns


def _udp_responder(conn: Any, lifetime_s: float = 120.0) -> None:
    """Answer each datagram ``(delay_ns, id)`` with itself ``delay_ns`` after it arrived; ``b"stop"`` ends.

    Runs in its own process, so the clients' waits are real socket waits on another process.
    Replies are due from a heap and sent from a ``select`` loop (microsecond timeouts).
    """
    now = time.perf_counter_ns
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    conn.send(sock.getsockname()[1])
    conn.close()
    due: list = []
    seq = 0
    ends = time.monotonic() + lifetime_s  # bounded even if the parent dies
    while time.monotonic() < ends:
        timeout = max(0.0, (due[0][0] - now()) / 1e9) if due else 0.5
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            while True:
                try:
                    data, addr = sock.recvfrom(64)
                except BlockingIOError:
                    break
                if data == b"stop":
                    sock.close()
                    return
                delay_ns = _REQUEST.unpack(data)[0] if len(data) == _REQUEST.size else 0
                heapq.heappush(due, (now() + delay_ns, seq, data, addr))
                seq += 1
        t = now()
        while due and due[0][0] <= t:
            _, _, data, addr = heapq.heappop(due)
            sock.sendto(data, addr)
    sock.close()


class _Responder:
    """The responder process: started once per section, stopped (and reaped) at the end."""

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_udp_responder, args=(child,), daemon=True)
        self.process.start()
        if not parent.poll(30):
            self.process.terminate()
            raise RuntimeError("the UDP responder did not start")
        self.address = ("127.0.0.1", parent.recv())

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"stop", self.address)
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _sync_udp_ns(address: tuple, k: int, delay_ns: int, repeats: int) -> float:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.settimeout(2.0)
        send, recv = sock.send, sock.recv
        samples = []
        for r in range(repeats + 1):  # the first pass warms up
            t0 = _now()
            for i in range(k):
                send(_REQUEST.pack(delay_ns, i))
                recv(64)
            if r:
                samples.append(_now() - t0)
    return statistics.median(samples)


def _threaded_udp_ns(address: tuple, k: int, delay_ns: int, repeats: int, pool: ThreadPoolExecutor) -> float:
    local = threading.local()

    def request(i: int) -> bytes:
        sock = getattr(local, "sock", None)
        if sock is None:
            sock = local.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect(address)
            sock.settimeout(2.0)
        sock.send(_REQUEST.pack(delay_ns, i))
        return sock.recv(64)

    samples = []
    for r in range(repeats + 1):
        t0 = _now()
        list(pool.map(request, range(k)))
        if r:
            samples.append(_now() - t0)
    return statistics.median(samples)


class _Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        future = self.waiting.pop(_REQUEST.unpack(data)[1], None)
        if future is not None and not future.done():
            future.set_result(data)


async def _async_udp_ns(address: tuple, k: int, delay_ns: int, repeats: int) -> float:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Replies, remote_addr=address)
    try:
        samples = []
        for r in range(repeats + 1):
            t0 = _now()
            futures = []
            for i in range(k):
                future = loop.create_future()
                protocol.waiting[i] = future
                futures.append(future)
                transport.sendto(_REQUEST.pack(delay_ns, i))
            await asyncio.wait_for(asyncio.gather(*futures), 5.0)
            if r:
                samples.append(_now() - t0)
        return statistics.median(samples)
    finally:
        transport.close()


def _udp_group(delay_ns: int) -> str:
    name = "replies 200 us late" if delay_ns else "a bare round trip"
    return (f"when does async pay off, real I/O: k concurrent requests over loopback UDP to another process, {name}; "
            "sync total / async total")


def _udp_delay_rows(address, delay_ns, counts, repeats, loops, pool) -> list[Row]:
    rows: list[Row] = []
    for k in counts:
        reps = repeats if k <= 16 else 5  # large k: each repeat is long, and noise averages within it
        sync_ns = _sync_udp_ns(address, k, delay_ns, reps)
        threads_ns = _threaded_udp_ns(address, k, delay_ns, reps, pool)
        for label, factory in loops:
            async_ns = run_coroutine(lambda: _async_udp_ns(address, k, delay_ns, reps), factory)
            rows.append(Row(_udp_group(delay_ns), f"{label}, k={k:,}", sync_ns / async_ns, "x", higher_is_better=True,
                            reference=not rows,
                            note=f"sync {sync_ns / 1000:,.0f} us, {k} threads {threads_ns / 1000:,.0f} us, "
                                 f"async {async_ns / 1000:,.0f} us",
                            extra={"k": k, "delay_ns": delay_ns, "sync_ns": sync_ns,
                                   "threads_ns": threads_ns, "async_ns": async_ns, "loop": label}))
    return rows


def _udp_rows(quick: bool, loops) -> list[Row]:
    repeats = 5 if quick else 11
    counts = [1, 2, 4, 16, 64] if quick else [1, 2, 4, 8, 16, 64, 256]
    responder = _Responder()
    rows: list[Row] = []
    try:
        with ThreadPoolExecutor(max_workers=max(counts)) as pool:
            for delay_ns in (0, 200_000):
                rows += _udp_delay_rows(responder.address, delay_ns, counts, repeats, loops, pool)
    finally:
        responder.close()
    return rows


def _udp_finding(rows: list[Row]) -> str:
    parts = []
    for delay_ns in (0, 200_000):
        series = [r for r in rows if r.extra.get("delay_ns") == delay_ns and r.extra.get("loop") == "asyncio"]
        pays, last = _pays_from(series), series[-1]
        parts.append(
            ("replies 200 us late: " if delay_ns else
             f"replies at once (a blocking round trip: {series[0].extra['sync_ns'] / 1000:,.0f} us): ")
            + (f"asyncio is ahead from k={pays} concurrent requests on" if pays is not None
               else "asyncio never stayed ahead of plain blocking calls")
            + f" (k=1: {series[0].value:.2f}x; k={last.extra['k']:,}: {last.value:,.1f}x, "
            f"{last.extra['async_ns'] / last.extra['k'] / 1000:,.1f} us per request in the loop, {last.extra['k']:,} "
            f"threads {last.extra['threads_ns'] / 1000:,.0f} us in all)")
    return "Over real loopback UDP to another process, " + "; ".join(parts) + "."


# ----------------------------------------------------------------------------- CPU-bound overhead


def cpu_work() -> int:
    """The seed's CPU-bound work: a sum of 1,000 squares."""
    total = 0
    for i in range(1000):
        total += i * i
    return total


async def async_cpu_work() -> int:
    """The same work in a coroutine, as in the seed."""
    return cpu_work()


def _median_per_op(samples: list[int], n: int, empty_ns: float) -> float:
    return max(statistics.median(samples) / n - empty_ns, 0.0)


def _nothing() -> None:
    return None


async def _nothing_async() -> None:
    return None


def _empty_loop(count: int) -> None:
    for _ in range(count):
        pass


def _call_loop(count: int) -> None:
    for _ in range(count):
        _nothing()


async def _await_loop(count: int) -> None:
    for _ in range(count):
        await _nothing_async()


async def _sleep0_loop(count: int) -> None:
    sleep = asyncio.sleep
    for _ in range(count):
        await sleep(0)


async def _task_loop(count: int) -> None:
    create = asyncio.get_running_loop().create_task
    for _ in range(count):
        await create(_nothing_async())


def _cpu_loop(count: int) -> None:
    for _ in range(count):
        cpu_work()


async def _cpu_await_loop(count: int) -> None:
    for _ in range(count):
        await async_cpu_work()


def _timed(body: Callable[[int], Any], n: int, repeats: int) -> list[int]:
    """Return ``repeats`` wall times of ``body(n)`` (after one warm-up of a tenth)."""
    body(max(1, n // 10))
    out = []
    for _ in range(repeats):
        t0 = _now()
        body(n)
        out.append(_now() - t0)
    return out


async def _atimed(body: Callable[[int], Awaitable[Any]], count: int, repeats: int) -> list[int]:
    """Return ``repeats`` wall times of ``await body(count)`` (after one warm-up of a tenth)."""
    await body(max(1, count // 10))
    out = []
    for _ in range(repeats):
        t0 = _now()
        await body(count)
        out.append(_now() - t0)
    return out


async def _overheads(n: int, cpu_n: int, repeats: int) -> dict[str, float]:
    empty = statistics.median(_timed(_empty_loop, n, repeats)) / n
    cpu_samples = []
    for _ in range(repeats):
        t0 = _now()
        _cpu_loop(cpu_n)
        cpu_samples.append(_now() - t0)
    return {
        "empty": empty,
        "call": _median_per_op(_timed(_call_loop, n, repeats), n, empty),
        "await": _median_per_op(await _atimed(_await_loop, n, repeats), n, empty),
        "sleep0": _median_per_op(await _atimed(_sleep0_loop, n, repeats), n, empty),
        "task": _median_per_op(await _atimed(_task_loop, n, repeats), n, empty),
        "cpu": statistics.median(cpu_samples) / cpu_n,
        "cpu_await": statistics.median(await _atimed(_cpu_await_loop, cpu_n, repeats)) / cpu_n,
    }


CALL = "plain function call"


def _await_label(loop: str) -> str:
    return f"await a coroutine that does not suspend ({loop})"


def _cpu_rows(quick: bool, loops) -> list[Row]:
    n = 20_000 if quick else 200_000
    cpu_n = 300 if quick else 3_000
    repeats = 3 if quick else 7
    results = [(label, run_coroutine(lambda: _overheads(n, cpu_n, repeats), factory)) for label, factory in loops]
    base = results[0][1]
    rows = [Row(WORK, "cpu_work() called directly", base["cpu"] / 1000, "us", reference=True,
                extra={"seed": SEED_CELL_CPU})]
    rows += [Row(WORK, f"await async_cpu_work() ({label})", r["cpu_await"] / 1000, "us") for label, r in results]
    rows.append(Row(COST, CALL, base["call"], "ns", reference=True))
    for label, r in results:
        rows.append(Row(COST, _await_label(label), r["await"], "ns"))
        rows.append(Row(COST, f"await asyncio.sleep(0): one trip through the loop ({label})", r["sleep0"], "ns"))
        rows.append(Row(COST, f"await loop.create_task(coroutine) ({label})", r["task"], "ns"))
    return rows


def _cpu_finding(rows: list[Row]) -> str:
    value = {r.label: r.value for r in rows if r.group in (WORK, COST)}
    call, awaited, work_us = value[CALL], value[_await_label("asyncio")], value["cpu_work() called directly"]
    share = 100.0 * max(awaited - call, 0.0) / (work_us * 1000) if work_us else 0.0
    return (f"Awaiting a coroutine that never suspends costs {awaited:,.0f} ns against a {call:,.0f} ns call "
            f"({share:.2f}% of the seed's {work_us:,.0f} us CPU-bound work), measured in a worker thread when a loop "
            f"runs (where the seed's cell crashed); a trip through the loop costs "
            f"{value['await asyncio.sleep(0): one trip through the loop (asyncio)'] / 1000:,.1f} us and a task "
            f"{value['await loop.create_task(coroutine) (asyncio)'] / 1000:,.1f} us: the microseconds the seed "
            "feared are in suspending, not in async syntax.")


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; ``quick`` keeps it to a few seconds. Works inside a running event loop."""
    loops = _loops()
    in_loop = running_loop() is not None
    progress.step("async: the seed's I/O fan-out")
    rows = _fanout_rows(quick, loops, in_loop)
    progress.step("async: sweep over concurrent waits")
    rows.extend(_sweep_rows(quick, loops))
    progress.step("async: real I/O sweep over loopback UDP")
    rows.extend(_udp_rows(quick, loops))
    progress.step("async: CPU-bound work and the cost of async itself")
    rows.extend(_cpu_rows(quick, loops))
    if len(loops) == 1:
        rows.append(Row("async vs sync: contenders", "uvloop: not installed, rows skipped", 0.0, "-",
                        note="pip install uvloop to add it"))
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows, experiment by experiment."""
    return " ".join((_fanout_finding(rows), _sweep_finding(rows), _udp_finding(rows), _cpu_finding(rows)))
