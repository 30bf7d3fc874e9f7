"""lowlat.net: SoupBinTCP state machines byte by byte, then sessions and the pool over real TCP.

Every socket test talks to an in-process ExchangeSimulator on 127.0.0.1 and a free port; every wait
has a timeout, and every thread a test starts is joined with one.
"""

import glob
import struct
import threading
import time

import pytest

from lowlat.net import soupbintcp as soup

# ------------------------------------------------------------------------------------------------
# Byte-level helpers
# ------------------------------------------------------------------------------------------------


def splits(data):
    """Every way to deliver ``data``: whole, each two-piece split, and one byte at a time."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i:i + 1] for i in range(len(data))]


def feed(session, chunks, now=0.0):
    events = []
    for chunk in chunks:
        events.extend(session.receive_data(chunk, now))
    return events


def logged_in_pair(sequence=1, log=None, session="SESSION001"):
    """A client and server session after a completed login (no sockets)."""
    client = soup.SoupClient("user", "secret", sequence=sequence)
    server = soup.SoupServer()
    (request,) = server.receive_data(client.login(0.0), 0.0)
    log = log if log is not None else soup.SessionLog(session)
    events = client.receive_data(server.accept(log, request.sequence, 0.0), 0.0)
    assert isinstance(events[0], soup.LoginAccepted)
    return client, server, log, events[1:]


# ------------------------------------------------------------------------------------------------
# Wire format
# ------------------------------------------------------------------------------------------------


def test_login_request_bytes_follow_the_spec():
    client = soup.SoupClient("ab", "pw", session="S1", sequence=42)
    packet = client.login(0.0)
    payload = b"ab    " + b"pw        " + b"        S1" + b" " * 18 + b"42"
    assert packet == struct.pack(">H", 1 + 46) + b"L" + payload
    assert client.state is soup.SessionState.LOGIN_SENT


def test_server_packets_follow_the_spec():
    server = soup.SoupServer()
    server.receive_data(soup.SoupClient("u", "p").login(0.0), 0.0)
    log = soup.SessionLog("ABC")
    log.append(b"first")
    accepted = server.accept(log, 1, 0.0)
    expected = struct.pack(">H", 31) + b"A" + b"       ABC" + b" " * 19 + b"1" + struct.pack(">H", 6) + b"Sfirst"
    assert accepted == expected
    assert server.send_heartbeat(0.0) == b"\x00\x01H"
    assert server.send_sequenced(b"xy", 0.0) == b"\x00\x03Sxy"
    assert server.end_session(0.0) == b"\x00\x01Z"
    assert soup.encode_packet(b"R") == b"\x00\x01R"
    with pytest.raises(ValueError, match="payload"):
        soup.encode_packet(b"U", bytes(soup.MAX_PAYLOAD + 1))


@pytest.mark.parametrize("kwargs, name", [({"username": "toolong1"}, "username"),
                                          ({"password": "p" * 11}, "password"),
                                          ({"session": "s" * 11}, "session"),
                                          ({"sequence": -1}, "sequence"),
                                          ({"heartbeat_interval": 0}, "heartbeat_interval"),
                                          ({"timeout": 0}, "timeout")])
def test_client_arguments_are_checked(kwargs, name):
    args = {"username": "u", "password": "p", **kwargs}
    with pytest.raises(ValueError, match=name):
        soup.SoupClient(args.pop("username"), args.pop("password"), **args)


# ------------------------------------------------------------------------------------------------
# Client state machine, in every split
# ------------------------------------------------------------------------------------------------


def test_every_server_event_in_every_split():
    log = soup.SessionLog("SESSION001")
    log.append(b"old-1")
    log.append(b"old-2")
    server = soup.SoupServer()
    probe = soup.SoupClient("user", "secret", sequence=2)
    server.receive_data(probe.login(0.0), 0.0)
    stream = (server.accept(log, 2, 0.0) + soup.encode_packet(b"+", b"hello") + server.send_heartbeat(0.0)
              + server.send_sequenced(b"new-3", 0.0) + server.send_sequenced(b"", 0.0) + server.end_session(0.0))
    expected = [soup.LoginAccepted("SESSION001", 2), soup.SequencedData(2, b"old-2"), soup.Debug("hello"),
                soup.ServerHeartbeat(), soup.SequencedData(3, b"new-3"), soup.SequencedData(4, b""),
                soup.EndOfSession()]
    count = 0
    for chunks in splits(stream):
        client = soup.SoupClient("user", "secret", sequence=2)
        client.login(0.0)
        assert feed(client, chunks) == expected
        assert client.state is soup.SessionState.CLOSED and client.next_sequence == 5
        count += 1
    assert count == len(stream) + 1


def test_every_client_event_in_every_split():
    client, _, log, _ = logged_in_pair()
    login = soup.SoupClient("user", "secret", session="SESSION001", sequence=7).login(0.0)
    for chunks in splits(login):
        server = soup.SoupServer()
        assert feed(server, chunks) == [soup.LoginRequest("user", "secret", "SESSION001", 7)]
    stream = (client.send_unsequenced(b"order", 0.0) + client.send_heartbeat(0.0) + client.send_debug("dbg", 0.0)
              + client.send_unsequenced(b"", 0.0) + client.logout(0.0))
    expected = [soup.UnsequencedData(b"order"), soup.ClientHeartbeat(), soup.Debug("dbg"),
                soup.UnsequencedData(b""), soup.LogoutRequest()]
    for chunks in splits(stream):
        server = soup.SoupServer()
        server.receive_data(login, 0.0)
        server.accept(log, 0, 0.0)
        assert feed(server, chunks) == expected
        assert server.state is soup.SessionState.CLOSED
    server = soup.SoupServer()  # a client that does not wait for Login Accepted is refused
    with pytest.raises(soup.ProtocolError, match="unsequenced data while login sent"):
        server.receive_data(login + stream, 0.0)


def test_login_rejected_in_every_split():
    server = soup.SoupServer()
    server.receive_data(soup.SoupClient("u", "p").login(0.0), 0.0)
    stream = server.reject(soup.REJECT_NOT_AUTHORIZED, 0.0)
    for chunks in splits(stream):
        client = soup.SoupClient("u", "p")
        client.login(0.0)
        assert feed(client, chunks) == [soup.LoginRejected("A")]
        assert client.state is soup.SessionState.CLOSED
    with pytest.raises(ValueError, match="reason"):
        soup.SoupServer().reject("X", 0.0)


def test_reconnect_resumes_at_the_next_unreceived_sequence_number():
    client, server, log, _ = logged_in_pair()
    for i in range(3):
        feed(client, [server.send_sequenced(b"m%d" % i, 0.0)])
    assert client.next_sequence == 4 and client.session == "SESSION001"
    log.append(b"m3")  # sent while the client was away
    client.reset()
    request_bytes = client.login(1.0)
    second = soup.SoupServer()
    (request,) = second.receive_data(request_bytes, 1.0)
    assert request == soup.LoginRequest("user", "secret", "SESSION001", 4)
    events = feed(client, [second.accept(log, request.sequence, 1.0)])
    assert events == [soup.LoginAccepted("SESSION001", 4), soup.SequencedData(4, b"m3")]
    assert client.next_sequence == 5


def test_sequence_zero_asks_only_for_new_messages():
    log = soup.SessionLog("S")
    log.append(b"a")
    client, _, _, replayed = logged_in_pair(sequence=0, log=log)
    assert replayed == [] and client.next_sequence == 2


def test_login_accepted_at_another_number_is_a_gap():
    client = soup.SoupClient("u", "p", sequence=3)
    server = soup.SoupServer()
    server.receive_data(client.login(0.0), 0.0)
    log = soup.SessionLog("S")
    for _ in range(5):
        log.append(b"x")
    with pytest.raises(soup.SequenceGapError) as info:
        client.receive_data(server.accept(log, 4, 0.0, announce=4), 0.0)
    assert (info.value.expected, info.value.received) == (3, 4)
    assert client.state is soup.SessionState.CLOSED
    tolerant = soup.SoupClient("u", "p", sequence=3, allow_gap=True)
    server = soup.SoupServer()
    server.receive_data(tolerant.login(0.0), 0.0)
    assert tolerant.receive_data(server.accept(log, 4, 0.0, announce=4), 0.0)[0] == soup.LoginAccepted("S", 4)


def test_heartbeats_and_silence_follow_the_clock():
    client = soup.SoupClient("u", "p", heartbeat_interval=1.0, timeout=15.0)
    server = soup.SoupServer()
    server.receive_data(client.login(100.0), 100.0)
    client.receive_data(server.accept(soup.SessionLog("S"), 1, 100.0), 100.0)
    assert client.poll(100.5) == (b"", [])
    assert client.next_deadline() == 101.0
    assert client.poll(101.0) == (b"\x00\x01R", [])
    assert client.poll(101.5) == (b"", [])  # the heartbeat counts as sending
    client.receive_data(b"\x00\x01H", 110.0)  # the server heartbeat refreshes the silence timer
    assert client.poll(124.9)[1] == []
    out, events = client.poll(125.5)
    assert out == b"" and len(events) == 1 and events[0].silent_for == pytest.approx(15.5)
    assert client.state is soup.SessionState.CLOSED
    # the server side: heartbeats when idle, a silent client times out
    assert server.poll(101.0) == (b"\x00\x01H", [])
    assert server.poll(130.0)[1][0].silent_for == pytest.approx(30.0)


def test_a_silent_server_times_out_a_pending_login():
    client = soup.SoupClient("u", "p", timeout=2.0)
    client.login(0.0)
    assert client.poll(1.0) == (b"", [])
    assert isinstance(client.poll(2.5)[1][0], soup.HeartbeatTimeout)


@pytest.mark.parametrize("garbage", [b"\x00\x00", b"\x00\x05Xjunk", b"\x00\x02H!", b"\x00\x02Lx"])
def test_garbage_is_a_protocol_error_that_keeps_earlier_events(garbage):
    client, server, _, _ = logged_in_pair()
    good = server.send_sequenced(b"ack", 0.0)
    with pytest.raises(soup.ProtocolError) as info:
        client.receive_data(good + garbage, 0.0)
    assert info.value.events == [soup.SequencedData(1, b"ack")]


def test_packets_out_of_state_are_protocol_errors():
    client = soup.SoupClient("u", "p")
    with pytest.raises(soup.ProtocolError, match="sequenced data while idle"):
        client.receive_data(b"\x00\x02Sx", 0.0)
    with pytest.raises(RuntimeError, match="send data"):
        client.send_unsequenced(b"x", 0.0)
    server = soup.SoupServer()
    with pytest.raises(soup.ProtocolError, match="unsequenced data while idle"):
        server.receive_data(b"\x00\x02Ux", 0.0)
    client, server, _, _ = logged_in_pair()
    with pytest.raises(soup.ProtocolError, match="login request while active"):
        server.receive_data(soup.SoupClient("u", "p").login(0.0), 0.0)
    with pytest.raises(soup.ProtocolError, match="login accepted while active"):
        client.receive_data(b"\x00\x1fA" + b" " * 10 + b"1".rjust(20), 0.0)
    with pytest.raises(RuntimeError, match="reset"):
        client.login(0.0)


def test_a_bad_numeric_field_is_a_protocol_error():
    client = soup.SoupClient("u", "p")
    client.login(0.0)
    with pytest.raises(soup.ProtocolError, match="sequence"):
        client.receive_data(b"\x00\x1fA" + b"S".rjust(10) + b"12x".rjust(20), 0.0)


# ------------------------------------------------------------------------------------------------
# Over TCP: the socket layer
# ------------------------------------------------------------------------------------------------

import socket  # noqa: E402

from lowlat import PoolExhausted  # noqa: E402
from lowlat.exchange import ExchangeSimulator  # noqa: E402
from lowlat.exchange.ouch_book import OuchExchange  # noqa: E402
from lowlat.net import ConnectionLost, SoupConnection  # noqa: E402
from lowlat.net.ouch import OuchSession  # noqa: E402
from lowlat.net.pool import ConnectionPool  # noqa: E402

FAST = {"heartbeat_interval": 0.05, "timeout": 1.0, "connect_timeout": 2.0}


@pytest.fixture
def echo():
    sim = ExchangeSimulator(heartbeat_interval=0.05, timeout=2.0).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def exchange():
    sim = ExchangeSimulator(application=OuchExchange(), heartbeat_interval=0.05, timeout=2.0).start()
    try:
        yield sim
    finally:
        sim.stop()


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize("busy_poll", [False, True], ids=["selector", "busy-poll"])
def test_soup_connection_round_trips_and_stays_alive_when_idle(echo, busy_poll):
    conn = SoupConnection(echo.address, "user", "pw", busy_poll=busy_poll, **FAST)
    accepted = conn.connect()
    assert accepted == soup.LoginAccepted(echo.session, 1)
    assert conn.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert conn.transport.busy_poll is busy_poll
    for i in range(20):
        conn.send(b"msg %d" % i)
        assert conn.receive(2.0) == soup.SequencedData(i + 1, b"msg %d" % i)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # longer than both sides' timeouts: heartbeats keep it up
        assert conn.receive(0.1) is None
    assert conn.alive and time.monotonic() - conn.last_heartbeat < 0.5
    heartbeats = [r for r in echo.received if isinstance(r.event, soup.ClientHeartbeat)]
    assert len(heartbeats) >= 10
    conn.logout()
    assert not conn.alive
    assert wait_until(lambda: echo.connected() == [])


def test_reconnect_resumes_the_sequence_over_tcp(echo):
    conn = SoupConnection(echo.address, "user", "pw", **FAST)
    conn.connect()
    for i in range(3):
        conn.send(b"%d" % i)
        conn.receive(2.0)
    echo.disconnect("user")
    with pytest.raises(ConnectionLost):
        conn.receive(2.0)
    echo.send("user", b"while away")
    assert wait_until(lambda: echo.logs["user"].next_sequence == 5)
    assert conn.connect() == soup.LoginAccepted(echo.session, 4)
    assert conn.receive(2.0) == soup.SequencedData(4, b"while away")
    assert conn.connects == 2
    conn.close()


def test_sends_from_many_threads_never_interleave(echo):
    conn = SoupConnection(echo.address, "user", "pw", **FAST)
    conn.connect()
    threads, per_thread = 4, 200
    errors = []

    def sender(k):
        try:
            for i in range(per_thread):
                conn.send(bytes([65 + k]) * (1 + (i * 37 + k) % 3000))  # sizes up to 3 KB
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert not any(w.is_alive() for w in workers) and errors == []
    assert wait_until(lambda: sum(isinstance(r.event, soup.UnsequencedData) for r in echo.received)
                      == threads * per_thread, 10)
    for record in echo.received:
        if isinstance(record.event, soup.UnsequencedData):
            payload = record.event.payload
            assert payload == payload[:1] * len(payload)  # one thread's bytes only
    conn.close()


def test_a_connection_refused_is_an_os_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        SoupConnection(("127.0.0.1", port), "u", "p", connect_timeout=1).connect()


# ------------------------------------------------------------------------------------------------
# ConnectionPool
# ------------------------------------------------------------------------------------------------


def ouch_factory(sim, prefix="u"):
    counter = iter(range(1000))
    return lambda: OuchSession(sim.address, f"{prefix}{next(counter)}", "pw", **FAST)


def test_pool_connects_up_front_and_checks_out_with_a_context_manager(exchange):
    with ConnectionPool(ouch_factory(exchange), 3, service_interval=0.02) as pool:
        assert exchange.connected() == ["u0", "u1", "u2"]
        health = pool.health()
        assert (health.size, health.up, health.idle, health.in_use, health.down) == (3, 3, 3, 0, 0)
        with pool.session() as s:
            assert pool.health().in_use == 1
            s.enter_order("T1", "B", 10, "AAPL", 10000)
            assert s.wait_for("T1", "A", timeout=2)["order_token"] == "T1"
        assert pool.health().idle == 3
        time.sleep(0.3)  # the maintenance thread keeps idle sessions heartbeating
        assert time.monotonic() - pool.health().last_heartbeat < 0.25
    assert wait_until(lambda: exchange.connected() == [])
    with pytest.raises(RuntimeError, match="closed"):
        pool.acquire()


def test_pool_exhaustion_waits_then_raises(exchange):
    with ConnectionPool(ouch_factory(exchange), 2, checkout_timeout=0.2) as pool:
        a, b = pool.acquire(), pool.acquire()
        started = time.monotonic()
        with pytest.raises(PoolExhausted, match="2 in use"):
            pool.acquire()
        assert 0.19 <= time.monotonic() - started < 1.5
        threading.Timer(0.1, pool.release, args=(a,)).start()
        assert pool.acquire(timeout=2) is a  # a waiter gets the session given back
        with pytest.raises(ValueError, match="not checked out"):
            pool.release(OuchSession(exchange.address, "x", "pw"))
        pool.release(a)
        with pytest.raises(ValueError, match="not checked out"):
            pool.release(a)
        pool.release(b)


def test_pool_grows_to_max_size(exchange):
    with ConnectionPool(ouch_factory(exchange), 1, max_size=2, checkout_timeout=0.1) as pool:
        a, b = pool.acquire(), pool.acquire()
        assert a is not b and b.alive and pool.health().size == 2
        with pytest.raises(PoolExhausted):
            pool.acquire()
        pool.release(a)
        pool.release(b)
    with pytest.raises(ValueError, match="max_size"):
        ConnectionPool(ouch_factory(exchange), 2, max_size=1)
    with pytest.raises(ValueError, match="size"):
        ConnectionPool(ouch_factory(exchange), 0)


def test_pool_replaces_a_dead_idle_session_in_the_background(exchange):
    with ConnectionPool(ouch_factory(exchange), 2, service_interval=0.02, backoff=0.02) as pool:
        exchange.disconnect("u0")
        assert wait_until(lambda: pool.health().reconnects == 1 and pool.health().up == 2)
        health = pool.health()
        assert (health.failures, health.down) == (1, 0)
        assert wait_until(lambda: exchange.connected() == ["u0", "u1"])
        with pool.session() as s0, pool.session() as s1:  # both sessions work again
            for s in (s0, s1):
                s.enter_order("T1", "B", 1, "AAPL", 10000)
                assert s.wait_for("T1", "A", timeout=2)["order_token"] == "T1"


def test_pool_reports_orders_a_dead_session_never_had_answered(exchange):
    lost_seen = []
    with ConnectionPool(ouch_factory(exchange), 1, service_interval=0.02, backoff=0.02,
                        on_lost=lost_seen.append) as pool:
        exchange.misbehave(ack_delay=0.5)
        with pool.session() as s:
            s.enter_order("L1", "B", 1, "AAPL", 10000)
            s.enter_order("L2", "B", 1, "AAPL", 10000)
            exchange.disconnect(s.username)
            with pytest.raises(ConnectionLost) as info:
                s.wait_for("L2", "A", timeout=2)
            assert [p.token for p in info.value.unacknowledged] == ["L1", "L2"]
        lost = pool.take_lost_orders()
        assert len(lost) == 1 and [p.token for p in lost[0].orders] == ["L1", "L2"]
        assert lost_seen == lost and pool.take_lost_orders() == []
        exchange.behave()
        assert wait_until(lambda: pool.health().reconnects == 1)


def test_pool_backs_off_while_the_exchange_is_down():
    sim = ExchangeSimulator(application=OuchExchange(), heartbeat_interval=0.05).start()
    pool = ConnectionPool(ouch_factory(sim), 2, service_interval=0.02, backoff=0.05, max_backoff=0.2,
                          checkout_timeout=0.1)
    try:
        sim.stop()
        assert wait_until(lambda: pool.health().down == 2)
        time.sleep(0.6)
        health = pool.health()
        assert health.up == 0 and health.reconnects == 0 and health.last_heartbeat is None
        attempts = [slot.attempts for slot in pool._slots]
        assert all(2 <= a <= 8 for a in attempts), attempts  # 0.05, 0.1, 0.2, 0.2 ... not a spin
        assert all(isinstance(slot.last_error, OSError) for slot in pool._slots)
        with pytest.raises(PoolExhausted, match="2 reconnecting"):
            pool.acquire()
    finally:
        pool.close()


def test_concurrent_checkout_from_threads(exchange):
    holders, lock, errors = set(), threading.Lock(), []
    rounds, threads = 25, 6

    def worker(k):
        try:
            for i in range(rounds):
                with pool.session(timeout=10) as s:
                    with lock:
                        assert s not in holders, "one session checked out twice"
                        holders.add(s)
                    token = f"W{k}-{i}"
                    s.enter_order(token, "B", 1, "AAPL", 10000)
                    s.wait_for(token, "A", timeout=5)
                    with lock:
                        holders.discard(s)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    with ConnectionPool(ouch_factory(exchange), 3, service_interval=0.02) as pool:
        workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not any(w.is_alive() for w in workers)
        assert errors == []
        health = pool.health()
        assert (health.up, health.idle, health.failures) == (3, 3, 0)
        accepted = sum(1 for r in exchange.received if isinstance(r.event, soup.UnsequencedData))
        assert accepted == rounds * threads


# ------------------------------------------------------------------------------------------------
# FIX session state machine (no sockets)
# ------------------------------------------------------------------------------------------------

from lowlat import fix  # noqa: E402
from lowlat.net import fix_session as fs  # noqa: E402

WALL = 1_764_000_000_000_000_000  # a fixed SendingTime: the bytes are the same every run


def fix_pair(begin=fix.FIX44, interval=1.0):
    client = fs.FixSession("CLIENT", "EXCH", begin, heartbeat_interval=interval, wall_clock_ns=lambda: WALL)
    server = fs.FixSession("EXCH", "CLIENT", begin, heartbeat_interval=interval, initiator=False,
                           wall_clock_ns=lambda: WALL)
    return client, server


def fix_logged_on(begin=fix.FIX44, interval=1.0):
    client, server = fix_pair(begin, interval)
    server.receive_data(client.logon(0.0), 0.0)
    client.receive_data(server.data_to_send(), 0.0)
    assert client.state is server.state is fs.FixState.ACTIVE
    return client, server


def fix_frame(begin, body):
    """A FIX message with a correct BodyLength and CheckSum around ``body`` (tag=value fields)."""
    head = b"8=%s\x019=%d\x01" % (begin.encode(), len(body))
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def order(session, now, token="O1"):
    return session.send("new_order_single", now, token, "AAPL", fix.Side.BUY, 100, fix.OrdType.LIMIT, 1_000_000)


@pytest.mark.parametrize("begin", [fix.FIX42, fix.FIX44])
def test_fix_logon_and_order_in_every_split(begin):
    client, server = fix_pair(begin)
    logon = client.logon(0.0)
    for chunks in splits(logon):
        acceptor = fs.FixSession("EXCH", "CLIENT", begin, heartbeat_interval=1.0, initiator=False,
                                 wall_clock_ns=lambda: WALL)
        assert feed(acceptor, chunks) == [fs.LoggedOn(1, 1)]
    server.receive_data(logon, 0.0)
    answer = server.data_to_send()
    assert b"\x0135=A\x01" in answer and b"\x01108=1\x01" in answer
    stream = answer + server.send("execution_report", 0.0, "X1", "E1", fix.ExecType.NEW, fix.OrdStatus.NEW, "AAPL",
                                  fix.Side.BUY, 100, 0, 0, cl_ord_id="O1")
    for chunks in splits(stream):
        initiator = fs.FixSession("CLIENT", "EXCH", begin, heartbeat_interval=1.0, wall_clock_ns=lambda: WALL)
        initiator.logon(0.0)
        events = feed(initiator, chunks)
        assert [type(e) for e in events] == [fs.LoggedOn, fs.AppMessage]
        assert events[1].msg_type == "8" and events[1].get(11) == "O1" and events[1].seq_num == 2
        assert initiator.next_in == 3 and initiator.data_to_send() == b""


def test_fix_heartbeats_test_requests_and_timeout():
    client, server = fix_logged_on(interval=1.0)
    assert client.poll(0.5) == (b"", [])
    out, _ = client.poll(1.0)
    assert b"\x0135=0\x01" in out  # nothing sent for an interval: Heartbeat
    assert server.receive_data(out, 1.0) == [fs.Heartbeat(None)]
    out, _ = client.poll(1.2)
    assert b"\x0135=1\x01" in out and b"112=TEST1" in out  # nothing received for 1.2 intervals: TestRequest
    events = server.receive_data(out, 1.2)
    assert events == [fs.TestRequest("TEST1")]
    reply = server.data_to_send()
    assert b"\x0135=0\x01" in reply and b"112=TEST1" in reply
    assert client.receive_data(reply, 1.3) == [fs.Heartbeat("TEST1")]
    assert client.poll(2.0)[1] == []  # answered: no timeout
    out, _ = client.poll(2.6)  # silent again: a second TestRequest, then the timeout
    assert b"112=TEST2" in out
    _, events = client.poll(3.7)
    assert isinstance(events[0], fs.HeartbeatTimeout) and client.state is fs.FixState.CLOSED


def test_fix_gap_is_answered_with_a_resend_request_and_filled_in_order():
    client, server = fix_logged_on()
    lost_admin = server.heartbeat(0.0)  # seq 2, an admin message: gap-filled, never re-sent
    reports = [server.send("execution_report", 0.0, "X%d" % i, "E%d" % i, fix.ExecType.NEW, fix.OrdStatus.NEW,
                           "AAPL", fix.Side.BUY, 100, 0, 0, cl_ord_id="O%d" % i) for i in range(4)]  # seq 3..6
    assert lost_admin
    stream = reports[2] + reports[3]  # 2, 3 and 4 are lost in transit
    for chunks in splits(stream):
        c = fs.FixSession("CLIENT", "EXCH", heartbeat_interval=1.0, next_in=2, wall_clock_ns=lambda: WALL)
        c.state = fs.FixState.ACTIVE
        assert feed(c, chunks) == [fs.GapDetected(2, 5)]
        request = c.data_to_send()
        assert b"\x0135=2\x01" in request and b"\x017=2\x01" in request and b"\x0116=0\x01" in request
    assert client.receive_data(stream, 0.1) == [fs.GapDetected(2, 5)]
    assert server.receive_data(client.data_to_send(), 0.1) == [fs.ResendRequested(2, 0)]
    resent = server.data_to_send()
    # a gap fill for the heartbeat (34=2 -> 36=3), then reports 3..6 again as possible duplicates
    assert resent.count(b"\x0135=4\x01") == 1 and b"\x0134=2\x01" in resent and b"\x0136=3\x01" in resent
    assert resent.count(b"\x0143=Y\x01") == 5 and resent.count(b"\x01122=") == 5  # gap fill + 4 reports
    for chunks in splits(resent):
        c = fs.FixSession("CLIENT", "EXCH", heartbeat_interval=1.0, next_in=2, wall_clock_ns=lambda: WALL)
        c.state = fs.FixState.ACTIVE
        feed(c, [stream])
        c.data_to_send()
        events = feed(c, chunks)
        assert events[0] == fs.SequenceReset(3, True)
        assert [e.get(11) for e in events[1:]] == ["O0", "O1", "O2", "O3"]  # each once, in order
        assert c.next_in == 7 and c._queued == {}


def test_fix_resend_of_admin_only_is_one_gap_fill():
    client, server = fix_logged_on()
    server.receive_data(client.heartbeat(0.0), 0.0)
    assert server.receive_data(client._encode("resend_request", 0.0, 1, 0), 0.0) == [fs.ResendRequested(1, 0)]
    fill = server.data_to_send()
    assert fill.count(b"8=FIX") == 1 and b"\x01123=Y\x01" in fill and b"\x0136=2\x01" in fill


def test_fix_gap_filled_by_resent_messages_delivers_everything_once():
    client, server = fix_logged_on()
    reports = [server.send("execution_report", 0.0, "X%d" % i, "E%d" % i, fix.ExecType.NEW, fix.OrdStatus.NEW,
                           "AAPL", fix.Side.BUY, 100, 0, 0, cl_ord_id="O%d" % i) for i in range(3)]
    assert client.receive_data(reports[1] + reports[2], 0.1) == [fs.GapDetected(2, 3)]
    events = client.receive_data(reports[0], 0.2)  # the resend arrives
    assert [e.get(11) for e in events] == ["O0", "O1", "O2"]
    assert client.next_in == 5 and client._resend_pending is False


def test_fix_sequence_too_low_is_fatal_unless_possible_duplicate():
    client, server = fix_logged_on()
    low = fix_frame(fix.FIX44, b"35=0\x0149=EXCH\x0156=CLIENT\x0134=1\x0152=20251124-16:00:00.000\x01")
    dup = fix_frame(fix.FIX44, b"35=0\x0149=EXCH\x0156=CLIENT\x0134=1\x0143=Y\x0152=20251124-16:00:00.000\x01")
    assert client.receive_data(dup, 0.1) == [] and client.state is fs.FixState.ACTIVE
    events = client.receive_data(low, 0.1)
    assert isinstance(events[0], fs.SessionError) and "too low" in events[0].text
    assert client.state is fs.FixState.CLOSED and b"\x0135=5\x01" in client.data_to_send()


def test_fix_malformed_message_is_rejected_without_dropping_the_session():
    client, server = fix_logged_on()
    missing_symbol = fix_frame(fix.FIX44, b"35=D\x0149=CLIENT\x0156=EXCH\x0134=2\x0152=20251124-16:00:00.000\x01"
                               b"11=O1\x0154=1\x0160=20251124-16:00:00.000\x0138=100\x0140=2\x0144=100\x01")
    good = order(client, 0.0)  # numbered 2 too: re-number it as 3
    good = fix_frame(fix.FIX44, good[good.index(b"35="):good.rindex(b"10=")].replace(b"\x0134=2\x01", b"\x0134=3\x01"))
    bad_checksum = good[:-4] + b"000\x01"
    stream = missing_symbol + bad_checksum + good
    for chunks in splits(stream):
        s = fs.FixSession("EXCH", "CLIENT", initiator=False, heartbeat_interval=1.0, next_in=2,
                          wall_clock_ns=lambda: WALL)
        s.state = fs.FixState.ACTIVE
        events = feed(s, chunks)
        assert [type(e) for e in events] == [fs.MalformedMessage, fs.MalformedMessage, fs.AppMessage]
        assert events[0].rejected and events[0].error.reason == fix.Reason.MISSING_TAG
        assert not events[1].rejected and events[1].error.reason == fix.Reason.CHECKSUM  # garbled: ignored
        assert events[2].get(11) == "O1" and s.state is fs.FixState.ACTIVE and s.next_in == 4
        reject = s.data_to_send()
        assert b"\x0135=3\x01" in reject and b"\x0145=2\x01" in reject and b"\x01373=1\x01" in reject
        assert b"\x01371=55\x01" in reject


def test_fix_logout_handshake():
    client, server = fix_logged_on()
    bye = client.logout(0.5, "done")
    assert client.state is fs.FixState.LOGOUT_SENT
    assert server.receive_data(bye, 0.5) == [fs.LoggedOut("done")]
    assert server.state is fs.FixState.CLOSED
    assert client.receive_data(server.data_to_send(), 0.6) == [fs.LoggedOut("")]
    assert client.state is fs.FixState.CLOSED


def test_fix_first_message_must_be_a_logon():
    _, server = fix_pair()
    client, _ = fix_logged_on()
    events = server.receive_data(order(client, 0.0), 0.0)
    assert isinstance(events[0], fs.SessionError) and server.state is fs.FixState.CLOSED


def test_pool_of_fix_sessions_from_threads():
    from lowlat.net.fix_orders import FixOrderSession

    sim = ExchangeSimulator(application=OuchExchange(), heartbeat_interval=0.2, fix_port=0).start()
    names = iter(range(100))
    errors = []

    def worker(k):
        try:
            for i in range(10):
                with pool.session(timeout=10) as s:
                    s.new_order_single(f"W{k}-{i}", "AAPL", fix.Side.BUY, 1, 10000)
                    s.wait_for(f"W{k}-{i}", fix.ExecType.NEW, timeout=5)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    try:
        with ConnectionPool(lambda: FixOrderSession(sim.fix_address, f"F{next(names)}", heartbeat_interval=0.2),
                            2, service_interval=0.02, backoff=0.02) as pool:
            workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(30)
            assert not any(w.is_alive() for w in workers) and errors == []
            sim.disconnect("F0")  # a dead FIX session is replaced: its numbers continue
            assert wait_until(lambda: pool.health().reconnects == 1 and pool.health().up == 2)
            with pool.session() as a, pool.session() as b:
                for s in (a, b):
                    s.new_order_single("LAST", "AAPL", fix.Side.BUY, 1, 10000)
                    s.wait_for("LAST", fix.ExecType.NEW, timeout=5)
    finally:
        sim.stop()


def test_fix_both_sides_with_a_gap_recover_without_waiting_for_each_other():
    client, server = fix_logged_on()
    client.heartbeat(0.0)  # lost: the server will see a gap
    report = server.send("execution_report", 0.0, "X1", "E1", fix.ExecType.NEW, fix.OrdStatus.NEW, "AAPL",
                         fix.Side.BUY, 100, 0, 0, cl_ord_id="O1")
    assert report
    server.heartbeat(0.0)  # lost too: so the client sees a gap
    client.reset_connection()
    server.reset_connection()
    assert server.receive_data(client.logon(1.0), 1.0) == [fs.LoggedOn(1, 3), fs.GapDetected(2, 3)]
    to_client = server.data_to_send()  # Logon (4) + ResendRequest (5)
    events = client.receive_data(to_client, 1.0)
    assert events[:2] == [fs.LoggedOn(1, 4), fs.GapDetected(2, 4)] and isinstance(events[2], fs.ResendRequested)
    to_server = client.data_to_send()  # its ResendRequest + the answer to the server's
    events = server.receive_data(to_server, 1.0)
    assert any(isinstance(e, fs.ResendRequested) for e in events)
    events = client.receive_data(server.data_to_send(), 1.1)
    assert [e.get(11) for e in events if isinstance(e, fs.AppMessage)] == ["O1"]
    assert client._queued == {} and server._queued == {}
    assert (client.next_in, server.next_in) == (server.next_out, client.next_out)


# ------------------------------------------------------------------------------------------------
# The socket layer's waits: deadlines, a close from another thread, a peer that does not read
# ------------------------------------------------------------------------------------------------

from lowlat.net import Transport  # noqa: E402
from lowlat.net.connection import connect_tcp  # noqa: E402


@pytest.fixture
def tcp_pair():
    """A connected loopback pair: (client socket for a Transport, the server's end)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = connect_tcp(listener.getsockname()[:2], 2.0)
    server, _ = listener.accept()
    listener.close()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("busy_poll", [False, True], ids=["selector", "busy-poll"])
def test_transport_receive_returns_bytes_or_none_at_the_deadline(tcp_pair, busy_poll):
    client, server = tcp_pair
    transport = Transport(client, busy_poll=busy_poll)
    for wait in (0.0, 0.05, 0.3, 0.05):  # shorter after longer: the kernel timeout must follow the deadline down
        start = time.monotonic()
        assert transport.receive(start + wait) is None
        elapsed = time.monotonic() - start
        assert wait <= elapsed < wait + 0.2
    server.sendall(b"abc")
    assert transport.receive(time.monotonic() + 2.0) == b"abc"
    server.sendall(b"def")
    time.sleep(0.05)
    assert transport.receive(time.monotonic() - 1.0) == b"def"  # a past deadline still reads what is there
    server.close()
    with pytest.raises(ConnectionLost, match="closed by the peer"):
        transport.receive(time.monotonic() + 2.0)
    transport.close()


def test_transport_close_from_another_thread_ends_a_blocked_receive(tcp_pair):
    client, _server = tcp_pair
    transport = Transport(client)
    outcome = []

    def reader():
        try:
            outcome.append(transport.receive(time.monotonic() + 10.0))
        except ConnectionLost as error:
            outcome.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.1)
    start = time.monotonic()
    transport.close()
    thread.join(5.0)
    assert not thread.is_alive()
    assert time.monotonic() - start < 0.2  # at once, not when the kernel's receive timeout next expires
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLost)


