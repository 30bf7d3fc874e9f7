"""Experiment 9, connection pooling (seed section 7): an order round trip over loopback TCP, pooled
vs a new connection and login per order.

The seed's pool saved the ``time.sleep`` its simulated connection slept for; this is the
experiment for real. The exchange simulator runs in its own process
(``lowlat.exchange.main``, OUCH 4.2 on SoupBinTCP, the price-time book behind it), and so does a
bare TCP echo server; this process is the client. One round trip is: send an Enter Order, wait for
its Accepted. Each contender's round trips are recorded in a ``lowlat.LatencyHistogram``:

* ``bare TCP echo`` -- the floor: the very bytes a pooled Enter Order puts on the wire (SoupBinTCP
  framing included), sent with ``socket.send`` and read back from an echo process, TCP_NODELAY,
  blocking ``recv``. No protocol work on either side.
* ``pooled OUCH`` -- ``with pool.session() as s: s.enter_order(...); s.wait_for(token, "A")`` on a
  ConnectionPool of logged-in sessions, selector waits (and a busy-poll row).
* ``connect + login per order`` -- what a pool saves: a new TCP connection and SoupBinTCP login for
  every order (the socket is closed after the Accepted, outside the timed span).
* ``SoupBinTCP session, echo application`` -- the same Enter Order bytes through a
  ``SoupConnection`` to a second simulator process that answers with the same bytes: the cost of
  the two session layers and the socket layer without the OUCH book and codecs.

The same three for FIX 4.4 (NewOrderSingle -> ExecutionReport NEW, the simulator's FIX listener
in front of the same book, its echo row sending the very NewOrderSingle bytes).

The rows are p50 and p99 in microseconds; the ratio column is relative to the bare echo of each
group. Target: pooled OUCH p50 within 1.5x the echo.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import time

from ._harness import Progress, Row, judge

TITLE = "Connection pooling over loopback TCP"
SEED = "section 7, benchmark_connection_pooling"
SEED_SAYS = ("The seed's pool saved the 'setup latency' its SimulatedConnection slept for: a measurement of "
             "time.sleep, not of a network.")
STEPS = 9
OUCH_P50 = "OUCH Enter Order -> Accepted round trip over loopback, p50"
FIX_P50 = "FIX 4.4 NewOrderSingle -> ExecutionReport round trip over loopback, p50"
ECHO = "bare TCP echo of the same bytes (floor)"
POOLED = "pooled OUCH session, selector waits"
FRESH = "connect + login per order"
POOLED_TARGET = 1.5  # pooled OUCH p50 within this many times the bare echo

_ECHO = r"""
import socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    data = conn.recv(65536)
    if not data:
        break
    conn.sendall(data)
"""

_EXCHANGE = "import sys; from lowlat.exchange import main; sys.exit(main(sys.argv[1:]))"


def _spawn(code: str, *args: str) -> tuple[subprocess.Popen, str]:
    """Start ``python -c code`` and return it with the first line it prints (its ports)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("bench net: the helper process did not start")
    return proc, line


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _histogram():
    import lowlat

    return lowlat.LatencyHistogram()


