"""The exchange simulator over real TCP on 127.0.0.1: OUCH orders, its book, and each misbehaviour.

Every test starts its own simulator on a free port; every wait has a timeout.
"""

import os
import signal
import socket
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
    assert 0.2 <= time.monotonic() - started < 2  # 0.3 s after the last heartbeat, which came <= 0.05 s before
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


# ------------------------------------------------------------------------------------------------
# FIX 4.2 / 4.4 against the same book
# ------------------------------------------------------------------------------------------------

from lowlat import fix  # noqa: E402
from lowlat.net import fix_session as fs  # noqa: E402
from lowlat.net.fix_orders import FixOrderSession  # noqa: E402


@pytest.fixture
def fix_exchange():
    sim = ExchangeSimulator(application=OuchExchange(), heartbeat_interval=0.2, timeout=3.0, fix_port=0).start()
    try:
        yield sim
    finally:
        sim.stop()


def fix_session(sim, comp_id, begin=fix.FIX44, **options):
    options = {"heartbeat_interval": 0.2, "connect_timeout": 2.0, **options}
    s = FixOrderSession(sim.fix_address, comp_id, begin_string=begin, **options)
    s.connect()
    return s


@pytest.mark.parametrize("begin", [fix.FIX42, fix.FIX44])
def test_fix_logon_order_ack_fill_logout(fix_exchange, begin):
    buyer, seller = fix_session(fix_exchange, "BUYER", begin), fix_session(fix_exchange, "SELLER", begin)
    buyer.new_order_single("B1", "AAPL", fix.Side.BUY, 300, PRICE)
    new = buyer.wait_for("B1", fix.ExecType.NEW, timeout=2)
    assert (new.get(fix.Tag.OrdStatus), new.get(fix.Tag.LeavesQty), new.get(fix.Tag.Symbol)) == ("0", "300", "AAPL")
    assert buyer.unacknowledged() == []
    seller.new_order_single("S1", "AAPL", fix.Side.SELL, 100, PRICE - 100)
    seller.wait_for("S1", fix.ExecType.NEW, timeout=2)
    fill_type = fix.ExecType.TRADE if begin == fix.FIX44 else fix.ExecType.PARTIAL_FILL
    fill = buyer.wait_for("B1", fill_type, timeout=2)
    assert (fill.get(fix.Tag.LastQty), fill.get(fix.Tag.LastPx), fill.get(fix.Tag.LeavesQty)) == ("100", "100.25", "200")
    full = seller.wait_for("S1", fix.ExecType.TRADE if begin == fix.FIX44 else fix.ExecType.FILL, timeout=2)
    assert full.get(fix.Tag.OrdStatus) == fix.OrdStatus.FILLED
    buyer.logout(timeout=2)
    seller.logout(timeout=2)
    assert buyer.session.state is seller.session.state is fs.FixState.CLOSED
    assert [type(r.event) for r in fix_exchange.received if r.username == "BUYER"][-1] is fs.LoggedOut


