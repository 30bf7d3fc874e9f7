"""lowlat.wire: an OUCH session's order path on its socket, both halves, over real loopback TCP.

The pure half is the layered path of lowlat.net; the compiled half reads and writes the socket
itself and hands every read that is not the simple case to the layers. Each test runs an
``OuchSession`` whose ``send_order``/``wait_for`` come from one backend, against an in-process
``ExchangeSimulator`` on 127.0.0.1; every wait has a timeout.
"""

import inspect
import socket
import struct
import threading
import time

import pytest

from conftest import load_backend
from test_exchange import session
from test_net import exchange, ouch_factory, wait_until  # noqa: F401 (exchange: the simulator fixture)
import lowlat.wire
from lowlat import ouch
from lowlat.net import ConnectionLost, ConnectionPool, PoolExhausted, ProtocolError
from lowlat.net import pool as pool_module
from lowlat.net import ouch as ouch_session
from lowlat.net import soupbintcp as soup
from lowlat.net.connection import Transport, connect_tcp
from lowlat.net.ouch import TIF_SYSTEM_HOURS, OuchSession, price_to_int

PRICE = price_to_int("10.00")


@pytest.fixture
def wire(backend_name, monkeypatch):
    """OuchSession's order path from one backend."""
    module = load_backend(backend_name, "lowlat.wire")
    monkeypatch.setattr(ouch_session, "_send_order", module.send_order)
    monkeypatch.setattr(OuchSession, "enter_order", module.enter_order)
    monkeypatch.setattr(OuchSession, "wait_for", module.wait_for)
    return module


def test_both_halves_take_the_same_arguments_as_the_session_methods():
    compiled, pure = load_backend("cython", "lowlat.wire"), load_backend("python", "lowlat.wire")
    def bare(function):  # the parameters, their kinds and defaults; annotations are the stub's business
        signature = inspect.signature(function)
        return [(p.name, p.kind, p.default) for p in signature.parameters.values()]

    for name in ("enter_order", "send_order", "wait_for"):
        assert bare(getattr(compiled, name)) == bare(getattr(pure, name)), name
        assert inspect.getdoc(getattr(compiled, name)) == inspect.getdoc(getattr(pure, name)), name
    assert inspect.signature(pure.enter_order).parameters["time_in_force"].default == TIF_SYSTEM_HOURS
    assert OuchSession.enter_order is lowlat.wire.enter_order and OuchSession.wait_for is lowlat.wire.wait_for


