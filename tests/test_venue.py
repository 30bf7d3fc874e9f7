"""The simulator's OUCH book (``lowlat.venue``): both halves byte for byte, and its fused read.

The compiled and the pure book are fed the same randomised streams of Enter / Cancel / Replace /
Modify Order (crosses, partial fills, IOCs, rejects, duplicates, damaged messages) and must give
the same answers byte for byte (timestamps aside), the same orders and the same book. Then
``serve``, the simulator's one-call read: its fallbacks on a socket pair, and over real loopback
TCP the same client script through the fast path and through the general path (forced by debug
logging or by a misbehaviour) gets the same answers as a book fed offline.
"""

import collections
import inspect
import logging
import random
import select
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import load_backend
from lowlat import ouch
from lowlat.exchange import ExchangeSimulator, Received
from lowlat.net import soupbintcp as soup

USERS = ("alice", "bob", "carol")
STOCKS = ("AAPL", "MSFT")


@pytest.fixture
def venue(backend_name):
    return load_backend(backend_name, "lowlat.venue")


@pytest.fixture(scope="module")
def both():
    return load_backend("cython", "lowlat.venue"), load_backend("python", "lowlat.venue")


def unstamped(payload):
    """An exchange message with its timestamp (bytes 1-8 of every answer the book gives) zeroed."""
    return payload[:1] + bytes(8) + payload[9:]


def enter(token, side="B", shares=100, stock="AAPL", price=1_000_000, tif=99998, display="Y", minimum=0, firm="",
          capacity="A", cross="N"):
    buffer = bytearray(49)
    ouch.encode_enter_order(buffer, 0, token, side, shares, stock, price, tif, firm, display, capacity, "N", minimum,
                            cross)
    return bytes(buffer)


def cancel(token, shares=0):
    buffer = bytearray(19)
    ouch.encode_cancel_order(buffer, 0, token, shares)
    return bytes(buffer)


def replace(existing, replacement, shares, price, tif=99998, display="Y", minimum=0):
    buffer = bytearray(47)
    ouch.encode_replace_order(buffer, 0, existing, replacement, shares, price, tif, display, "N", minimum)
    return bytes(buffer)


def modify(token, side, shares):
    buffer = bytearray(20)
    ouch.encode_modify_order(buffer, 0, token, side, shares)
    return bytes(buffer)


def random_stream(rng, count):
    """``count`` ``(username, payload)`` pairs around a few prices, so orders cross often."""
    tokens = {user: [] for user in USERS}
    prices = [999_900, 1_000_000, 1_000_100, 1_000_200]
    stream = []
    for _ in range(count):
        user = rng.choice(USERS)
        mine = tokens[user]
        known = rng.choice(mine[-6:]) if mine and rng.random() < 0.9 else f"Z{rng.randrange(10**6)}"
        kind = rng.random()
        if kind < 0.5:
            token = f"T{len(mine)}" if rng.random() < 0.97 else known  # now and then a duplicate
            mine.append(token)
            bad = rng.random() < 0.2  # one field in five orders is one the rules reject
            payload = enter(token, rng.choice("BSTEX" if bad else "BBSTE"),
                            rng.choice([1, 50, 100, 100, 300] + ([0, 2_000_000] if bad else [])),
                            rng.choice(STOCKS + (("", "IBM") if bad else ())), rng.choice(prices + ([0, 2_000_000_000] if bad else [])),
                            rng.choice([99998, 99998, 0]), rng.choice("YNP?" if bad else "YYNP"), rng.choice([0, 0, 0, 80] + ([500] if bad else [])),
                            rng.choice(["", "FIRM"]), rng.choice("AP"), rng.choice("NO"))
        elif kind < 0.65:
            payload = cancel(known, rng.choice([0, 0, 40, 90, 1000]))
        elif kind < 0.85:
            new = f"R{len(mine)}"
            mine.append(new)
            payload = replace(known, new if rng.random() < 0.95 else known, rng.choice([0, 40, 100, 200, 2_000_000]),
                              rng.choice(prices), rng.choice([99998, 0]), rng.choice("YY?"), rng.choice([0, 0, 150]))
        else:
            payload = modify(known, rng.choice("BSTEX"), rng.choice([0, 30, 60, 100, 400]))
        roll = rng.random()
        if roll < 0.01:
            payload = payload[:-1]  # the wrong length: not OUCH
        elif roll < 0.03:
            where = rng.randrange(1, len(payload))  # any byte, a non-ASCII one included
            payload = payload[:where] + bytes([rng.randrange(256)]) + payload[where + 1:]
        stream.append((user, payload))
    return stream


