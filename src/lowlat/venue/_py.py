"""Pure-Python OUCH 4.2 book of the exchange simulator: the twin of :mod:`lowlat.venue._c`.

``OuchExchange().on_message(username, payload)`` takes one Enter / Replace / Cancel / Modify Order and
returns the answers as ``(username, payload)`` pairs (sequenced messages for each user, the
counterparty of a fill included); ``serve`` is the simulator's whole read of one SoupBinTCP
connection. The rules are in :mod:`lowlat.venue.rules`.
"""

from __future__ import annotations

import itertools
import socket
import struct
import time
from collections import deque

from .. import ouch
from .._twins import Final as _Final
from ..exchange.simulator import Received
from ..net import soupbintcp as soup
from .rules import DISPLAYS, MAX_PRICE, SELL_SIDES, SIDES, TIF_IOC, check_exchange, check_order

__all__ = ["OuchExchange", "RestingOrder"]

_MAX_SPIN = 64  # connections a spinning serve_ready reads itself (the others: epoll)
_SPIN_EPOLL = 8  # a spinning serve_ready asks epoll about the rest every this many turns

_ACTIVE = soup.SessionState.ACTIVE
_UNSEQUENCED = soup.UnsequencedData
_SEQUENCED_HEAD = struct.Struct(">Hc")
# Every text field of the four client messages: a non-ASCII byte in one makes the message not OUCH.
_TEXT_FIELDS = {layout.type: tuple(field.name for field, _ in layout.fields if field.kind in (ouch.spec.ALPHA, ouch.spec.CHAR))
                for layout in ouch.MESSAGES.values() if layout.direction == ouch.spec.CLIENT}


def _message(name: str, **fields) -> bytes:
    """Encode the exchange message ``name`` from its fields by name (``lowlat.ouch`` layouts)."""
    layout = ouch.MESSAGES[name]
    buffer = bytearray(layout.length)
    ouch.encode(buffer, 0, name, [fields[field.name] for field, _ in layout.fields])
    return bytes(buffer)


def _timestamp() -> int:
    """Nanoseconds since midnight UTC, as OUCH stamps its messages."""
    return time.time_ns() % 86_400_000_000_000


class RestingOrder(_Final):
    """An order on the book (or being matched): read-only outside the book that owns it.

    Arguments are checked (``TypeError``/``ValueError`` naming the argument): text fields are
    ASCII str no longer than their OUCH field, ``shares`` and ``price`` fit 32 bits, ``reference``
    64 bits. Orders compare by identity.
    """

    __slots__ = ("_username", "_token", "_side", "_shares", "_stock", "_price", "_reference", "_firm", "_capacity",
                 "_cross_type")

    def __init__(self, username, token, side, shares, stock, price, reference, firm="", capacity="A",
                 cross_type="N"):
        (self._username, self._token, self._side, self._shares, self._stock, self._price, self._reference,
         self._firm, self._capacity, self._cross_type) = check_order(username, token, side, shares, stock, price,
                                                                     reference, firm, capacity, cross_type)

    @classmethod
    def _new(cls, username, token, side, shares, stock, price, reference, firm, capacity, cross_type):
        order = cls.__new__(cls)  # the book's own values: already checked
        (order._username, order._token, order._side, order._shares, order._stock, order._price, order._reference,
         order._firm, order._capacity, order._cross_type) = (username, token, side, shares, stock, price, reference,
                                                             firm, capacity, cross_type)
        return order

    @property
    def username(self):
        """The user (login name) the order belongs to."""
        return self._username

    @property
    def token(self):
        """The user's order token (a replace with priority kept gives the order its new token)."""
        return self._token

    @property
    def side(self):
        """``"B"`` or a sell (``"S"``, ``"T"``, ``"E"``)."""
        return self._side

    @property
    def shares(self):
        """Shares still open (0 once filled, canceled or replaced away)."""
        return self._shares

    @property
    def stock(self):
        """The symbol, without padding."""
        return self._stock

    @property
    def price(self):
        """The limit price, 4 implied decimals."""
        return self._price

    @property
    def reference(self):
        """The exchange's order reference number (Accepted's ``order_reference_number``)."""
        return self._reference

    @property
    def firm(self):
        """The firm (MPID), without padding."""
        return self._firm

    @property
    def capacity(self):
        """Capacity: ``"A"`` agency, ``"P"`` principal, ``"R"`` riskless, ``"O"`` other."""
        return self._capacity

    @property
    def cross_type(self):
        """Cross type (``"N"`` none...)."""
        return self._cross_type

    def __repr__(self):
        return (f"RestingOrder(username={self._username!r}, token={self._token!r}, side={self._side!r}, "
                f"shares={self._shares!r}, stock={self._stock!r}, price={self._price!r}, "
                f"reference={self._reference!r}, firm={self._firm!r}, capacity={self._capacity!r}, "
                f"cross_type={self._cross_type!r})")


