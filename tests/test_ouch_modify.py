"""OUCH 4.2 Modify Order: the simulator's book byte by byte, then a client over real TCP.

Modify Order changes a sell's side among Sell / Sell Short / Sell Short Exempt and/or reduces its
open shares, keeping its priority; the exchange answers Order Modified ('M', 28 bytes: timestamp,
token, the new side, the shares now open). A request the spec does not allow (an increase, a
buy<->sell change) is ignored: no answer.
"""

import struct
import time

import pytest

from conftest import load_backend
from lowlat.exchange import ExchangeSimulator
from lowlat.exchange.ouch_book import OuchExchange
from lowlat.net.ouch import OuchSession, price_to_int

PRICE = price_to_int("50.10")


@pytest.fixture
def codec(backend_name):
    """One backend's OUCH codec: the client bytes come from it and the answers are decoded with it."""
    return load_backend(backend_name, "lowlat.ouch")


class Desk:
    """Sends one user's client messages to an ``OuchExchange`` as bytes and decodes the answers."""

    def __init__(self, book, codec, username):
        self.book, self.codec, self.username = book, codec, username

    def _send(self, buffer):
        answers = self.book.on_message(self.username, bytes(buffer))
        decoded = []
        for username, payload in answers:
            record = self.codec.ExchangeMessage()
            record.decode(payload)
            decoded.append((username, payload, record.as_dict()))
        return decoded

    def enter(self, token, side, shares, price=PRICE, stock="AAPL"):
        buffer = bytearray(49)
        self.codec.encode_enter_order(buffer, 0, token, side, shares, stock, price)
        return self._send(buffer)

    def modify(self, token, side, shares):
        buffer = bytearray(20)
        self.codec.encode_modify_order(buffer, 0, token, side, shares)
        return self._send(buffer)


def resting(book, username, token):
    order = book.orders.get((username, token))
    return None if order is None else (order.side, order.shares)


def queue(book, stock, buy, price):
    return [o.token for o in book.books[stock]["B" if buy else "S"].get(price, ())]


# ------------------------------------------------------------------------------------------------
# The book, byte by byte
# ------------------------------------------------------------------------------------------------


def test_order_modified_bytes_follow_the_spec(codec):
    book = OuchExchange()
    alice = Desk(book, codec, "alice")
    alice.enter("S1", "S", 300)
    [(username, payload, message)] = alice.modify("S1", "T", 200)
    assert username == "alice" and len(payload) == 28
    assert payload[:1] == b"M"
    (timestamp,) = struct.unpack_from(">Q", payload, 1)
    assert 0 < timestamp < 86_400_000_000_000
    assert payload[9:23] == b"S1".ljust(14)
    assert payload[23:24] == b"T"
    assert struct.unpack_from(">I", payload, 24) == (200,)
    assert (message["type"], message["order_token"], message["side"], message["shares"]) == ("M", "S1", "T", 200)


def test_modify_down_and_sideways_keeps_priority(codec):
    book = OuchExchange()
    alice, bob = Desk(book, codec, "alice"), Desk(book, codec, "bob")
    alice.enter("S1", "S", 300)
    alice.enter("S2", "S", 100)
    assert alice.modify("S1", "E", 150)[0][2]["shares"] == 150
    assert alice.modify("S1", "T", 150)[0][2]["side"] == "T"  # side only, same shares
    assert alice.modify("S1", "S", 120)[0][2]["side"] == "S"
    assert queue(book, "AAPL", False, PRICE) == ["S1", "S2"]
    assert resting(book, "alice", "S1") == ("S", 120)
    fills = [m for _, _, m in bob.enter("B1", "B", 200) if m["type"] == "E"]
    # S1 is still first in its level: it fills before S2 even though it was modified.
    assert [(m["order_token"], m["executed_shares"]) for m in fills] == [
        ("B1", 120), ("S1", 120), ("B1", 80), ("S2", 80)]


def test_a_buy_may_shrink_but_not_change_side(codec):
    book = OuchExchange()
    alice = Desk(book, codec, "alice")
    alice.enter("B1", "B", 100)
    alice.enter("B2", "B", 100)
    [(_, _, message)] = alice.modify("B1", "B", 40)
    assert (message["side"], message["shares"]) == ("B", 40)
    assert queue(book, "AAPL", True, PRICE) == ["B1", "B2"]
    for side in "STE":
        assert alice.modify("B1", side, 40) == []
    assert resting(book, "alice", "B1") == ("B", 40)


@pytest.mark.parametrize("token, side, shares, why", [
    ("S1", "S", 301, "an increase"),
    ("S1", "T", 1_000, "an increase with a valid side change"),
    ("S1", "B", 100, "sell to buy"),
    ("S1", "X", 100, "not a side"),
    ("NOPE", "S", 100, "an unknown token"),
])
def test_what_the_spec_does_not_allow_is_ignored(codec, token, side, shares, why):
    book = OuchExchange()
    alice = Desk(book, codec, "alice")
    alice.enter("S1", "S", 300)
    assert alice.modify(token, side, shares) == [], why
    assert resting(book, "alice", "S1") == ("S", 300)
    assert queue(book, "AAPL", False, PRICE) == ["S1"]