def book_state(book):
    orders = {key: repr(order) for key, order in book.orders.items()}
    books = {stock: {side: {price: [repr(o) for o in level] for price, level in levels.items()}
                     for side, levels in sides.items()}
             for stock, sides in book.books.items()}
    best = [(stock, book.best(stock, True), book.best(stock, False)) for stock in STOCKS + ("IBM",)]
    return orders, books, best


def assert_same_answers(compiled, pure, stream, check_every=50):
    kinds = collections.Counter()
    for step, (user, payload) in enumerate(stream):
        ours, twin = compiled.on_message(user, payload), pure.on_message(user, payload)
        assert [(u, unstamped(p)) for u, p in ours] == [(u, unstamped(p)) for u, p in twin], (step, user, payload)
        kinds.update(p[:1] for _, p in ours)
        if step % check_every == 0:
            assert book_state(compiled) == book_state(pure), step
    assert book_state(compiled) == book_state(pure)
    return kinds


# ------------------------------------------------------------------------------------------------
# The two halves, byte for byte
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_and_pure_books_answer_a_random_stream_alike(both, seed):
    compiled, pure = both
    stocks = None if seed == 1 else set(STOCKS)
    kinds = assert_same_answers(compiled.OuchExchange(stocks=stocks), pure.OuchExchange(stocks=stocks),
                                random_stream(random.Random(seed), 3000))
    # The stream reached every rule: accepts, rejects, fills, cancels (IOC and user), replaces, modifies.
    assert all(kinds[letter] > 0 for letter in (b"A", b"J", b"E", b"C", b"U", b"M")), kinds


_messages = st.one_of(
    st.builds(lambda t, side, shares, price, tif: enter(f"T{t}", side, shares, "AAPL", price, tif),
              st.integers(0, 15), st.sampled_from("BST"), st.integers(0, 300), st.integers(1, 4), st.sampled_from([0, 99998])),
    st.builds(lambda t, shares: cancel(f"T{t}", shares), st.integers(0, 15), st.integers(0, 300)),
    st.builds(lambda t, n, shares, price: replace(f"T{t}", f"T{n}", shares, price), st.integers(0, 15),
              st.integers(0, 15), st.integers(0, 300), st.integers(1, 4)),
    st.builds(lambda t, side, shares: modify(f"T{t}", side, shares), st.integers(0, 15), st.sampled_from("BSTE"),
              st.integers(0, 300)),
    st.binary(min_size=0, max_size=60),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(USERS[:2]), _messages), max_size=40))
def test_compiled_and_pure_books_agree_on_any_sequence(both, stream):
    compiled, pure = both
    assert_same_answers(compiled.OuchExchange(), pure.OuchExchange(), stream, check_every=1)