class OuchExchange(_Final):
    """A price-time book per stock behind the OUCH protocol; the rules are in :mod:`lowlat.venue.rules`.

    ``stocks`` (None: any) limits the symbols accepted, ``max_shares`` the size of one order.
    Called from the simulator's one thread; not thread-safe by itself.
    """

    __slots__ = ("_stocks", "_max_shares", "_orders", "_tokens", "_books", "_references", "_matches", "_record",
                 "_accepted_buffer", "_replaced_buffer", "_busy")

    def __init__(self, *, stocks=None, max_shares=1_000_000) -> None:
        self._stocks, self._max_shares = check_exchange(stocks, max_shares)
        self._orders: dict[tuple[str, str], RestingOrder] = {}  # (username, token) -> live order
        self._tokens: set[tuple[str, str]] = set()  # every token ever used, per user
        self._books: dict[str, dict[str, dict[int, deque]]] = {}  # stock -> "B"/"S" -> price -> orders
        self._references = itertools.count(1)
        self._matches = itertools.count(1)
        self._record = ouch.ClientMessage()
        self._accepted_buffer = bytearray(ouch.MESSAGES["accepted"].length)
        self._replaced_buffer = bytearray(ouch.MESSAGES["replaced"].length)
        self._busy = False  # inside on_message or serve: refuse re-entry, as the compiled half must

    @property
    def stocks(self):
        """The symbols accepted (a frozenset), or None for any."""
        return self._stocks

    @property
    def max_shares(self):
        """The largest order accepted, in shares."""
        return self._max_shares

    @property
    def orders(self):
        """A snapshot ``{(username, token): RestingOrder}`` of the orders on the book. O(orders)."""
        return dict(self._orders)

    @property
    def books(self):
        """A snapshot ``{stock: {"B": {price: (order, ...)}, "S": {...}}}``: every stock that has had a
        book, each side's levels best first, each level in time priority. O(orders)."""
        return {stock: {"B": {price: tuple(sides["B"][price]) for price in sorted(sides["B"], reverse=True)},
                        "S": {price: tuple(sides["S"][price]) for price in sorted(sides["S"])}}
                for stock, sides in self._books.items()}

    # -- book ----------------------------------------------------------------------------------

    def _levels(self, stock: str, buy: bool) -> dict[int, deque]:
        return self._books.setdefault(stock, {"B": {}, "S": {}})["B" if buy else "S"]

    def best(self, stock, buy):
        """Best price on one side of ``stock`` (highest bid / lowest offer), None when empty."""
        sides = self._books.get(stock)
        levels = None if sides is None else sides["B" if buy else "S"]
        if not levels:
            return None
        return max(levels) if buy else min(levels)

    def _rest(self, order: RestingOrder) -> None:
        self._levels(order._stock, order._side == "B").setdefault(order._price, deque()).append(order)
        self._orders[(order._username, order._token)] = order

    def _unrest(self, order: RestingOrder) -> None:
        levels = self._levels(order._stock, order._side == "B")
        level = levels.get(order._price)
        if level is not None:
            try:
                level.remove(order)
            except ValueError:
                pass
            if not level:
                del levels[order._price]
        self._orders.pop((order._username, order._token), None)

    def _match(self, order: RestingOrder, out: list) -> None:
        buy = order._side == "B"
        opposite = self._levels(order._stock, not buy)
        while order._shares and opposite:
            price = min(opposite) if buy else max(opposite)
            if (buy and price > order._price) or (not buy and price < order._price):
                break
            level = opposite[price]
            while order._shares and level:
                resting = level[0]
                shares = min(order._shares, resting._shares)
                match = next(self._matches)
                stamp = _timestamp()
                for party, liquidity in ((order, "R"), (resting, "A")):
                    party._shares -= shares
                    out.append((party._username, _message("executed", timestamp=stamp, order_token=party._token,
                                                          executed_shares=shares, execution_price=price,
                                                          liquidity_flag=liquidity, match_number=match)))
                if not resting._shares:
                    level.popleft()
                    self._orders.pop((resting._username, resting._token), None)
            if not level:
                del opposite[price]

    # -- messages ------------------------------------------------------------------------------

    def on_message(self, username, payload):
        """Handle one OUCH message from ``username``; return the sequenced answers to send.

        ``payload`` is the message's bytes (any bytes-like); answers are ``(username, bytes)``
        pairs in the order they are to be sent, a fill's counterparty included. A message the
        rules do not answer gives ``[]``.
        """
        if type(username) is not str:  # a str subclass could run code inside the book's dicts
            raise TypeError(f"username must be str, got {type(username).__name__}")
        self._enter_book()
        try:
            return self._answer(username, payload)
        finally:
            self._busy = False

    def _enter_book(self) -> None:
        if self._busy:
            raise RuntimeError("OuchExchange is not re-entrant: called again while it was answering")
        self._busy = True

    def _answer(self, username, payload):
        try:
            length = memoryview(payload).nbytes
        except TypeError:
            raise TypeError("payload must be a contiguous buffer") from None
        try:
            self._record.decode(payload, 0, length)
        except ValueError:
            return []  # not an OUCH order-entry message: the spec has no answer for it
        message = self._record.as_dict()
        kind = message["type"]
        if not all(message[name].isascii() for name in _TEXT_FIELDS[kind]):
            return []  # OUCH text is ASCII: no answer could echo this, so none is given
        out: list = []
        if kind == "O":
            self._enter(username, message, out)
        elif kind == "X":
            self._cancel(username, message, out)
        elif kind == "U":
            self._replace(username, message, out)
        elif kind == "M":
            self._modify(username, message, out)
        return out

    def _reject_reason(self, message: dict, shares: int) -> str | None:
        if shares == 0 or shares > self._max_shares:
            return "Z"
        if message["price"] == 0 or message["price"] > MAX_PRICE:
            return "X"
        if "stock" in message and (not message["stock"] or (self._stocks is not None and message["stock"] not in self._stocks)):
            return "S"
        if message["display"] not in DISPLAYS:
            return "D"
        if message["minimum_quantity"] > shares:
            return "N"
        if message.get("side", "B") not in SIDES:
            return "O"
        return None

    def _enter(self, username: str, message: dict, out: list) -> None:
        token = message["order_token"]
        if (username, token) in self._tokens:
            return  # duplicate token: ignored, as the spec says
        self._tokens.add((username, token))
        reason = self._reject_reason(message, message["shares"])
        if reason is not None:
            out.append((username, _message("rejected", timestamp=_timestamp(), order_token=token, reason=reason)))
            return
        order = RestingOrder._new(username, token, message["side"], message["shares"], message["stock"],
                                  message["price"], next(self._references), message["firm"], message["capacity"],
                                  message["cross_type"])
        out.append((username, self._accepted(order, message)))
        self._match(order, out)
        self._rest_or_cancel(order, message["time_in_force"], out)

    def _accepted(self, order: RestingOrder, message: dict, previous: str | None = None) -> bytes:
        """Accepted for a new order, Replaced (with ``previous``, the replaced token) for a replacement."""
        head = (_timestamp(), order._token, order._side, order._shares, order._stock, order._price,
                message["time_in_force"], order._firm, message["display"], order._reference, order._capacity,
                message["intermarket_sweep"], message["minimum_quantity"], order._cross_type,
                "L" if order._shares else "D")
        if previous is None:
            ouch.encode(self._accepted_buffer, 0, "accepted", head + (" ",))
            return bytes(self._accepted_buffer)
        ouch.encode(self._replaced_buffer, 0, "replaced", head + (previous, " "))
        return bytes(self._replaced_buffer)

    def _rest_or_cancel(self, order: RestingOrder, tif: int, out: list) -> None:
        if not order._shares:
            return
        if tif == TIF_IOC:
            out.append((order._username, _message("canceled", timestamp=_timestamp(), order_token=order._token,
                                                  decrement_shares=order._shares, reason="I")))
            order._shares = 0
            return
        self._rest(order)

    def _cancel(self, username: str, message: dict, out: list) -> None:
        order = self._orders.get((username, message["order_token"]))
        if order is None or message["shares"] >= order._shares:
            return  # unknown or already dead token, or not a decrease: ignored
        decrement = order._shares - message["shares"]
        order._shares = message["shares"]
        if not order._shares:
            self._unrest(order)
        out.append((username, _message("canceled", timestamp=_timestamp(), order_token=order._token,
                                       decrement_shares=decrement, reason="U")))

    def _modify(self, username: str, message: dict, out: list) -> None:
        order = self._orders.get((username, message["order_token"]))
        side, shares = message["side"], message["shares"]
        if order is None or shares > order._shares:
            return  # unknown or dead token, or an increase: ignored, as the spec says
        if side != order._side and (side not in SELL_SIDES or order._side not in SELL_SIDES):
            return  # only Sell / Sell Short / Sell Short Exempt may change into each other: ignored
        order._side = side  # same book side, same price: the order keeps its place in the queue
        order._shares = shares
        if not shares:
            self._unrest(order)
        out.append((username, _message("order_modified", timestamp=_timestamp(), order_token=order._token,
                                       side=side, shares=shares)))

    def _replace(self, username: str, message: dict, out: list) -> None:
        previous = message["existing_order_token"]
        order = self._orders.get((username, previous))
        new_token = message["replacement_order_token"]
        if order is None or (username, new_token) in self._tokens:
            return  # the spec ignores a replace of a dead order or with a used token
        self._tokens.add((username, new_token))
        reason = self._reject_reason(message, message["shares"])
        if reason is not None:
            out.append((username, _message("rejected", timestamp=_timestamp(), order_token=new_token, reason=reason)))
            return
        keeps_priority = message["price"] == order._price and message["shares"] <= order._shares
        if keeps_priority:
            del self._orders[(username, order._token)]
            order._token = new_token
            order._shares = message["shares"]
            self._orders[(username, new_token)] = order
            out.append((username, self._accepted(order, message, previous=previous)))
            if not order._shares:
                self._unrest(order)
            return
        self._unrest(order)
        replacement = RestingOrder._new(username, new_token, order._side, message["shares"], order._stock,
                                        message["price"], next(self._references), order._firm, order._capacity,
                                        order._cross_type)
        out.append((username, self._accepted(replacement, message, previous=previous)))
        self._match(replacement, out)
        self._rest_or_cancel(replacement, message["time_in_force"], out)

    # -- the simulator's read ------------------------------------------------------------------

    def serve(self, sock, session, username, peer, received, deliver):
        """Serve one readable SoupBinTCP connection of ``username`` in one call (the simulator's fast path).

        Reads once from ``sock`` (non-blocking). When the session (a ``SoupServer``) is active with
        no partial packet buffered and the bytes are whole Unsequenced Data packets only, each is
        answered by :meth:`on_message`: answers for ``username`` are sent in one write (blocking up
        to 2 s for the rest if the socket takes only part), answers for another user go to
        ``deliver(username, payload, now)``. Each message is logged in ``received`` (a ``Received``
        with an ``UnsequencedData``, as the simulator's general path logs it) and the answers for
        ``username`` are appended to the session's log before any other Python thread can run
        after the write (the compiled half does that bookkeeping after the write, keeping the GIL). Returns None when the read was handled (nothing read counts), else the bytes read
        for the caller's general path to parse, ``b""`` when the peer closed, the read failed or
        the write failed (the caller closes the connection). ``now`` is ``time.monotonic()``.
        """
        if type(username) is not str:
            raise TypeError(f"username must be str, got {type(username).__name__}")
        self._enter_book()
        try:
            return self._serve(sock, session, username, peer, received, deliver)
        finally:
            self._busy = False

    def serve_ready(self, poller, timeout, keys, client_type, received, deliver, simulator, spin=False):
        """Wait on ``poller`` and :meth:`serve` every ready OUCH connection: the simulator's loop, one call a wake-up.

        ``poller`` is a ``select.epoll`` with each descriptor registered for reading; ``timeout``
        is in seconds (negative: until something is ready). ``spin`` waits by polling without a
        timeout, over and over, until something is ready or ``timeout`` passed. ``keys`` maps
        each descriptor to its key, whose ``data`` is a ``client_type`` (with ``sock``,
        ``session``, ``username``, ``peer`` and ``fix``) for a connection; such a connection, not
        FIX, is served while ``simulator._misbehaving`` is false. Waits and serves again until
        something is left to the caller, ``timeout`` passed or ``simulator._misbehaving`` is set.
        Returns the ready keys left to the caller, in order, as ``(key, data)``: ``data`` is what
        ``serve`` returned when not None, else None (the key was not served: another kind of
        descriptor, FIX, or a misbehaviour); ``[]`` when the time is up. A wait interrupted by a
        signal returns ``[]`` once the handlers ran.
        """
        if type(keys) is not dict:
            raise TypeError(f"keys must be a dict, got {type(keys).__name__}")
        until = time.monotonic() + timeout if timeout >= 0 else float("inf")
        while True:  # until something is left for the caller, the time is up, or a misbehaviour
            if spin:
                left = self._spin(poller, until, keys, client_type, received, deliver, simulator)
            else:
                wait = max(until - time.monotonic(), 0.0) if timeout >= 0 else -1
                left = self._served(poller.poll(wait), keys, client_type, received, deliver, simulator)
            if left or time.monotonic() >= until or simulator._misbehaving:
                return left

    def _spin(self, poller, until, keys, client_type, received, deliver, simulator):
        """serve_ready's spin: ``recv`` on each OUCH connection in turn (the read that finds bytes
        is the one that returns them), ``epoll_wait(0)`` every _SPIN_EPOLL turns for the rest."""
        spun = [key for key in keys.values() if type(key.data) is client_type and not key.data.fix][:_MAX_SPIN]
        turn = 0
        events: list = []
        while True:
            for key in spun:
                try:
                    data = key.data.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return [(key, b"")]  # the read failed: the caller closes the connection
                if not data or simulator._misbehaving:  # closed, or the general path's to parse
                    return [(key, data)]
                client = key.data
                self._enter_book()
                try:
                    out = self._serve(client.sock, client.session, client.username, client.peer, received, deliver,
                                      data)
                finally:
                    self._busy = False
                return [] if out is None else [(key, out)]
            turn += 1
            if not spun or turn % _SPIN_EPOLL == 0:
                events = poller.poll(0)
                if events:
                    break
            if time.monotonic() >= until:
                break
        return self._served(events, keys, client_type, received, deliver, simulator)

    def _served(self, events, keys, client_type, received, deliver, simulator):
        """serve every ready OUCH connection of ``events``; the rest, as serve_ready returns them."""
        left = []
        for fd, _ in events:
            key = keys.get(fd)
            if key is None:
                continue
            client = key.data
            if type(client) is client_type and not client.fix and not simulator._misbehaving:
                data = self.serve(client.sock, client.session, client.username, client.peer, received, deliver)
                if data is not None:
                    left.append((key, data))
            else:
                left.append((key, None))
        return left

    def _serve(self, sock, session, username, peer, received, deliver, data=None):
        """serve, once the book is entered; ``data``: the bytes already read (serve_ready's spin)."""
        if data is None:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError, socket.timeout):
                return None
            except OSError:
                return b""
        if not data or session.state is not _ACTIVE or session._reader._buffer or not _whole_unsequenced(data):
            return data
        now = time.monotonic()
        session.last_received = now
        log = session.log
        out = bytearray()
        position, size = 0, len(data)
        while position < size:
            end = position + 2 + (data[position] << 8 | data[position + 1])
            payload = data[position + 3:end]
            position = end
            # Logged before the answer is written: here another thread may run between the two.
            received.append(Received(now, peer, username, _UNSEQUENCED(payload)))
            for user, answer in self._answer(username, payload):
                if user == username:
                    log.append(answer)
                    out += _SEQUENCED_HEAD.pack(len(answer) + 1, b"S")
                    out += answer
                else:
                    deliver(user, answer, now)
        if out:
            session.last_sent = now
            return _send(sock, out)
        return None


def _whole_unsequenced(data: bytes) -> bool:
    """Whether ``data`` is whole Unsequenced Data packets and nothing else."""
    position, size = 0, len(data)
    while position < size:
        if size - position < 3:
            return False
        length = data[position] << 8 | data[position + 1]
        if length == 0 or data[position + 2] != 0x55 or position + 2 + length > size:  # 0x55: "U"
            return False
        position += 2 + length
    return True


def _send(sock, data):
    """Send all of ``data``: None when sent, ``b""`` when the connection failed (up to 2 s blocking)."""
    data = bytes(data)
    try:
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):  # rare: the client's receive window is full
            sock.settimeout(2.0)
            sock.sendall(data[sent:])
            sock.setblocking(False)
    except OSError:
        return b""
    return None
