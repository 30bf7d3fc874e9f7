"""Experiment 9, connection pooling (seed section 7): an order round trip over loopback TCP, pooled
vs a new connection and login per order, each against the bare TCP echo it is the floor of.

The seed's pool saved the ``time.sleep`` its simulated connection slept for; this is the
experiment for real. The exchange simulator runs in its own process
(``lowlat.exchange.main``, OUCH 4.2 on SoupBinTCP, the price-time book behind it), and so does a
bare TCP echo server; this process is the client. One round trip is: send an Enter Order, wait for
its Accepted. Each contender's round trips are recorded in a ``lowlat.LatencyHistogram``.

Fair to every contender:

* **Interleaved.** A shared 2-vCPU VM drifts by 2-4x within seconds, so a group's contenders are
  not run one after the other: every connection is opened first, then blocks of ``BLOCK`` round
  trips run contender A, B, C, then C, B, A, ... (each block after ``BLOCK_WARMUP`` unrecorded round
  trips) until every contender has its count; p50/p99 are over all of its samples.
* **Placed alike.** Whether a send wakes its reader on the same vCPU (a 15 us echo here) or has
  the hypervisor wake the other vCPU (55 us, the same echo) depends on where the scheduler left
  each helper process, and differs from one helper to the next. So this thread and every helper
  are pinned (``os.sched_setaffinity``, where it exists): the sleeping groups run client and
  servers on one CPU -- the round trip is then the work of both ends, nothing hides it -- the
  spinning group the client on one CPU and its servers on the other.
* **Same wait mode at both ends as its echo.** The target is judged on matched pairs only.

Groups:

* **OUCH, everybody sleeps** in the kernel until bytes arrive. ``bare TCP echo ... blocking recv
  both ends`` (the floor): the very bytes a pooled Enter Order puts on the wire (SoupBinTCP framing
  included), ``socket.send`` and a blocking ``recv`` (TCP_NODELAY) to an echo process blocked in
  ``recv``; no protocol work at either end. ``pooled OUCH session, selector waits``: ``with
  pool.session() as s: s.enter_order(...); s.wait_for(token, "A")`` on a ConnectionPool of
  logged-in sessions (``busy_poll=False``) to a simulator sleeping in epoll. ``SoupBinTCP session,
  simulator echo application``: the same Enter Order bytes through a ``SoupConnection`` to a
  second simulator that answers with the same bytes (both session layers and the socket layer; no
  pool, no OUCH codec, no book). ``connect + login per order``: what a pool saves, a new TCP
  connection and login per order (the socket is closed after the Accepted, outside the timed span).
* **OUCH, everybody spins**: ``bare TCP echo ... busy-poll both ends`` (client and echo spin on a
  non-blocking ``recv``) against ``pooled OUCH session, busy-poll`` to a simulator run with
  ``--busy-poll`` (spinning on each connection's ``recv``, asking epoll about the rest every few
  turns). Two spinning servers and a spinning client would be three spinners on two vCPUs, so the
  server of the contender not running is stopped (SIGSTOP) and continued (SIGCONT) for its own
  blocks: one spinning client against one spinning server.
  Blocks are ``PAUSED_BLOCK`` round trips here, each after ``RESUME_WARMUP_S`` of unrecorded ones.
* **FIX 4.4, everybody sleeps**: NewOrderSingle -> ExecutionReport NEW through the simulator's
  FIX listener in front of the same book; its echo sends the very NewOrderSingle bytes.

The rows are p50 and p99 in microseconds; the ratio column is relative to the echo of the row's
own group. A sleeping row's note also gives the CPU time per round trip of each end (this process
with its pool thread; every thread of the helper), from Linux's schedstat around the timed blocks:
where a round trip's time goes when both ends share one CPU. Target, judged on each matched pair:
the pooled OUCH p50 within 1.5x the echo that waits the same way (selector pool and sleeping
simulator against the blocking echo; busy-poll pool and spinning simulator against the spinning
echo). A busy-poll client is never judged against a sleeping echo.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from ._harness import Progress, Row, judge

if TYPE_CHECKING:
    from lowlat import LatencyHistogram

    #: ``run(n, hist)``: ``n`` round trips, recorded in ``hist`` unless it is None.
    _Run = Callable[[int, LatencyHistogram | None], None]
    #: What a contender's ``setup()`` returns: its ``run`` and its ``close``.
    _Setup = Callable[[], tuple[_Run, Callable[[], None]]]

TITLE = "Connection pooling over loopback TCP"
SEED = "section 7, benchmark_connection_pooling"
SEED_SAYS = ("The seed's pool saved the 'setup latency' its SimulatedConnection slept for: a measurement of "
             "time.sleep, not of a network.")
STEPS = 5
OUCH_P50 = "OUCH Enter Order -> Accepted round trip over loopback, both ends sleep until bytes arrive, p50"
OUCH_P99 = "OUCH Enter Order -> Accepted round trip over loopback, both ends sleep until bytes arrive, p99"
SPIN_P50 = "OUCH Enter Order -> Accepted round trip over loopback, both ends busy-poll, p50"
SPIN_P99 = "OUCH Enter Order -> Accepted round trip over loopback, both ends busy-poll, p99"
FIX_P50 = "FIX 4.4 NewOrderSingle -> ExecutionReport round trip over loopback, p50"
FIX_P99 = "FIX 4.4 NewOrderSingle -> ExecutionReport round trip over loopback, p99"
ECHO = "bare TCP echo of the same bytes, blocking recv both ends (floor)"
SPIN_ECHO = "bare TCP echo of the same bytes, busy-poll both ends (floor)"
POOLED = "pooled OUCH session, selector waits"
SPIN_POOLED = "pooled OUCH session, busy-poll, simulator --busy-poll"
SOUP_ECHO = "SoupBinTCP session, simulator echo application"
FRESH = "connect + login per order"
FIX_POOLED = "pooled FIX 4.4 session, selector waits"
FIX_FRESH = "connect + logon per order"
POOLED_TARGET = 1.5  # pooled OUCH p50 within this many times the matched bare echo
BLOCK = 50  # round trips per interleaved block
BLOCK_WARMUP = 2  # unrecorded round trips before each block
PAUSED_BLOCK = 500  # round trips per block when the servers are stopped and continued in turn
RESUME_WARMUP_S = 0.01  # unrecorded round trips for this long after a server is continued

_ECHO = r"""
import socket, sys
spin = sys.argv[1:] == ["spin"]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
conn.setblocking(not spin)  # spinning: recv until it returns bytes, as Transport(busy_poll=True)
recv, send = conn.recv, conn.sendall
while True:
    try:
        data = recv(65536)
    except BlockingIOError:
        continue
    if not data:
        break
    send(data)