def parameters(function):
    """``(name, kind, default)`` of each parameter but ``self``."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values() if p.name != "self"]


def test_the_halves_share_names_signatures_docstrings_and_errors(both):
    compiled, pure = both
    assert compiled.__all__ == pure.__all__ == ["OuchExchange", "RestingOrder"]
    for name in pure.__all__:
        ours, twin = getattr(compiled, name), getattr(pure, name)
        members = sorted(m for m in dir(twin) if not m.startswith("_"))
        assert sorted(m for m in dir(ours) if not m.startswith("_")) == members
        for member in members:
            a, b = getattr(ours, member), getattr(twin, member)
            assert inspect.cleandoc(a.__doc__ or "") == inspect.cleandoc(b.__doc__ or ""), f"{name}.{member}"
            if callable(b):
                assert parameters(a) == parameters(b), f"{name}.{member}"
    for module in both:
        with pytest.raises(TypeError, match="max_shares"):
            module.OuchExchange(max_shares="many")
        with pytest.raises(ValueError, match="max_shares"):
            module.OuchExchange(max_shares=-1)
        with pytest.raises(TypeError, match="stocks"):
            module.OuchExchange(stocks="AAPL")
        with pytest.raises(ValueError, match="stocks"):
            module.OuchExchange(stocks={"TOO_LONG_1"})
        with pytest.raises(TypeError, match="username"):
            module.OuchExchange().on_message(b"alice", enter("A1"))
        with pytest.raises(TypeError, match="payload"):
            module.OuchExchange().on_message("alice", 42)
        with pytest.raises(TypeError, match="shares"):
            module.RestingOrder("alice", "A1", "B", "100", "AAPL", 1, 1)
        with pytest.raises(ValueError, match="token"):
            module.RestingOrder("alice", "A" * 15, "B", 100, "AAPL", 1, 1)
        with pytest.raises(ValueError, match="price"):
            module.RestingOrder("alice", "A1", "B", 100, "AAPL", -1, 1)
        order = module.RestingOrder("alice", "A1", "S", 100, "AAPL", 5, 7, "FRM")
        assert (order.side, order.shares, order.firm, order.capacity, order.cross_type) == ("S", 100, "FRM", "A", "N")
        assert repr(order) == repr(pure.RestingOrder("alice", "A1", "S", 100, "AAPL", 5, 7, "FRM"))
        with pytest.raises(AttributeError):
            order.shares = 5


def test_ouch_book_reexports_the_live_backend():
    from lowlat import venue
    from lowlat.exchange import ouch_book

    assert ouch_book.OuchExchange is venue.OuchExchange and ouch_book.RestingOrder is venue.RestingOrder
    assert ouch_book.BACKEND == venue.BACKEND
    assert venue.OuchExchange.__module__ == f"lowlat.venue.{'_c' if venue.BACKEND == 'cython' else '_py'}"


# ------------------------------------------------------------------------------------------------
# The rules, on each backend
# ------------------------------------------------------------------------------------------------


def decoded(payload):
    record = ouch.ExchangeMessage()
    record.decode(payload)
    return record.as_dict()


def test_accepted_echoes_the_order_and_rests_it(venue):
    book = venue.OuchExchange()
    before = time.time_ns() % 86_400_000_000_000
    [(user, payload)] = book.on_message("alice", enter("A1", "S", 300, "AAPL", 1_000_000, firm="FRM", minimum=10,
                                                       capacity="P", cross="O"))
    answer = decoded(payload)
    assert user == "alice" and answer["type"] == "A" and before <= answer["timestamp"] < before + 10**10
    assert {k: answer[k] for k in ("order_token", "side", "shares", "stock", "price", "firm", "capacity",
                                   "minimum_quantity", "cross_type", "order_state", "bbo_weight_indicator",
                                   "order_reference_number")} == {
        "order_token": "A1", "side": "S", "shares": 300, "stock": "AAPL", "price": 1_000_000, "firm": "FRM",
        "capacity": "P", "minimum_quantity": 10, "cross_type": "O", "order_state": "L", "bbo_weight_indicator": " ",
        "order_reference_number": 1}
    assert book.best("AAPL", False) == 1_000_000 and book.best("AAPL", True) is None and book.best("IBM", True) is None
    assert [o.token for o in book.books["AAPL"]["S"][1_000_000]] == ["A1"]
    assert book.orders[("alice", "A1")].shares == 300


def test_a_cross_fills_in_price_time_priority_and_an_ioc_rest_is_canceled(venue):
    book = venue.OuchExchange()
    for token, price in (("S1", 1_000_100), ("S2", 1_000_000), ("S3", 1_000_000)):
        book.on_message("maker", enter(token, "S", 100, price=price))
    answers = [(user, decoded(p)) for user, p in book.on_message("taker", enter("T1", "B", 350, price=1_000_100, tif=0))]
    kinds = [(user, a["type"], a["order_token"], a.get("executed_shares"), a.get("liquidity_flag")) for user, a in answers]
    assert kinds == [("taker", "A", "T1", None, None),
                     ("taker", "E", "T1", 100, "R"), ("maker", "E", "S2", 100, "A"),
                     ("taker", "E", "T1", 100, "R"), ("maker", "E", "S3", 100, "A"),
                     ("taker", "E", "T1", 100, "R"), ("maker", "E", "S1", 100, "A"),
                     ("taker", "C", "T1", None, None)]
    assert answers[-1][1]["decrement_shares"] == 50 and answers[-1][1]["reason"] == "I"
    assert [a["match_number"] for _, a in answers[1:7]] == [1, 1, 2, 2, 3, 3]
    assert [a["execution_price"] for _, a in answers[1:7:2]] == [1_000_000, 1_000_000, 1_000_100]
    assert book.orders == {} and book.best("AAPL", False) is None


def test_replace_keeps_priority_only_when_it_shrinks_at_the_same_price(venue):
    book = venue.OuchExchange()
    book.on_message("alice", enter("A1", shares=300))
    book.on_message("alice", enter("A2", shares=100))
    [(_, payload)] = book.on_message("alice", replace("A1", "A1b", 200, 1_000_000))
    answer = decoded(payload)
    assert (answer["type"], answer["replacement_order_token"], answer["previous_order_token"], answer["shares"],
            answer["order_reference_number"]) == ("U", "A1b", "A1", 200, 1)
    assert [o.token for o in book.books["AAPL"]["B"][1_000_000]] == ["A1b", "A2"]
    book.on_message("alice", replace("A1b", "A1c", 250, 1_000_000))  # bigger: to the back, a new reference
    assert [o.token for o in book.books["AAPL"]["B"][1_000_000]] == ["A2", "A1c"]
    assert book.orders[("alice", "A1c")].reference == 3
    assert book.on_message("alice", replace("A1c", "A2", 10, 1_000_000)) == []  # a used token: ignored


def test_cancel_modify_and_what_is_ignored(venue):
    book = venue.OuchExchange(stocks={"AAPL"})
    book.on_message("alice", enter("A1", "S", 300))
    [(_, payload)] = book.on_message("alice", cancel("A1", 200))
    assert (decoded(payload)["decrement_shares"], decoded(payload)["reason"]) == (100, "U")
    [(_, payload)] = book.on_message("alice", modify("A1", "T", 150))
    assert (decoded(payload)["side"], decoded(payload)["shares"]) == ("T", 150)
    assert book.on_message("alice", modify("A1", "B", 100)) == []  # a sell cannot become a buy
    assert book.on_message("alice", cancel("A1", 400)) == []  # an increase
    assert book.on_message("bob", cancel("A1")) == []  # another user's token
    assert book.on_message("alice", enter("A1")) == []  # a used token
    assert book.on_message("alice", b"O" + bytes(47)) == []  # the wrong length
    assert book.on_message("alice", b"") == []
    assert book.on_message("alice", b"O\xe9" + enter("B1")[2:]) == []  # a token that is not ASCII
    [(_, payload)] = book.on_message("alice", enter("B2", stock="MSFT"))
    assert (decoded(payload)["type"], decoded(payload)["reason"]) == ("J", "S")
    [(_, payload)] = book.on_message("alice", cancel("A1"))
    assert decoded(payload)["decrement_shares"] == 150 and book.orders == {} and book.best("AAPL", False) is None


# ------------------------------------------------------------------------------------------------
# serve: the simulator's fused read, on a socket pair
# ------------------------------------------------------------------------------------------------


def packet(kind, payload=b""):
    return struct.pack(">H", len(payload) + 1) + kind + payload


def active_session(username="alice"):
    session = soup.SoupServer()
    session.receive_data(packet(b"L", username.ljust(6).encode() + b" " * 20 + b"0".rjust(20)), 0.0)
    session.accept(soup.SessionLog("SIM0000001"), 0, 0.0)
    return session


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(2.0)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_serve_answers_every_order_of_one_read_in_one_write(venue, pair):
    ours, theirs = pair
    book, session, received, delivered = venue.OuchExchange(), active_session(), collections.deque(), []
    book.on_message("bob", enter("B1", "S", 50))
    theirs.sendall(packet(b"U", enter("A1", "B", 80)) + packet(b"U", cancel("A1")) + packet(b"U", b"junk"))
    before = time.monotonic()
    assert book.serve(ours, session, "alice", ("127.0.0.1", 9), received, lambda *a: delivered.append(a)) is None
    reader = soup.PacketReader(frozenset(b"S"))
    reader.feed(theirs.recv(65536))
    sent = []
    while (item := reader.next_packet()) is not None:
        sent.append(item[1])
    assert [p[:1] for p in sent] == [b"A", b"E", b"C"] and session.log.messages == sent
    assert [(user, payload[:1]) for user, payload, _ in delivered] == [("bob", b"E")]
    assert before <= delivered[0][2] == session.last_received == session.last_sent <= time.monotonic()
    assert [(r.__class__, r.peer, r.username, r.event) for r in received] == [
        (Received, ("127.0.0.1", 9), "alice", soup.UnsequencedData(p)) for p in (enter("A1", "B", 80), cancel("A1"), b"junk")]
    assert received[0].at == session.last_received


def test_serve_and_on_message_refuse_to_be_re_entered(venue, pair):
    ours, theirs = pair
    book, session = venue.OuchExchange(), active_session()
    book.on_message("bob", enter("B1", "S", 50))

    def deliver(user, payload, now):  # a fill for bob: the book is still answering alice
        book.on_message("bob", cancel("B1"))

    theirs.sendall(packet(b"U", enter("A1", "B", 50)))
    with pytest.raises(RuntimeError, match="re-entrant"):
        book.serve(ours, session, "alice", None, collections.deque(), deliver)
    assert book.on_message("bob", enter("B2", "S", 5))[0][1][:1] == b"A"  # usable again afterwards
    with pytest.raises(TypeError, match="username"):
        book.serve(ours, session, b"alice", None, collections.deque(), deliver)


@pytest.mark.parametrize("data", [
    packet(b"R"),  # a heartbeat
    packet(b"U", cancel("A1")) + packet(b"R"),  # an order and a heartbeat
    packet(b"U", cancel("A1"))[:-3],  # half a packet
    packet(b"U", cancel("A1")) + b"\x00",  # a packet and a byte of the next
    b"\x00\x00U",  # length 0: a protocol error for the general path to report
], ids=["heartbeat", "order+heartbeat", "partial", "trailing-byte", "length-0"])
def test_serve_hands_back_what_it_does_not_handle(venue, pair, data):
    ours, theirs = pair
    book, session, received = venue.OuchExchange(), active_session(), collections.deque()
    theirs.sendall(data)
    time.sleep(0.01)
    assert book.serve(ours, session, "alice", ("127.0.0.1", 9), received, None) == data
    assert not received and session.log.messages == [] and session.last_received == 0.0


def test_serve_hands_back_reads_of_a_session_not_active_or_with_a_partial_packet(venue, pair):
    ours, theirs = pair
    book, received = venue.OuchExchange(), collections.deque()
    idle = soup.SoupServer()
    theirs.sendall(packet(b"U", cancel("A1")))
    assert book.serve(ours, idle, "alice", None, received, None) == packet(b"U", cancel("A1"))
    session = active_session()
    session.receive_data(b"\x00", 1.0)  # one byte of a packet buffered
    theirs.sendall(packet(b"U", cancel("A1")))
    assert book.serve(ours, session, "alice", None, received, None) == packet(b"U", cancel("A1"))
    assert not received


def test_serve_reports_nothing_to_read_and_a_closed_peer(venue, pair):
    ours, theirs = pair
    book, session = venue.OuchExchange(), active_session()
    assert book.serve(ours, session, "alice", None, collections.deque(), None) is None  # would block
    theirs.close()
    assert book.serve(ours, session, "alice", None, collections.deque(), None) == b""


class _Key:
    def __init__(self, data):
        self.data = data


class _Conn:
    """What serve_ready reads of a connection (the simulator's _Client)."""

    def __init__(self, sock, session, username, fix=False):
        self.sock, self.session, self.username, self.peer, self.fix = sock, session, username, ("127.0.0.1", 9), fix


class _Sim:
    _misbehaving = False


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="serve_ready waits on epoll")
@pytest.mark.parametrize("spin", [False, True], ids=["sleeping", "spinning"])
def test_serve_ready_serves_ready_connections_and_hands_back_the_rest(venue, pair, spin):
    ours, theirs = pair
    other_ours, other_theirs = socket.socketpair()
    book, received, sim = venue.OuchExchange(), collections.deque(), _Sim()
    alice = _Conn(ours, active_session(), "alice")
    poller = select.epoll()
    keys = {ours.fileno(): _Key(alice), other_ours.fileno(): _Key("wake")}
    for fd in keys:
        poller.register(fd, select.POLLIN)
    try:
        start = time.monotonic()
        assert book.serve_ready(poller, 0.05, keys, _Conn, received, None, sim, spin) == []  # nothing ready
        assert 0.04 <= time.monotonic() - start < 1.0
        theirs.sendall(packet(b"U", enter("A1", "B", 80)))
        start = time.monotonic()  # served, then waits on for more until the time is up
        assert book.serve_ready(poller, 0.2, keys, _Conn, received, None, sim, spin) == []
        assert 0.19 <= time.monotonic() - start < 1.0
        assert [r.event.payload for r in received] == [enter("A1", "B", 80)]
        reader = soup.PacketReader(frozenset(b"S"))
        reader.feed(theirs.recv(65536))
        assert decoded(reader.next_packet()[1])["type"] == "A"
        other_theirs.sendall(b"x")
        left = book.serve_ready(poller, 1.0, keys, _Conn, received, None, sim, spin)
        assert [(key.data, data) for key, data in left] == [("wake", None)]  # not a connection: handed back
        other_ours.recv(16)
        sim._misbehaving = True  # a misbehaviour: the connection goes to the general path
        theirs.sendall(packet(b"U", cancel("A1")))
        left = book.serve_ready(poller, 1.0, keys, _Conn, received, None, sim, spin)
        # sleeping, it is handed back unread; spinning, its recv has read the bytes, handed back too
        assert [(key.data, data) for key, data in left] == [(alice, packet(b"U", cancel("A1")) if spin else None)]
        assert len(received) == 1
        sim._misbehaving = False
        theirs.sendall(packet(b"R"))  # a heartbeat: read, not the fast path's, handed back with its bytes
        left = book.serve_ready(poller, 1.0, keys, _Conn, received, None, sim, spin)
        unread = b"" if spin else packet(b"U", cancel("A1"))
        assert [(key.data, data) for key, data in left] == [(alice, unread + packet(b"R"))]
        theirs.close()  # the peer closed: handed back as b""
        left = book.serve_ready(poller, 1.0, keys, _Conn, received, None, sim, spin)
        assert [(key.data, data) for key, data in left] == [(alice, b"")]
        with pytest.raises(TypeError, match="keys must be a dict"):
            book.serve_ready(poller, 0.0, list(keys.items()), _Conn, received, None, sim, spin)
    finally:
        poller.close()
        other_ours.close()
        other_theirs.close()