def _echo_round_trips(port: int, message: bytes, count: int):
    hist = _histogram()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    size = len(message)
    clock = time.perf_counter_ns
    try:
        for i in range(count + count // 10):
            start = clock()
            sock.sendall(message)
            got = 0
            while got < size:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("bench net: the echo server closed the connection")
                got += len(chunk)
            if i >= count // 10:  # the first tenth warms up
                hist.record(clock() - start)
    finally:
        sock.close()
    return hist


def _pooled_round_trips(address, count: int, busy_poll: bool, prefix: str):
    from lowlat.net.ouch import OuchSession
    from lowlat.net.pool import ConnectionPool

    hist = _histogram()
    clock = time.perf_counter_ns
    names = iter(range(100))
    pool = ConnectionPool(lambda: OuchSession(address, f"{prefix}{next(names)}", "bench", busy_poll=busy_poll), 2)
    try:
        for i in range(count + count // 10):
            token = f"{prefix}{i}"
            start = clock()
            with pool.session() as session:
                session.enter_order(token, "B", 100, "BENCH", 1_000_000)
                session.wait_for(token, "A", timeout=10)
            if i >= count // 10:
                hist.record(clock() - start)
    finally:
        pool.close()
    return hist


def _soup_echo_round_trips(address, payload: bytes, count: int):
    from lowlat.net.connection import SoupConnection

    hist = _histogram()
    clock = time.perf_counter_ns
    connection = SoupConnection(address, "echo", "bench")
    connection.connect()
    try:
        for i in range(count + count // 10):
            start = clock()
            connection.send(payload)
            if connection.receive(10) is None:
                raise RuntimeError("bench net: no echo from the simulator")
            if i >= count // 10:
                hist.record(clock() - start)
    finally:
        connection.close()
    return hist


def _connect_per_order(address, count: int):
    from lowlat.net.ouch import OuchSession

    hist = _histogram()
    clock = time.perf_counter_ns
    for i in range(count + count // 10):
        token = f"F{i}"
        start = clock()
        session = OuchSession(address, "fresh", "bench", sequence=0)
        session.connect()
        session.enter_order(token, "B", 100, "BENCH", 1_000_000)
        session.wait_for(token, "A", timeout=10)
        elapsed = clock() - start
        session.close()
        if i >= count // 10:
            hist.record(elapsed)
    return hist


def _fix_pooled_round_trips(address, count: int, prefix: str):
    from lowlat import fix
    from lowlat.net.fix_orders import FixOrderSession
    from lowlat.net.pool import ConnectionPool

    hist = _histogram()
    clock = time.perf_counter_ns
    names = iter(range(100))
    pool = ConnectionPool(lambda: FixOrderSession(address, f"{prefix}{next(names)}"), 2)
    try:
        for i in range(count + count // 10):
            cl_ord_id = f"{prefix}{i}"
            start = clock()
            with pool.session() as session:
                session.new_order_single(cl_ord_id, "BENCH", fix.Side.BUY, 100, 1_000_000)
                session.wait_for(cl_ord_id, fix.ExecType.NEW, timeout=10)
            if i >= count // 10:
                hist.record(clock() - start)
    finally:
        pool.close()
    return hist


def _fix_connect_per_order(address, count: int):
    from lowlat import fix
    from lowlat.net.fix_orders import FixOrderSession

    hist = _histogram()
    clock = time.perf_counter_ns
    for i in range(count + count // 10):
        cl_ord_id = f"N{i}"
        start = clock()
        session = FixOrderSession(address, f"NEW{i}")  # a new CompID: a new session at sequence 1
        session.connect()
        session.new_order_single(cl_ord_id, "BENCH", fix.Side.BUY, 100, 1_000_000)
        session.wait_for(cl_ord_id, fix.ExecType.NEW, timeout=10)
        elapsed = clock() - start
        session.close()
        if i >= count // 10:
            hist.record(elapsed)
    return hist


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


class _Helpers:
    """The helper processes of one run: two echo servers, the simulator, its echo twin; all stopped by close()."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        try:
            self.echo_port = int(self._spawn(_ECHO))
            self.fix_echo_port = int(self._spawn(_ECHO))
            # "lowlat exchange listening on 127.0.0.1:P (SoupBinTCP), FIX on 127.0.0.1:F"
            ports = self._spawn(_EXCHANGE, "--port", "0", "--fix-port", "0", "--application", "ouch", "--timeout", "60",
                                "--heartbeat-interval", "5")
            self.address = ("127.0.0.1", int(ports.split()[4].rsplit(":", 1)[1]))
            self.fix_address = ("127.0.0.1", int(ports.rsplit(":", 1)[1]))
            self.echo_address = ("127.0.0.1", int(self._spawn(_EXCHANGE, "--port", "0", "--application", "echo",
                                                              "--timeout", "60").rsplit(":", 1)[1]))
        except BaseException:
            self.close()
            raise

    def _spawn(self, code: str, *args: str) -> str:
        proc, line = _spawn(code, *args)
        self.processes.append(proc)
        return line

    def close(self) -> None:
        for proc in self.processes:
            _stop(proc)


def _ouch_contenders(helpers: _Helpers, progress: Progress, rounds: int, fresh_rounds: int) -> list[tuple[str, object]]:
    progress.step("connpool: bare TCP echo")
    results = [(ECHO, _echo_round_trips(helpers.echo_port, _enter_order_packet(), rounds))]
    progress.step("connpool: pooled OUCH, selector")
    results.append((POOLED, _pooled_round_trips(helpers.address, rounds, False, "S")))
    progress.step("connpool: pooled OUCH, busy-poll")
    results.append(("pooled OUCH session, busy-poll", _pooled_round_trips(helpers.address, rounds, True, "B")))
    progress.step("connpool: SoupBinTCP session, echo application")
    results.append(("SoupBinTCP session, simulator echo application",
                    _soup_echo_round_trips(helpers.echo_address, _enter_order_packet()[3:], rounds)))
    progress.step("connpool: connect + login per order")
    results.append((FRESH, _connect_per_order(helpers.address, fresh_rounds)))
    return results


def _fix_contenders(helpers: _Helpers, progress: Progress, rounds: int, fresh_rounds: int) -> list[tuple[str, object]]:
    progress.step("connpool: FIX bare TCP echo")
    results = [(ECHO, _echo_round_trips(helpers.fix_echo_port, _new_order_single_bytes(), rounds))]
    progress.step("connpool: pooled FIX")
    results.append(("pooled FIX 4.4 session, selector waits", _fix_pooled_round_trips(helpers.fix_address, rounds, "P")))
    progress.step("connpool: FIX connect + logon per order")
    results.append(("connect + logon per order", _fix_connect_per_order(helpers.fix_address, fresh_rounds)))
    return results


def _rows_of(results, fix_results) -> list[Row]:
    rows = []
    for quantile, group, group_results in (
            (50, OUCH_P50, results),
            (99, "OUCH Enter Order -> Accepted round trip over loopback, p99", results),
            (50, FIX_P50, fix_results),
            (99, "FIX 4.4 NewOrderSingle -> ExecutionReport round trip over loopback, p99", fix_results)):
        for label, hist in group_results:
            rows.append(Row(group, label, hist.percentile(quantile) / 1000, "us",
                            note=f"{hist.count:,} round trips", extra={"p50_ns": hist.percentile(50),
                                                                         "p99_ns": hist.percentile(99),
                                                                         "count": hist.count}))
    echo, pooled = (next(r for r in rows if r.group == OUCH_P50 and r.label == label) for label in (ECHO, POOLED))
    judge(pooled, f"p50 <= {POOLED_TARGET:g}x the bare echo", pooled.value <= POOLED_TARGET * echo.value)
    return rows


def measure(progress: Progress, rounds: int, fresh_rounds: int) -> list[Row]:
    """Return the p50/p99 rows of every contender: ``rounds`` round trips each, ``fresh_rounds`` per new login."""
    was_enabled = gc.isenabled()
    helpers = _Helpers()  # every process started here is stopped in the finally
    try:
        gc.disable()
        results = _ouch_contenders(helpers, progress, rounds, fresh_rounds)
        fix_results = _fix_contenders(helpers, progress, rounds, fresh_rounds)
    finally:
        if was_enabled:
            gc.enable()
        helpers.close()
    progress.step("connpool: report")
    return _rows_of(results, fix_results)


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    return measure(progress, 2_000 if quick else 20_000, 200 if quick else 2_000)


def conclude(rows: list[Row]) -> str:
    """Say what this run shows: what a pool saves per order, and how close it comes to the bare socket."""
    def p50(group: str, label: str) -> float:
        return next((r.value for r in rows if r.group == group and r.label == label), 0.0)

    echo, pooled, fresh = (p50(OUCH_P50, label) for label in (ECHO, POOLED, FRESH))
    fix_pooled, fix_fresh = p50(FIX_P50, "pooled FIX 4.4 session, selector waits"), p50(FIX_P50, "connect + logon per order")
    return (f"Over real loopback TCP to the exchange simulator, a pooled OUCH session's Enter Order -> Accepted takes "
            f"p50 {pooled:,.0f} us against {fresh:,.0f} us with a new connection and login per order "
            f"({fresh / pooled if pooled else 0:,.1f}x), and {pooled / echo if echo else 0:,.2f}x the bare TCP echo of the "
            f"same bytes ({echo:,.0f} us); FIX: pooled {fix_pooled:,.0f} us against {fix_fresh:,.0f} us per new logon. "
            "What the pool saves is the TCP handshake and the session login, not a sleep.")