def test_modify_counts_the_open_shares_after_a_partial_fill(codec):
    book = OuchExchange()
    alice, bob = Desk(book, codec, "alice"), Desk(book, codec, "bob")
    alice.enter("S1", "S", 300)
    bob.enter("B1", "B", 100)
    assert alice.modify("S1", "S", 250) == []  # 200 are open: 250 would be an increase
    [(_, _, message)] = alice.modify("S1", "E", 200)
    assert (message["side"], message["shares"]) == ("E", 200)


def test_modify_to_zero_takes_the_order_off_the_book(codec):
    book = OuchExchange()
    alice, bob = Desk(book, codec, "alice"), Desk(book, codec, "bob")
    alice.enter("S1", "S", 300)
    [(_, _, message)] = alice.modify("S1", "S", 0)
    assert message["shares"] == 0
    assert resting(book, "alice", "S1") is None and book.best("AAPL", False) is None
    assert alice.modify("S1", "S", 0) == []  # dead now: ignored
    assert [m["type"] for _, _, m in bob.enter("B1", "B", 100)] == ["A"]  # nothing left to trade with


def test_another_users_token_is_not_theirs_to_modify(codec):
    book = OuchExchange()
    alice, mallory = Desk(book, codec, "alice"), Desk(book, codec, "mallory")
    alice.enter("S1", "S", 300)
    assert mallory.modify("S1", "T", 100) == []
    assert resting(book, "alice", "S1") == ("S", 300)


# ------------------------------------------------------------------------------------------------
# End to end over TCP
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def exchange():
    sim = ExchangeSimulator(application=OuchExchange(stocks={"AAPL"}), heartbeat_interval=0.05, timeout=3.0).start()
    try:
        yield sim
    finally:
        sim.stop()


def session(sim, username):
    s = OuchSession(sim.address, username, "pw", heartbeat_interval=0.05, timeout=2.0, connect_timeout=2.0)
    s.connect()
    return s


def test_enter_modify_down_modify_side_and_an_ignored_increase_over_tcp(exchange):
    alice, bob = session(exchange, "alice"), session(exchange, "bob")
    try:
        alice.enter_order("S1", "S", 300, "AAPL", PRICE)
        alice.enter_order("S2", "S", 100, "AAPL", PRICE)
        alice.modify_order("S1", "S", 200)
        assert [(p.kind, p.token) for p in alice.unacknowledged()] == [("O", "S1"), ("O", "S2"), ("M", "S1")]
        down = alice.wait_for("S1", "M", timeout=2)
        assert (down["side"], down["shares"]) == ("S", 200)
        alice.modify_order("S1", "T", 200)
        sideways = alice.wait_for("S1", "M", timeout=2)
        assert (sideways["side"], sideways["shares"]) == ("T", 200)
        assert alice.wait_for("S2", "A", timeout=2)["shares"] == 100
        assert alice.unacknowledged() == []

        alice.modify_order("S1", "T", 500)  # an increase: the exchange ignores it, so it stays pending
        with pytest.raises(TimeoutError):
            alice.wait_for("S1", "M", timeout=0.2)
        assert [(p.kind, p.token) for p in alice.unacknowledged()] == [("M", "S1")]

        bob.enter_order("B1", "B", 250, "AAPL", PRICE)
        fills = [alice.wait_for(token, "E", timeout=2)["executed_shares"] for token in ("S1", "S2")]
        assert fills == [200, 50]  # the modified order kept its place ahead of S2, at 200 shares
        assert [(p.kind, p.token) for p in alice.unacknowledged()] == [("M", "S1")]
        received = [r.event.payload[:1] for r in exchange.received
                    if r.username == "alice" and hasattr(r.event, "payload")]
        assert received.count(b"M") == 3
    finally:
        alice.close()
        bob.close()


def test_a_field_error_sends_nothing_and_leaves_nothing_pending(exchange):
    alice = session(exchange, "alice")
    try:
        with pytest.raises(ValueError, match="side"):
            alice.modify_order("S1", "SS", 10)
        with pytest.raises(ValueError, match="shares"):
            alice.modify_order("S1", "S", -1)
        with pytest.raises(TypeError, match="shares"):
            alice.modify_order("S1", "S", "10")
        with pytest.raises(ValueError, match="order_token"):
            alice.modify_order("T" * 15, "S", 10)
        assert alice.unacknowledged() == []
        time.sleep(0.05)
        assert not any(r.username == "alice" and getattr(r.event, "payload", b"")[:1] == b"M"
                       for r in exchange.received)
    finally:
        alice.close()