"""

_EXCHANGE = "import sys; from lowlat.exchange import main; sys.exit(main(sys.argv[1:]))"


def _spawn(code: str, *args: str) -> tuple[subprocess.Popen, str]:
    """Start ``python -c code`` and return it with the first line it prints (its ports)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    assert proc.stdout is not None  # stdout=PIPE
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("bench net: the helper process did not start")
    return proc, line


def _histogram() -> LatencyHistogram:
    import lowlat

    return lowlat.LatencyHistogram()


def _cpu_ns(pid: int) -> int | None:
    """CPU time of every thread of process ``pid`` so far, in ns (Linux schedstat); None elsewhere."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        return None


class _Contender:
    """One row: ``run(n, hist)`` does ``n`` round trips (recorded when ``hist`` is not None) on
    what ``open()`` set up. ``server`` is the helper process that answers it: its CPU time (and this
    process's) is counted around every timed block; with ``pause`` it is stopped while others run."""

    run: _Run  # these two are set by open()
    close: Callable[[], None]

    def __init__(self, label: str, count: int, setup: _Setup, server: subprocess.Popen | None = None,
                 pause: bool = False) -> None:
        self.label = label
        self.count = count
        self.setup = setup
        self.server = server
        self.pause = pause
        self.hist = _histogram()
        self.client_cpu_ns = 0
        self.server_cpu_ns = 0

    def timed_block(self, n: int) -> None:
        """``n`` recorded round trips, and the CPU both ends spent on them (not counted for spinners:
        their CPU time is their wall time, waiting included)."""
        if self.pause:
            self.run(n, self.hist)
            return
        server_pid = self.server.pid if self.server is not None else 0
        client, server = _cpu_ns(os.getpid()), _cpu_ns(server_pid) if server_pid else None
        self.run(n, self.hist)
        if client is not None:
            self.client_cpu_ns += (_cpu_ns(os.getpid()) or client) - client
        if server is not None:
            self.server_cpu_ns += (_cpu_ns(server_pid) or server) - server

    def open(self) -> None:
        self.run, self.close = self.setup()


def _echo_client(port: int, message: bytes, busy_poll: bool) -> _Setup:
    """A bare client: ``send``, then a blocking ``recv`` (no socket timeout: Python would poll
    before every recv) -- or, with ``busy_poll``, a non-blocking ``recv`` spun on until it returns
    bytes (as ``Transport(busy_poll=True)`` spins)."""
    def setup() -> tuple[_Run, Callable[[], None]]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(not busy_poll)
        send, recv, size, clock = sock.send, sock.recv, len(message), time.perf_counter_ns

        def run(n: int, hist: LatencyHistogram | None) -> None:
            for _ in range(n):
                start = clock()
                send(message)
                got = 0
                while got < size:
                    try:
                        chunk = recv(65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise RuntimeError("bench net: the echo server closed the connection")
                    got += len(chunk)
                if hist is not None:
                    hist.record(clock() - start)

        return run, sock.close
    return setup


def _pooled_client(address: tuple[str, int], busy_poll: bool, prefix: str) -> _Setup:
    def setup() -> tuple[_Run, Callable[[], None]]:
        from lowlat.net.ouch import OuchSession
        from lowlat.net.pool import ConnectionPool

        names, tokens, clock = itertools.count(), itertools.count(), time.perf_counter_ns
        pool = ConnectionPool(lambda: OuchSession(address, f"{prefix}{next(names)}", "bench", busy_poll=busy_poll), 2)

        def run(n: int, hist: LatencyHistogram | None) -> None:
            for _ in range(n):
                token = f"{prefix}{next(tokens)}"
                start = clock()
                with pool.session() as session:
                    session.enter_order(token, "B", 100, "BENCH", 1_000_000)
                    session.wait_for(token, "A", timeout=10)
                if hist is not None:
                    hist.record(clock() - start)

        return run, pool.close
    return setup


def _soup_echo_client(address: tuple[str, int], payload: bytes) -> _Setup:
    def setup() -> tuple[_Run, Callable[[], None]]:
        from lowlat.net.connection import SoupConnection

        clock = time.perf_counter_ns
        connection = SoupConnection(address, "echo", "bench")
        connection.connect()

        def run(n: int, hist: LatencyHistogram | None) -> None:
            for _ in range(n):
                start = clock()
                connection.send(payload)
                if connection.receive(10) is None:
                    raise RuntimeError("bench net: no echo from the simulator")
                if hist is not None:
                    hist.record(clock() - start)

        return run, connection.close
    return setup


def _connect_per_order(open_session: Callable[[int], Any], order: Callable[[Any, int], None]) -> _Setup:
    """Every order on a connection of its own: ``open_session(i)`` a new session (a new login),
    connected here; ``order(session, i)`` sends order ``i`` and waits for its acknowledgement; the
    session is closed after the clock stops."""
    def setup() -> tuple[_Run, Callable[[], None]]:
        ids, clock = itertools.count(), time.perf_counter_ns

        def run(n: int, hist: LatencyHistogram | None) -> None:
            for _ in range(n):
                i = next(ids)
                start = clock()
                session = open_session(i)
                session.connect()
                order(session, i)
                elapsed = clock() - start
                session.close()
                if hist is not None:
                    hist.record(elapsed)

        return run, lambda: None
    return setup


def _ouch_connect_per_order(address: tuple[str, int]) -> _Setup:
    from lowlat.net.ouch import OuchSession

    def order(session: Any, i: int) -> None:
        session.enter_order(f"F{i}", "B", 100, "BENCH", 1_000_000)
        session.wait_for(f"F{i}", "A", timeout=10)

    return _connect_per_order(lambda i: OuchSession(address, "fresh", "bench", sequence=0), order)


def _fix_pooled_client(address: tuple[str, int], prefix: str) -> _Setup:
    def setup() -> tuple[_Run, Callable[[], None]]:
        from lowlat import fix
        from lowlat.net.fix_orders import FixOrderSession
        from lowlat.net.pool import ConnectionPool

        names, ids, clock = itertools.count(), itertools.count(), time.perf_counter_ns
        pool = ConnectionPool(lambda: FixOrderSession(address, f"{prefix}{next(names)}"), 2)

        def run(n: int, hist: LatencyHistogram | None) -> None:
            for _ in range(n):
                cl_ord_id = f"{prefix}{next(ids)}"
                start = clock()
                with pool.session() as session:
                    session.new_order_single(cl_ord_id, "BENCH", fix.Side.BUY, 100, 1_000_000)
                    session.wait_for(cl_ord_id, fix.ExecType.NEW, timeout=10)
                if hist is not None:
                    hist.record(clock() - start)

        return run, pool.close
    return setup


def _fix_connect_per_order(address: tuple[str, int]) -> _Setup:
    from lowlat import fix
    from lowlat.net.fix_orders import FixOrderSession

    def order(session: Any, i: int) -> None:
        session.new_order_single(f"N{i}", "BENCH", fix.Side.BUY, 100, 1_000_000)
        session.wait_for(f"N{i}", fix.ExecType.NEW, timeout=10)

    # a new CompID per order: a new session at sequence 1
    return _connect_per_order(lambda i: FixOrderSession(address, f"NEW{i}"), order)


def _block_sizes(count: int, blocks: int) -> list[int]:
    return [count // blocks + (1 if i < count % blocks else 0) for i in range(blocks)]


def _pause_all_but(contenders: list[_Contender], running: _Contender) -> None:
    for other in contenders:
        if other.pause and other.server is not running.server:
            assert other.server is not None  # pause=True comes with the server to pause
            other.server.send_signal(signal.SIGSTOP)
    if running.pause:
        assert running.server is not None
        running.server.send_signal(signal.SIGCONT)


def _warm_for(contender: _Contender, seconds: float) -> None:
    """Unrecorded round trips until ``seconds`` have passed."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        contender.run(BLOCK_WARMUP, None)


def interleave(contenders: list[_Contender], rounds: int, warmup: int) -> None:
    """Open every contender, warm each up (``warmup`` round trips), then run their counts in
    interleaved blocks of about ``BLOCK`` round trips (A B C, C B A, ...); close them all.

    With servers to pause, blocks are ``PAUSED_BLOCK`` long and each starts after its server has
    run ``RESUME_WARMUP_S`` again: a continued simulator's threads first settle who holds the GIL
    (its main thread's timed wait expired while it was stopped), a stall of milliseconds that
    would otherwise land in the first round trip of every block, i.e. in the p99."""
    paused = any(c.pause for c in contenders)
    blocks = max(1, rounds // (PAUSED_BLOCK if paused else BLOCK))
    sizes = {id(c): _block_sizes(c.count, blocks) for c in contenders}
    opened = []
    try:
        for contender in contenders:
            contender.open()
            opened.append(contender)
        for contender in contenders:
            if paused:
                _pause_all_but(contenders, contender)
            contender.run(max(1, contender.count * warmup // max(rounds, 1)), None)
        for block in range(blocks):
            for contender in (contenders if block % 2 == 0 else contenders[::-1]):
                if paused:
                    _pause_all_but(contenders, contender)
                    _warm_for(contender, RESUME_WARMUP_S)
                contender.run(BLOCK_WARMUP, None)
                contender.timed_block(sizes[id(contender)][block])
    finally:
        for contender in contenders:
            if contender.pause:
                assert contender.server is not None
                contender.server.send_signal(signal.SIGCONT)
        for contender in opened:
            contender.close()


def _cpus() -> list[int]:
    """The CPUs this process may run on, in order (empty where affinity cannot be set)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


class _Helpers:
    """Helper processes of one group, and where everything runs: the helpers (started by ``spawn``)
    on ``server_cpus``, this thread (and the threads it starts) on ``client_cpus`` until close()
    restores its affinity and stops every helper. Empty CPU sets leave placement to the scheduler."""

    def __init__(self, client_cpus: set[int], server_cpus: set[int]) -> None:
        self.processes: list[subprocess.Popen] = []
        self.client_cpus = client_cpus
        self.server_cpus = server_cpus
        self.saved = os.sched_getaffinity(0) if client_cpus else None
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)

    def spawn(self, code: str, *args: str) -> tuple[subprocess.Popen, str]:
        if self.server_cpus:  # a child inherits the affinity of the thread that forks it
            os.sched_setaffinity(0, self.server_cpus)
        try:
            proc, line = _spawn(code, *args)
        finally:
            if self.client_cpus:
                os.sched_setaffinity(0, self.client_cpus)
        self.processes.append(proc)
        return proc, line

    def echo(self, spin: bool = False) -> tuple[subprocess.Popen, int]:
        proc, line = self.spawn(_ECHO, *(["spin"] if spin else []))
        return proc, int(line)

    def exchange(self, *args: str) -> tuple[subprocess.Popen, tuple[str, int], tuple[str, int] | None]:
        """Start a simulator; return it, its SoupBinTCP address and its FIX address (or None)."""
        # "lowlat exchange listening on 127.0.0.1:P (SoupBinTCP), FIX on 127.0.0.1:F"
        proc, line = self.spawn(_EXCHANGE, "--port", "0", "--timeout", "60", "--heartbeat-interval", "5", *args)
        port = int(line.split()[4].rsplit(":", 1)[1])
        fix = ("127.0.0.1", int(line.rsplit(":", 1)[1])) if "FIX" in line else None
        return proc, ("127.0.0.1", port), fix

    def __enter__(self) -> "_Helpers":
        return self

    def __exit__(self, *exc) -> None:
        from lowlat.pipeline.exchange import stop_process

        try:
            for proc in self.processes:
                stop_process(proc)
        finally:
            if self.saved is not None:
                os.sched_setaffinity(0, self.saved)


def _sleeping_placement() -> tuple[set[int], set[int]]:
    """Client and servers on one CPU: a send wakes its reader on the same CPU, so the round trip
    is the work of both ends (no cross-CPU wake-up, 20+ us a direction on this kind of VM)."""
    cpus = _cpus()
    return ({cpus[-1]}, {cpus[-1]}) if cpus else (set(), set())


def _spinning_placement() -> tuple[set[int], set[int]]:
    """Client and servers on different CPUs: two spinners must not share one."""
    cpus = _cpus()
    return ({cpus[0]}, {cpus[-1]}) if len(cpus) >= 2 else (set(), set())


def _sleeping_group(rounds: int, fresh_rounds: int) -> list[_Contender]:
    with _Helpers(*_sleeping_placement()) as helpers:
        echo, echo_port = helpers.echo()
        exchange, address, _ = helpers.exchange("--application", "ouch")
        soup_echo, echo_address, _ = helpers.exchange("--application", "echo")
        contenders = [_Contender(ECHO, rounds, _echo_client(echo_port, _enter_order_packet(), False), echo),
                      _Contender(POOLED, rounds, _pooled_client(address, False, "S"), exchange),
                      _Contender(SOUP_ECHO, rounds, _soup_echo_client(echo_address, _enter_order_packet()[3:]),
                                 soup_echo),
                      _Contender(FRESH, fresh_rounds, _ouch_connect_per_order(address), exchange)]
        interleave(contenders, rounds, rounds // 10)
    return contenders


def _spinning_group(rounds: int) -> list[_Contender]:
    with _Helpers(*_spinning_placement()) as helpers:
        echo, echo_port = helpers.echo(spin=True)
        exchange, address, _ = helpers.exchange("--application", "ouch", "--busy-poll")
        contenders = [_Contender(SPIN_ECHO, rounds, _echo_client(echo_port, _enter_order_packet(), True), echo,
                                 pause=True),
                      _Contender(SPIN_POOLED, rounds, _pooled_client(address, True, "B"), exchange, pause=True)]
        interleave(contenders, rounds, rounds // 10)
    return contenders


def _fix_group(rounds: int, fresh_rounds: int) -> list[_Contender]:
    with _Helpers(*_sleeping_placement()) as helpers:
        echo, echo_port = helpers.echo()
        exchange, _, fix_address = helpers.exchange("--application", "ouch", "--fix-port", "0")
        assert fix_address is not None  # with --fix-port the simulator says where FIX listens
        contenders = [_Contender(ECHO, rounds, _echo_client(echo_port, _new_order_single_bytes(), False), echo),
                      _Contender(FIX_POOLED, rounds, _fix_pooled_client(fix_address, "P"), exchange),
                      _Contender(FIX_FRESH, fresh_rounds, _fix_connect_per_order(fix_address), exchange)]
        interleave(contenders, rounds, rounds // 10)
    return contenders


def _new_order_single_bytes() -> bytes:
    from lowlat import fix

    buffer = bytearray(512)
    n = fix.FixEncoder("P0", "EXCH").new_order_single(buffer, 0, 2, time.time_ns(), "P12345", "BENCH", fix.Side.BUY,
                                                      100, fix.OrdType.LIMIT, 1_000_000)
    return bytes(buffer[:n])


def _enter_order_packet() -> bytes:
    """The bytes one pooled Enter Order puts on the wire: SoupBinTCP header + OUCH message."""
    from lowlat import ouch
    from lowlat.net import soupbintcp

    buffer = bytearray(ouch.MESSAGES["enter_order"].length)
    ouch.encode_enter_order(buffer, 0, "P12345", "B", 100, "BENCH", 1_000_000)
    return soupbintcp.encode_packet(b"U", bytes(buffer))


def _row(group: str, quantile: int, contender: _Contender) -> Row:
    hist = contender.hist
    count = max(hist.count, 1)
    client_cpu, server_cpu = contender.client_cpu_ns / count / 1000, contender.server_cpu_ns / count / 1000
    cpu = f"; CPU per round trip: client {client_cpu:,.1f} us, server {server_cpu:,.1f} us" if client_cpu else ""
    return Row(group, contender.label, hist.percentile(quantile) / 1000, "us",
               note=f"{hist.count:,} round trips, interleaved{cpu}",
               extra={"p50_ns": hist.percentile(50), "p99_ns": hist.percentile(99), "count": hist.count,
                      "client_cpu_us": client_cpu, "server_cpu_us": server_cpu})


def _rows_of(groups: list[tuple[str, str, list[_Contender]]]) -> list[Row]:
    rows = [_row(group, quantile, contender)
            for p50_group, p99_group, contenders in groups
            for quantile, group in ((50, p50_group), (99, p99_group))
            for contender in contenders]
    for group, floor, pooled_label, wait in ((OUCH_P50, ECHO, POOLED, "blocking"),
                                             (SPIN_P50, SPIN_ECHO, SPIN_POOLED, "spinning")):
        echo, pooled = (next(r for r in rows if r.group == group and r.label == label) for label in (floor, pooled_label))
        judge(pooled, f"p50 <= {POOLED_TARGET:g}x the {wait} echo", pooled.value <= POOLED_TARGET * echo.value)
    return rows


def measure(progress: Progress, rounds: int, fresh_rounds: int) -> list[Row]:
    """Return the p50/p99 rows of every contender: ``rounds`` round trips each, ``fresh_rounds`` per new login."""
    was_enabled = gc.isenabled()
    try:
        gc.disable()
        progress.step("connpool: OUCH, everybody sleeps (echo, pooled, session-only, login per order)")
        sleeping = _sleeping_group(rounds, fresh_rounds)
        progress.step("connpool: OUCH, everybody spins (echo, pooled)")
        spinning = _spinning_group(rounds)
        progress.step("connpool: FIX (echo, pooled, logon per order)")
        fix_contenders = _fix_group(rounds, fresh_rounds)
    finally:
        if was_enabled:
            gc.enable()
    progress.step("connpool: report")
    rows = _rows_of([(OUCH_P50, OUCH_P99, sleeping), (SPIN_P50, SPIN_P99, spinning),
                     (FIX_P50, FIX_P99, fix_contenders)])
    progress.step("connpool: done")
    return rows


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    return measure(progress, 2_000 if quick else 20_000, 200 if quick else 2_000)


def conclude(rows: list[Row]) -> str:
    """Say what this run shows: what a pool saves per order, and how close it comes to the matched bare socket."""
    def p50(group: str, label: str) -> float:
        return next((r.value for r in rows if r.group == group and r.label == label), 0.0)

    echo, pooled, fresh = (p50(OUCH_P50, label) for label in (ECHO, POOLED, FRESH))
    spin_echo, spin_pooled = p50(SPIN_P50, SPIN_ECHO), p50(SPIN_P50, SPIN_POOLED)
    fix_pooled, fix_fresh = p50(FIX_P50, FIX_POOLED), p50(FIX_P50, FIX_FRESH)
    return (f"Over real loopback TCP to the exchange simulator, a pooled OUCH session's Enter Order -> Accepted takes "
            f"p50 {pooled:,.0f} us against {fresh:,.0f} us with a new connection and login per order "
            f"({fresh / pooled if pooled else 0:,.1f}x), and {pooled / echo if echo else 0:,.2f}x the blocking TCP echo "
            f"of the same bytes ({echo:,.0f} us, interleaved with it); with both ends spinning, "
            f"{spin_pooled:,.0f} us = {spin_pooled / spin_echo if spin_echo else 0:,.2f}x the spinning echo "
            f"({spin_echo:,.0f} us). FIX: pooled {fix_pooled:,.0f} us against {fix_fresh:,.0f} us per new logon. "
            "What the pool saves is the TCP handshake and the session login, not a sleep.")