def test_fix_idle_session_stays_up_on_heartbeats_and_test_requests(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE", heartbeat_interval=0.1)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # ten intervals with no application traffic
        alice.service(0.05)
    assert alice.alive and time.monotonic() - alice.last_heartbeat < 0.3
    received = [type(r.event) for r in fix_exchange.received if r.username == "ALICE"]
    assert received.count(fs.Heartbeat) >= 5  # the client's heartbeats reached the exchange
    alice.session.last_received -= 1.0  # as if the exchange had been silent: the client asks
    alice.service(0.0)
    assert alice.session._test_request is not None
    deadline = time.monotonic() + 2
    while alice.session._test_request is not None and time.monotonic() < deadline:
        alice.service(0.05)
    assert alice.session._test_request is None and alice.alive  # the exchange answered it
    alice.logout(timeout=2)


def test_fix_cancel_replace_and_cancel_reject(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE")
    alice.new_order_single("A1", "AAPL", fix.Side.BUY, 100, PRICE)
    alice.wait_for("A1", fix.ExecType.NEW, timeout=2)
    alice.replace_order("A2", "A1", "AAPL", fix.Side.BUY, 80, PRICE + 100)
    replaced = alice.wait_for("A2", fix.ExecType.REPLACED, timeout=2)
    assert (replaced.get(fix.Tag.OrigClOrdID), replaced.get(fix.Tag.OrderQty)) == ("A1", "80")
    alice.cancel_order("A3", "A2", "AAPL", fix.Side.BUY, 80)
    canceled = alice.wait_for("A3", fix.ExecType.CANCELED, timeout=2)
    assert canceled.get(fix.Tag.OrigClOrdID) == "A2"
    alice.cancel_order("A4", "A2", "AAPL", fix.Side.BUY, 80)  # already canceled
    reject = alice.wait_for("A4", timeout=2)
    assert (reject.msg_type, reject.get(fix.Tag.CxlRejReason)) == (fix.MsgType.OrderCancelReject, "1")
    alice.new_order_single("A5", "AAPL", fix.Side.BUY, 0, PRICE)
    rejected = alice.wait_for("A5", timeout=2)
    assert rejected.get(fix.Tag.ExecType) == fix.ExecType.REJECTED and rejected.get(fix.Tag.Text).startswith("Z")
    assert alice.unacknowledged() == []
    alice.close()


def test_fix_and_ouch_users_trade_with_each_other(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE")
    bob = session(fix_exchange, "bob")
    alice.new_order_single("A1", "MSFT", fix.Side.SELL, 50, PRICE)
    alice.wait_for("A1", fix.ExecType.NEW, timeout=2)
    bob.enter_order("B1", "B", 50, "MSFT", PRICE)
    assert bob.wait_for("B1", "E", timeout=2)["executed_shares"] == 50
    assert alice.wait_for("A1", fix.ExecType.TRADE, timeout=2).get(fix.Tag.OrdStatus) == fix.OrdStatus.FILLED
    alice.close()
    bob.close()


def test_fix_malformed_message_is_rejected_and_the_session_goes_on(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE")
    seq = alice.session.next_out
    body = (b"35=D\x0149=ALICE\x0156=EXCH\x0134=%d\x0152=20251124-16:00:00.000\x0111=BAD\x0154=1\x01"
            b"60=20251124-16:00:00.000\x0138=100\x0140=2\x0144=100\x01" % seq)  # Symbol (55) missing
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    alice.session.next_out += 1
    alice.transport.send(head + body + b"10=%03d\x01" % (sum(head + body) % 256))
    deadline = time.monotonic() + 2
    while not alice.rejects and time.monotonic() < deadline:
        alice.service(0.05)
    assert alice.rejects and alice.rejects[0].ref_seq_num == seq and alice.rejects[0].reason == 1
    alice.new_order_single("OK1", "AAPL", fix.Side.BUY, 10, PRICE)
    assert alice.wait_for("OK1", fix.ExecType.NEW, timeout=2).get(fix.Tag.ClOrdID) == "OK1"
    assert alice.alive
    alice.close()


def test_fix_skipped_sequence_number_is_recovered_by_resend(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE")
    fix_exchange.misbehave(skip_sequence=True)
    alice.new_order_single("A1", "AAPL", fix.Side.BUY, 10, PRICE)
    assert alice.wait_for("A1", fix.ExecType.NEW, timeout=2).seq_num == 3  # 2 was skipped
    assert alice.gaps == [fs.GapDetected(2, 3)]
    assert alice.session.next_in == 4 and alice.session._queued == {}
    alice.new_order_single("A2", "AAPL", fix.Side.BUY, 10, PRICE)
    alice.wait_for("A2", fix.ExecType.NEW, timeout=2)
    alice.close()


def test_fix_garbage_is_reported_and_the_session_goes_on(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE")
    fix_exchange.misbehave(garbage=True)
    alice.new_order_single("A1", "AAPL", fix.Side.BUY, 10, PRICE)
    alice.wait_for("A1", fix.ExecType.NEW, timeout=2)
    assert [e.reason for e in alice.malformed] == [fix.Reason.GARBAGE]
    assert alice.alive
    alice.close()


def test_fix_stopped_heartbeats_are_a_heartbeat_timeout(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE", heartbeat_interval=0.1)
    fix_exchange.misbehave(stop_heartbeats=True)
    started = time.monotonic()
    with pytest.raises(HeartbeatTimeoutError):
        while time.monotonic() - started < 3:
            alice.service(0.05)
    assert time.monotonic() - started < 2 and not alice.alive


def test_fix_dropped_connection_reports_then_recovers_unacknowledged_orders(fix_exchange):
    alice = fix_session(fix_exchange, "ALICE")
    fix_exchange.misbehave(drop_mid_message=True, ack_delay=0.2)
    alice.new_order_single("A1", "AAPL", fix.Side.BUY, 10, PRICE)
    alice.new_order_single("A2", "AAPL", fix.Side.BUY, 10, PRICE)
    with pytest.raises(ConnectionLost) as info:
        alice.wait_for("A2", fix.ExecType.NEW, timeout=3)
    assert [p.token for p in info.value.unacknowledged] == ["A1", "A2"]
    fix_exchange.behave()
    time.sleep(0.4)  # the delayed report for A2 is numbered and kept while alice is away
    alice.connect()
    assert alice.wait_for("A1", fix.ExecType.NEW, timeout=2).get(fix.Tag.ClOrdID) == "A1"
    alice.wait_for("A2", fix.ExecType.NEW, timeout=2)
    assert alice.unacknowledged() == [] and alice.gaps  # recovered through a ResendRequest
    alice.close()


def test_command_line_runs_until_interrupted():
    code = "import sys; from lowlat.exchange import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, "--port", "0", "--fix-port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("lowlat exchange listening on 127.0.0.1:"), (line, proc.stderr.read())
        port = int(line.split()[4].rsplit(":", 1)[1])
        fix_port = int(line.rsplit(":", 1)[1])
        carol = FixOrderSession(("127.0.0.1", fix_port), "CAROL", connect_timeout=5)
        carol.connect()
        carol.new_order_single("C1", "AAPL", fix.Side.SELL, 100, PRICE)
        assert carol.wait_for("C1", fix.ExecType.NEW, timeout=5).get(fix.Tag.ClOrdID) == "C1"
        alice = OuchSession(("127.0.0.1", port), "alice", "pw", connect_timeout=5)
        alice.connect()
        alice.enter_order("A1", "B", 100, "AAPL", PRICE)
        assert alice.wait_for("A1", "A", timeout=5)["type"] == "A"
        assert carol.wait_for("C1", fix.ExecType.TRADE, timeout=5).get(fix.Tag.LastQty) == "100"
        alice.logout()
        carol.logout()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "login alice" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_idle_client_gets_heartbeats_then_is_dropped_when_silent():
    """No traffic at all: only the loop's timers (its alarm, where there is one) send heartbeats
    at the interval and close a client silent for longer than the timeout."""
    sim = ExchangeSimulator(application=OuchExchange(), heartbeat_interval=0.05, timeout=0.5).start()
    try:
        sock = socket.create_connection(sim.address, timeout=2.0)
        client = soup.SoupClient("alice", "pw", heartbeat_interval=10.0, timeout=10.0)
        sock.sendall(client.login(time.monotonic()))  # then never a byte more: no client heartbeats
        started, beats, closed_after = time.monotonic(), [], None
        while closed_after is None and time.monotonic() - started < 3.0:
            data = sock.recv(65536)
            if not data:
                closed_after = time.monotonic() - started
                break
            beats += [time.monotonic() - started for e in client.receive_data(data, time.monotonic())
                      if isinstance(e, soup.ServerHeartbeat)]
        assert closed_after is not None and 0.45 <= closed_after < 2.0
        assert len(beats) >= 5 and beats[0] < 0.3  # every 0.05 s until the timeout, not in one burst
        sock.close()
    finally:
        sim.stop()