def answered_in_one_read(sim, s, tokens):
    """Send an order per token and wait until all their answers sit in the socket together."""
    for token in tokens:
        s.enter_order(token, "B", 100, "WIRE", PRICE)
    deadline = time.monotonic() + 2.0
    sock = s.connection.transport.sock
    while time.monotonic() < deadline:
        try:
            waiting = len(sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            waiting = 0
        if waiting >= len(tokens) * 68:  # one Accepted is 66 bytes of OUCH, 3 of framing
            return
        time.sleep(0.005)
    raise AssertionError("the answers did not arrive")


@pytest.mark.parametrize("busy_poll", [False, True], ids=["selector", "busy-poll"])
def test_an_order_is_pending_until_its_answer_arrives(wire, exchange, busy_poll):
    s = session(exchange, busy_poll=busy_poll)
    for i in range(50):
        s.enter_order(f"T{i}", "B", 100 + i, "WIRE", PRICE)
        assert [p.token for p in s.unacknowledged()] == [f"T{i}"]
        accepted = s.wait_for(f"T{i}", "A", timeout=2)
        assert (accepted["type"], accepted["order_token"], accepted["shares"]) == ("A", f"T{i}", 100 + i)
        assert s.unacknowledged() == []
    assert s.connection.client.next_sequence == 51  # every answer counted once
    assert [r.event.payload[1:15].decode().strip() for r in exchange.received
            if r.event.__class__ is soup.UnsequencedData] == [f"T{i}" for i in range(50)]
    s.logout()


def test_answers_in_one_read_land_where_the_layers_put_them(wire, exchange):
    s = session(exchange)
    answered_in_one_read(exchange, s, ["A1", "A2", "A3"])
    assert s.wait_for("A2", "A", timeout=2)["order_token"] == "A2"
    # before the answer: decoded and kept for receive; after it: still in the inbox, numbered
    assert [m["order_token"] for m in s.messages] == ["A1"]
    assert [(d.sequence, d.payload[0:1]) for d in s.connection.inbox] == [(3, b"A")]
    assert s.connection.client.next_sequence == 4
    assert [p.token for p in s.unacknowledged()] == ["A3"]  # answered, not yet read
    assert s.wait_for("A3", "A", timeout=2)["order_token"] == "A3"
    assert s.receive(timeout=1)["order_token"] == "A1"
    assert s.unacknowledged() == []
    s.logout()


def test_a_wait_that_ends_without_its_answer_says_so(wire, exchange):
    s = session(exchange)
    s.enter_order("Q1", "B", 100, "WIRE", PRICE)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no 'C' answer for token 'Q1' in 0.3 s"):
        s.wait_for("Q1", "C", timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 1.5
    assert s.receive(timeout=1)["type"] == "A"  # the Accepted read meanwhile is kept
    s.logout()


def test_heartbeats_go_out_while_a_wait_goes_on(wire, exchange):
    s = session(exchange, heartbeat_interval=0.05)
    before = sum(r.event.__class__ is soup.ClientHeartbeat for r in exchange.received)
    with pytest.raises(TimeoutError):
        s.wait_for("NEVER", "A", timeout=0.5)
    beats = sum(r.event.__class__ is soup.ClientHeartbeat for r in exchange.received) - before
    assert beats >= 4  # one each 0.05 s, at the least several
    assert s.alive
    s.logout()


def test_a_connection_lost_mid_answer_reports_what_was_not_answered(wire, exchange):
    s = session(exchange)
    exchange.misbehave(drop_mid_message=True)
    s.enter_order("D1", "B", 100, "WIRE", PRICE)
    with pytest.raises(ConnectionLost) as lost:
        s.wait_for("D1", "A", timeout=2)
    assert lost.value.partial > 0
    assert [(p.kind, p.token) for p in lost.value.unacknowledged] == [("O", "D1")]
    assert not s.alive
    s.connect()  # the resumed login replays the answer, which clears it
    assert s.unacknowledged() == []
    s.logout()


def test_garbage_from_the_exchange_is_a_protocol_error(wire, exchange):
    s = session(exchange)
    exchange.misbehave(garbage=True)
    s.enter_order("G1", "B", 100, "WIRE", PRICE)
    with pytest.raises(ProtocolError):
        s.wait_for("G1", "A", timeout=2)
    assert not s.alive


def test_a_send_on_a_dead_connection_reports_the_order_unacknowledged(wire, exchange):
    s = session(exchange)
    s.close()
    with pytest.raises(ConnectionLost, match="not connected") as lost:
        s.enter_order("X1", "B", 100, "WIRE", PRICE)
    assert [p.token for p in lost.value.unacknowledged] == ["X1"]


def test_a_close_from_another_thread_ends_a_waiting_wait_for(wire, exchange):
    s = session(exchange)
    outcome = []

    def waiter():
        try:
            outcome.append(s.wait_for("NEVER", "A", timeout=10))
        except (ConnectionLost, TimeoutError) as error:
            outcome.append(error)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    s.close()
    thread.join(5.0)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLost)


def test_a_send_that_fills_the_socket_finishes_whole_and_in_order(wire):
    """A peer that reads late: sends block part-way and are completed, packets never cut or mixed."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sock = connect_tcp(listener.getsockname()[:2], 2.0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer, _ = listener.accept()
    listener.close()
    s = OuchSession(("127.0.0.1", 9), "alice", "pw")  # never connected: its connection gets this socket
    s.connection.transport = Transport(sock)
    s.connection.client.state = soup.SessionState.ACTIVE
    count = 3000
    expected = 0
    received = bytearray()

    def reader():
        time.sleep(0.2)
        peer.settimeout(5.0)
        while len(received) < expected:
            chunk = peer.recv(65536)
            if not chunk:
                break
            received.extend(chunk)

    buffer = bytearray(ouch.MESSAGES["enter_order"].length)
    packets = []
    for i in range(count):  # as OuchSession.enter_order encodes it, framed as Unsequenced Data
        ouch.encode_enter_order(buffer, 0, f"F{i}", "B", 100, "WIRE", PRICE, TIF_SYSTEM_HOURS, "", "Y", "A", "N", 0,
                                "N", " ")
        packets.append(struct.pack(">H", len(buffer) + 1) + b"U" + bytes(buffer))
    expected = sum(map(len, packets))
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(count):
            s.enter_order(f"F{i}", "B", 100, "WIRE", PRICE)
    finally:
        thread.join(10.0)
        s.close()
        peer.close()
    assert bytes(received) == b"".join(packets)
    assert len(s.unacknowledged()) == count


@pytest.fixture
def checkout(backend_name, monkeypatch):
    """ConnectionPool.session()'s context manager from one backend."""
    cls = load_backend(backend_name, "lowlat.wire").Checkout
    monkeypatch.setattr(pool_module, "Checkout", cls)
    return cls


def test_a_checkout_hands_out_a_free_session_and_takes_it_back(checkout, exchange):
    pool = ConnectionPool(ouch_factory(exchange, "p"), 2, checkout_timeout=0.2)
    try:
        with pool.session() as first, pool.session() as second:
            assert first is not second and pool.health().in_use == 2
            with pytest.raises(PoolExhausted, match="2 in use"):
                with pool.session():
                    pass
            first.enter_order("C1", "B", 100, "WIRE", PRICE)
            assert first.wait_for("C1", "A", timeout=2)["order_token"] == "C1"
        assert pool.health().in_use == 0 and pool.health().idle == 2
        manager = pool.session()
        with pytest.raises(AttributeError):  # an exit without its enter
            manager.__exit__(None, None, None)
        with manager as again:
            again.close()  # returned dead: the pool finds out and replaces it
        assert pool.health().failures == 1
        assert wait_until(lambda: pool.health().up == 2)
    finally:
        pool.close()