# ------------------------------------------------------------------------------------------------
# serve inside the simulator, over real TCP: fast path and general path alike
# ------------------------------------------------------------------------------------------------


def tcp_script():
    """Steps of ``(user, [payloads sent in one write])``: rests, a cross with partial fills, an IOC,
    replaces, a modify, a cancel, a reject, a duplicate and a non-OUCH message."""
    return [
        ("alice", [enter("A1", "S", 100, price=1_000_100)]),
        ("alice", [enter("A2", "S", 100), enter("A3", "S", 100)]),
        ("bob", [enter("B1", "B", 250, price=1_000_100, tif=0)]),
        ("bob", [enter("B2", "B", 100, price=999_900), enter("B3", "B", 0), enter("B2", "B", 5)]),
        ("bob", [replace("B2", "B2b", 60, 999_900), modify("B2b", "B", 40)]),
        ("alice", [enter("A4", "S", 70, price=999_900), b"not ouch"]),
        ("alice", [replace("A1", "A1b", 20, 1_000_200), cancel("A1b")]),
        ("bob", [cancel("B2b"), enter("B4", "B", 10, stock="MSFT")]),
    ]


def read_answers(sock, client, count, timeout=3.0):
    """The next ``count`` sequenced payloads from ``sock`` (heartbeats skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        data = sock.recv(65536)
        assert data, "the simulator closed the connection"
        out.extend(e.payload for e in client.receive_data(data, time.monotonic()) if isinstance(e, soup.SequencedData))
    return out


def run_tcp_script(book, monkeypatch, mode):
    """Play tcp_script against a simulator serving ``book``; return answers, what it logged and serve's tally."""
    tally = collections.Counter()
    plain = ExchangeSimulator._serve_of

    def counted(application):
        serve_ready = plain(application)

        def wrapped(*args):  # what it logged as received meanwhile, it served itself
            received = args[4]
            before = len(received)
            result = serve_ready(*args)
            tally["handled"] += len(received) - before
            tally["handed back"] += sum(data is not None for _, data in result)
            return result
        return None if serve_ready is None else wrapped

    monkeypatch.setattr(ExchangeSimulator, "_serve_of", staticmethod(counted))
    reference = load_backend("python", "lowlat.venue").OuchExchange()
    logger = logging.getLogger("lowlat.exchange")
    level = logger.level
    sim = ExchangeSimulator(application=book, heartbeat_interval=0.5, timeout=5.0)
    if mode == "debug logging":
        logger.setLevel(logging.DEBUG)
    sim.start()
    clients = {}
    try:
        if mode == "misbehaving":
            sim.misbehave(stop_heartbeats=True)
        for user in ("alice", "bob"):
            sock = socket.create_connection(sim.address, timeout=2.0)
            client = soup.SoupClient(user, "pw", sequence=1, heartbeat_interval=0.5, timeout=5.0)
            sock.sendall(client.login(time.monotonic()))
            clients[user] = (sock, client)
            while client.state is not soup.SessionState.ACTIVE:
                client.receive_data(sock.recv(65536), time.monotonic())
        answers = {user: [] for user in clients}
        for user, payloads in tcp_script():
            expected = collections.Counter()
            for payload in payloads:
                expected.update(u for u, _ in reference.on_message(user, payload))
            clients[user][0].sendall(b"".join(packet(b"U", p) for p in payloads))
            for who, count in expected.items():
                answers[who] += read_answers(*clients[who], count)
        logged = {user: list(sim.logs[user].messages) for user in clients}
        received = [(r.username, r.event) for r in sim.received if isinstance(r.event, soup.UnsequencedData)]
    finally:
        for sock, _ in clients.values():
            sock.close()
        sim.stop()
        logger.setLevel(level)
    return answers, logged, received, tally


@pytest.mark.parametrize("mode", ["debug logging", "misbehaving"])
def test_fast_path_over_tcp_answers_as_the_general_path(venue, monkeypatch, mode):
    fast = run_tcp_script(venue.OuchExchange(), monkeypatch, "fast")
    slow = run_tcp_script(venue.OuchExchange(), monkeypatch, mode)
    orders = sum(len(payloads) for _, payloads in tcp_script())
    assert fast[3]["handled"] == orders and slow[3]["handled"] == 0  # each path really ran
    offline = load_backend("python", "lowlat.venue").OuchExchange()
    expected = {"alice": [], "bob": []}
    for user, payloads in tcp_script():
        for payload in payloads:
            for who, answer in offline.on_message(user, payload):
                expected[who].append(unstamped(answer))
    assert sum(len(v) for v in expected.values()) >= 20
    for answers, logged, received, _ in (fast, slow):
        assert {u: [unstamped(p) for p in ps] for u, ps in answers.items()} == expected
        assert {u: [unstamped(p) for p in ps] for u, ps in logged.items()} == expected
        assert received == [(user, soup.UnsequencedData(p)) for user, ps in tcp_script() for p in ps]
