"""``lowlat bench`` section "net": an order round trip over loopback TCP, pooled vs per-order login.

The seed's connection-pool experiment, for real. The exchange simulator runs in its own process
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

from ._benchkit import Progress, Row

TITLE = "Connection pooling over loopback TCP"
SEED = "section 7, benchmark_connection_pooling"
SEED_SAYS = ("The seed's pool saved the 'setup latency' its SimulatedConnection slept for: a measurement of "
             "time.sleep, not of a network.")
STEPS = 9

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
    from .net.ouch import OuchSession
    from .net.pool import ConnectionPool

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
    from .net.connection import SoupConnection

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
    from .net.ouch import OuchSession

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
    from . import fix
    from .net.fix_orders import FixOrderSession
    from .net.pool import ConnectionPool

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
    from . import fix
    from .net.fix_orders import FixOrderSession

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
    from . import fix

    buffer = bytearray(512)
    n = fix.FixEncoder("P0", "EXCH").new_order_single(buffer, 0, 2, time.time_ns(), "P12345", "BENCH", fix.Side.BUY,
                                                      100, fix.OrdType.LIMIT, 1_000_000)
    return bytes(buffer[:n])


def _enter_order_packet() -> bytes:
    """The bytes one pooled Enter Order puts on the wire: SoupBinTCP header + OUCH message."""
    from . import ouch
    from .net import soupbintcp

    buffer = bytearray(ouch.MESSAGES["enter_order"].length)
    ouch.encode_enter_order(buffer, 0, "P12345", "B", 100, "BENCH", 1_000_000)
    return soupbintcp.encode_packet(b"U", bytes(buffer))


def run(quick: bool, progress: Progress, *, rounds: int | None = None, fresh_rounds: int | None = None) -> list[Row]:
    """Return the p50/p99 rows of every contender (``rounds`` / ``fresh_rounds`` override the counts)."""
    rounds = rounds or (2_000 if quick else 20_000)
    fresh_rounds = fresh_rounds or (200 if quick else 2_000)
    helpers: list[subprocess.Popen] = []  # every process started here is stopped in the finally

    def spawn(code: str, *args: str) -> str:
        proc, line = _spawn(code, *args)
        helpers.append(proc)
        return line

    was_enabled = gc.isenabled()
    try:
        echo_port = int(spawn(_ECHO))
        fix_echo_port = int(spawn(_ECHO))
        # "lowlat exchange listening on 127.0.0.1:P (SoupBinTCP), FIX on 127.0.0.1:F"
        ports = spawn(_EXCHANGE, "--port", "0", "--fix-port", "0", "--application", "ouch", "--timeout", "60",
                      "--heartbeat-interval", "5")
        address = ("127.0.0.1", int(ports.split()[4].rsplit(":", 1)[1]))
        fix_address = ("127.0.0.1", int(ports.rsplit(":", 1)[1]))
        echo_address = ("127.0.0.1", int(spawn(_EXCHANGE, "--port", "0", "--application", "echo", "--timeout",
                                               "60").rsplit(":", 1)[1]))
        gc.disable()
        progress.step("net: bare TCP echo")
        results = [("bare TCP echo of the same bytes (floor)", _echo_round_trips(echo_port, _enter_order_packet(), rounds))]
        progress.step("net: pooled OUCH, selector")
        results.append(("pooled OUCH session, selector waits", _pooled_round_trips(address, rounds, False, "S")))
        progress.step("net: pooled OUCH, busy-poll")
        results.append(("pooled OUCH session, busy-poll", _pooled_round_trips(address, rounds, True, "B")))
        progress.step("net: SoupBinTCP session, echo application")
        results.append(("SoupBinTCP session, simulator echo application",
                        _soup_echo_round_trips(echo_address, _enter_order_packet()[3:], rounds)))
        progress.step("net: connect + login per order")
        results.append(("connect + login per order", _connect_per_order(address, fresh_rounds)))
        progress.step("net: FIX bare TCP echo")
        fix_results = [("bare TCP echo of the same bytes (floor)",
                        _echo_round_trips(fix_echo_port, _new_order_single_bytes(), rounds))]
        progress.step("net: pooled FIX")
        fix_results.append(("pooled FIX 4.4 session, selector waits", _fix_pooled_round_trips(fix_address, rounds, "P")))
        progress.step("net: FIX connect + logon per order")
        fix_results.append(("connect + logon per order", _fix_connect_per_order(fix_address, fresh_rounds)))
    finally:
        if was_enabled:
            gc.enable()
        for proc in helpers:
            _stop(proc)
    progress.step("net: report")
    rows = []
    for quantile, group, group_results in (
            (50, "OUCH Enter Order -> Accepted round trip over loopback, p50", results),
            (99, "OUCH Enter Order -> Accepted round trip over loopback, p99", results),
            (50, "FIX 4.4 NewOrderSingle -> ExecutionReport round trip over loopback, p50", fix_results),
            (99, "FIX 4.4 NewOrderSingle -> ExecutionReport round trip over loopback, p99", fix_results)):
        for label, hist in group_results:
            rows.append(Row(group, label, hist.percentile(quantile) / 1000, "us",
                            note=f"{hist.count:,} round trips", extra={"p50_ns": hist.percentile(50),
                                                                         "p99_ns": hist.percentile(99),
                                                                         "count": hist.count}))
    return rows


if __name__ == "__main__":  # python -m lowlat._bench_net [--quick]
    from ._benchkit import format_table

    progress = Progress(STEPS)
    table = run("--quick" in sys.argv, progress)
    progress.close()
    print(format_table(table))
