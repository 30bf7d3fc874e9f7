"""The exchange simulator over real TCP on 127.0.0.1: OUCH orders, its book, and each misbehaviour.

Every test starts its own simulator on a free port; every wait has a timeout.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from lowlat.exchange import ExchangeSimulator
from lowlat.exchange.ouch_book import OuchExchange
from lowlat.net import ConnectionLost, HeartbeatTimeoutError, LoginRejectedError, ProtocolError, SequenceGapError
from lowlat.net import soupbintcp as soup
from lowlat.net.ouch import OuchSession, price_to_int

PRICE = price_to_int("100.25")


@pytest.fixture
def exchange():
    sim = ExchangeSimulator(application=OuchExchange(stocks={"AAPL", "MSFT"}), heartbeat_interval=0.05,
                            timeout=3.0).start()
    try:
        yield sim
    finally:
        sim.stop()


def session(sim, username="alice", **options):
    options = {"heartbeat_interval": 0.05, "timeout": 2.0, "connect_timeout": 2.0, **options}
    s = OuchSession(sim.address, username, "pw", **options)
    s.connect()
    return s


# ------------------------------------------------------------------------------------------------
# Orders end to end
# ------------------------------------------------------------------------------------------------


def test_login_order_ack_fill_logout(exchange):
    alice, bob = session(exchange, "alice"), session(exchange, "bob")
    assert exchange.connected() == ["alice", "bob"]
    alice.enter_order("A1", "B", 300, "AAPL", PRICE)
    accepted = alice.wait_for("A1", "A", timeout=2)
    assert (accepted["shares"], accepted["price"], accepted["stock"], accepted["order_state"]) == (300, PRICE, "AAPL", "L")
    assert alice.unacknowledged() == []
    bob.enter_order("B1", "S", 100, "AAPL", PRICE - 500)
    assert bob.wait_for("B1", "A", timeout=2)["shares"] == 100
    fill_bob = bob.wait_for("B1", "E", timeout=2)
    fill_alice = alice.wait_for("A1", "E", timeout=2)
    assert (fill_bob["executed_shares"], fill_bob["execution_price"], fill_bob["liquidity_flag"]) == (100, PRICE, "R")
    assert (fill_alice["executed_shares"], fill_alice["liquidity_flag"]) == (100, "A")
    assert fill_alice["match_number"] == fill_bob["match_number"]
    alice.logout(timeout=1)
    bob.logout(timeout=1)
    deadline = time.monotonic() + 2
    while exchange.connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exchange.connected() == []
    received = [r.event for r in exchange.received if r.username == "alice"]
    assert isinstance(received[0], soup.LoginRequest)
    assert any(isinstance(e, soup.UnsequencedData) and e.payload[:1] == b"O" for e in received)
    assert isinstance(received[-1], soup.LogoutRequest)


@pytest.mark.parametrize("fields, reason", [
    ({"shares": 0}, "Z"),
    ({"shares": 2_000_000}, "Z"),
    ({"price": 0}, "X"),
    ({"stock": "NOPE"}, "S"),
    ({"display": "?"}, "D"),
    ({"minimum_quantity": 500}, "N"),
])
def test_enter_order_rejects_with_the_spec_reason(exchange, fields, reason):
    alice = session(exchange)
    order = {"token": "R1", "side": "B", "shares": 100, "stock": "AAPL", "price": PRICE, **fields}
    alice.enter_order(order.pop("token"), order.pop("side"), order.pop("shares"), order.pop("stock"),
                      order.pop("price"), **order)
    answer = alice.wait_for("R1", timeout=2)
    assert (answer["type"], answer["reason"]) == ("J", reason)
    assert alice.unacknowledged() == []
    alice.close()


def test_price_time_priority_partial_fills_and_ioc(exchange):
    maker, taker = session(exchange, "maker"), session(exchange, "taker")
    for token, price in (("S1", PRICE + 100), ("S2", PRICE), ("S3", PRICE)):
        maker.enter_order(token, "S", 100, "MSFT", price)
        maker.wait_for(token, "A", timeout=2)
    taker.enter_order("T1", "B", 250, "MSFT", PRICE + 100, time_in_force=0)
    taker.wait_for("T1", "A", timeout=2)
    fills = [taker.wait_for("T1", "E", timeout=2) for _ in range(3)]
    assert [(f["executed_shares"], f["execution_price"]) for f in fills] == [(100, PRICE), (100, PRICE), (50, PRICE + 100)]
    assert [maker.wait_for(t, "E", timeout=2)["executed_shares"] for t in ("S2", "S3", "S1")] == [100, 100, 50]
    taker.enter_order("T2", "B", 100, "MSFT", PRICE + 100, time_in_force=0)
    assert taker.wait_for("T2", "E", timeout=2)["executed_shares"] == 50
    canceled = taker.wait_for("T2", "C", timeout=2)
    assert (canceled["decrement_shares"], canceled["reason"]) == (50, "I")


def test_cancel_and_replace(exchange):
    alice, bob = session(exchange, "alice"), session(exchange, "bob")
    alice.enter_order("A1", "B", 300, "AAPL", PRICE)
    alice.enter_order("A2", "B", 100, "AAPL", PRICE)
    alice.wait_for("A2", "A", timeout=2)
    alice.cancel_order("A1", 200)
    partial = alice.wait_for("A1", "C", timeout=2)
    assert (partial["decrement_shares"], partial["reason"]) == (100, "U")
    alice.replace_order("A1", "A1b", 150, PRICE)  # smaller, same price: keeps its place ahead of A2
    replaced = alice.wait_for("A1b", "U", timeout=2)
    assert (replaced["previous_order_token"], replaced["shares"]) == ("A1", 150)
    assert alice.unacknowledged() == []
    bob.enter_order("B1", "S", 150, "AAPL", PRICE)
    assert alice.wait_for("A1b", "E", timeout=2)["executed_shares"] == 150
    alice.replace_order("A2", "A2b", 100, PRICE + 1)  # new price: a new place in the book
    assert alice.wait_for("A2b", "U", timeout=2)["price"] == PRICE + 1
    alice.cancel_order("A2b")
    assert alice.wait_for("A2b", "C", timeout=2)["decrement_shares"] == 100
    alice.replace_order("gone", "X9", 10, PRICE)  # a replace of a dead order is ignored, and stays pending
    time.sleep(0.1)
    assert [p.token for p in alice.unacknowledged()] == ["X9"]
    alice.close()
    bob.close()


def test_login_rejected(exchange):
    exchange.users = {"alice": "pw"}
    with pytest.raises(LoginRejectedError) as info:
        OuchSession(exchange.address, "alice", "wrong", connect_timeout=2).connect()
    assert info.value.reason == soup.REJECT_NOT_AUTHORIZED
    with pytest.raises(LoginRejectedError) as info:
        OuchSession(exchange.address, "alice", "pw", session="OTHER", connect_timeout=2).connect()
    assert info.value.reason == soup.REJECT_SESSION_NOT_AVAILABLE
    session(exchange, "alice").close()


# ------------------------------------------------------------------------------------------------
# Misbehaviours: each met with its documented error, nothing hangs
# ------------------------------------------------------------------------------------------------


def test_drop_mid_message_reports_unacknowledged_orders_and_resumes(exchange):
    alice = session(exchange)
    alice.enter_order("A1", "B", 100, "AAPL", PRICE)
    alice.wait_for("A1", "A", timeout=2)
    exchange.misbehave(drop_mid_message=True, ack_delay=0.2)
    alice.enter_order("A2", "B", 100, "AAPL", PRICE)
    alice.enter_order("A3", "B", 100, "AAPL", PRICE)
    with pytest.raises(ConnectionLost) as info:
        alice.wait_for("A3", "A", timeout=3)
    assert info.value.partial > 0  # half of the Accepted for A2 arrived
    assert [p.token for p in info.value.unacknowledged] == ["A2", "A3"]
    assert not alice.alive and [p.token for p in alice.unacknowledged()] == ["A2", "A3"]
    exchange.behave()
    time.sleep(0.3)  # the delayed Accepted for A3 is logged while alice is away
    before = alice.connection.client.next_sequence
    accepted = alice.connect()
    assert accepted.sequence == before == 2  # resumes at the message that was cut
    assert alice.unacknowledged() == []  # the replay answered both
    assert [m["order_token"] for m in alice.messages] == ["A2", "A3"]
    alice.close()


def test_delayed_acknowledgements(exchange):
    alice = session(exchange)
    exchange.misbehave(ack_delay=0.3)
    started = time.monotonic()
    alice.enter_order("A1", "B", 100, "AAPL", PRICE)
    with pytest.raises(TimeoutError, match="A1"):
        alice.wait_for("A1", "A", timeout=0.1)
    assert [p.token for p in alice.unacknowledged()] == ["A1"]
    assert alice.wait_for("A1", "A", timeout=2)["order_token"] == "A1"
    assert time.monotonic() - started >= 0.3
    assert alice.unacknowledged() == []
    alice.close()


def test_garbage_is_a_protocol_error_after_the_good_bytes(exchange):
    alice = session(exchange)
    exchange.misbehave(garbage=True)
    alice.enter_order("A1", "B", 100, "AAPL", PRICE)
    with pytest.raises(ProtocolError, match="not a SoupBinTCP packet"):
        alice.wait_for("A1", "A", timeout=2)
    assert not alice.alive
    alice.connect()  # the Accepted after the garbage was logged: the resumed login replays it
    assert alice.wait_for("A1", "A", timeout=2)["order_token"] == "A1"
    alice.close()


def test_stopped_heartbeats_are_a_heartbeat_timeout(exchange):
    alice = session(exchange, timeout=0.3)
    alice.service(0.1)  # heartbeats flow
    exchange.misbehave(stop_heartbeats=True)
    started = time.monotonic()
    with pytest.raises(HeartbeatTimeoutError, match="silent"):
        while time.monotonic() - started < 3:
            alice.service(0.05)
    assert 0.25 <= time.monotonic() - started < 2
    assert not alice.alive


def test_skipped_sequence_number_is_a_gap_at_login(exchange):
    alice = session(exchange)
    alice.enter_order("A1", "B", 100, "AAPL", PRICE)
    alice.wait_for("A1", "A", timeout=2)
    alice.close()
    exchange.misbehave(skip_sequence=True)
    with pytest.raises(SequenceGapError) as info:
        alice.connect()
    assert (info.value.expected, info.value.received) == (2, 3)
    assert not alice.alive


def test_unknown_misbehaviour_is_refused(exchange):
    with pytest.raises(ValueError, match="misbehaviour"):
        exchange.misbehave(explode=True)


def test_command_line_runs_until_interrupted():
    code = "import sys; from lowlat.exchange import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("lowlat exchange listening on 127.0.0.1:"), (line, proc.stderr.read())
        port = int(line.rsplit(":", 1)[1])
        alice = OuchSession(("127.0.0.1", port), "alice", "pw", connect_timeout=5)
        alice.connect()
        alice.enter_order("A1", "B", 100, "AAPL", PRICE)
        assert alice.wait_for("A1", "A", timeout=5)["type"] == "A"
        alice.logout()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "login alice" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