@pytest.mark.parametrize("busy_poll", [False, True], ids=["selector", "busy-poll"])
def test_transport_send_to_a_peer_that_does_not_read_times_out(tcp_pair, busy_poll):
    client, _server = tcp_pair  # the server never reads: its window and our send buffer fill up
    transport = Transport(client, busy_poll=busy_poll)
    start = time.monotonic()
    with pytest.raises(ConnectionLost, match="send timed out"):
        transport.send(b"x" * (64 << 20), timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 3.0
    transport.close()


def test_soup_client_parses_whole_packets_and_keeps_a_split_tail():
    client = soup.SoupClient("user", "pw")
    client.login(0.0)
    accepted = soup.encode_packet(b"A", b"SESSION1".rjust(10) + b"1".rjust(20))
    data = [b"first", b"second", b"third message"]
    packets = b"".join(soup.encode_packet(b"S", d) for d in data)
    cut = len(packets) - 4
    events = client.receive_data(accepted + packets[:cut], 1.0)
    assert events == [soup.LoginAccepted("SESSION1", 1), soup.SequencedData(1, b"first"), soup.SequencedData(2, b"second")]
    assert client.partial == cut - len(soup.encode_packet(b"S", b"first")) - len(soup.encode_packet(b"S", b"second"))
    assert client.receive_data(packets[cut:], 2.0) == [soup.SequencedData(3, b"third message")]
    assert client.partial == 0
    with pytest.raises(soup.ProtocolError) as caught:
        client.receive_data(soup.encode_packet(b"S", b"fourth") + b"\x00\x05Xjunk", 3.0)
    assert caught.value.events == [soup.SequencedData(4, b"fourth")]
    assert client.partial == 7  # the bad packet stays where the reader stopped
