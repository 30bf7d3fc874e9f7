"""The simulator's OUCH 4.2 application: validate orders, keep a price-time book per stock, fill.

``OuchExchange().on_message(username, payload)`` takes one Enter / Replace / Cancel / Modify Order and
returns the answers as ``(username, payload)`` pairs (sequenced messages for each user, the
counterparty of a fill included). Rules, simple and documented:

* Enter Order is rejected (OUCH reject reason) for: shares 0 or above ``max_shares`` (``Z``),
  price 0 or above $199,999.9900 (``X``), a stock outside ``stocks`` when that is given (``S``),
  an unknown side or display (``D`` for display, ``O`` other), minimum quantity above shares
  (``N``). A token already used by the same user is ignored, as the spec says.
* An accepted order trades at once against the other side's best prices (price-time priority,
  the resting order's price), each fill an Executed to both users (liquidity ``R`` to the
  aggressor, ``A`` to the resting order) with one match number. The rest rests, except an IOC
  (time in force 0) order, whose rest is canceled with reason ``I``.
* Cancel Order sets the order's shares to the given number (0: all): Canceled with the decrement,
  reason ``U``; unknown tokens and increases are ignored.
* Replace Order keeps priority when only the size goes down and the price is the same, otherwise
  goes to the back of its new level (and may trade at once); Replaced carries both tokens.
* Modify Order changes a sell's side among Sell / Sell Short / Sell Short Exempt (``S``, ``T``,
  ``E``) and/or sets the order's open shares to the given number, which may not be more than it
  has (0: cancel the rest). The order keeps its priority; Order Modified echoes the token, the
  new side and the shares now open. An increase, a buy<->sell change, an unknown side or an
  unknown or dead token is ignored (no answer), as the spec says of requests it does not allow.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass

from .. import ouch
from ..net.ouch import TIF_IOC

# Values the simulator accepts (OUCH 4.2): sides, and display types.
SIDES = frozenset("BSTE")
SELL_SIDES = frozenset("STE")  # Modify Order may move an order between these, never to or from "B"
DISPLAYS = frozenset("YNAPIMWLOTQ")

__all__ = ["OuchExchange", "RestingOrder"]

MAX_PRICE = 1_999_999_900  # $199,999.9900: OUCH 4.2's largest price


def _message(name: str, **fields) -> bytes:
    """Encode the exchange message ``name`` from its fields by name (``lowlat.ouch`` layouts)."""
    layout = ouch.MESSAGES[name]
    buffer = bytearray(layout.length)
    ouch.encode(buffer, 0, name, [fields[field.name] for field, _ in layout.fields])
    return bytes(buffer)


def _timestamp() -> int:
    """Nanoseconds since midnight UTC, as OUCH stamps its messages."""
    return time.time_ns() % 86_400_000_000_000


@dataclass(slots=True)  # one GC-tracked object per resting order (no __dict__, no dict of fields)
class RestingOrder:
    """An order on the book (or being matched)."""

    username: str
    token: str
    side: str  # "B" or a sell ("S", "T", "E")
    shares: int
    stock: str
    price: int
    reference: int
    firm: str = ""
    capacity: str = "A"
    cross_type: str = "N"


class OuchExchange:
    """A price-time book per stock behind the OUCH protocol; see the module docstring for the rules.

    Called from the simulator's one thread; not thread-safe by itself.
    """

    def __init__(self, *, stocks: frozenset[str] | set[str] | None = None, max_shares: int = 1_000_000) -> None:
        self.stocks = frozenset(stocks) if stocks is not None else None
        self.max_shares = max_shares
        self.orders: dict[tuple[str, str], RestingOrder] = {}  # (username, token) -> live order
        self.tokens: set[tuple[str, str]] = set()  # every token ever used, per user
        self.books: dict[str, dict[str, dict[int, deque]]] = {}  # stock -> "B"/"S" -> price -> orders
        self._references = itertools.count(1)
        self._matches = itertools.count(1)
        self._record = ouch.ClientMessage()
        self._accepted_buffer = bytearray(ouch.MESSAGES["accepted"].length)
        self._replaced_buffer = bytearray(ouch.MESSAGES["replaced"].length)

    # -- book ----------------------------------------------------------------------------------

    def _levels(self, stock: str, buy: bool) -> dict[int, deque]:
        return self.books.setdefault(stock, {"B": {}, "S": {}})["B" if buy else "S"]

    def best(self, stock: str, buy: bool) -> int | None:
        """Best price on one side of ``stock`` (highest bid / lowest offer), None when empty."""
        levels = self._levels(stock, buy)
        if not levels:
            return None
        return max(levels) if buy else min(levels)

    def _rest(self, order: RestingOrder) -> None:
        self._levels(order.stock, order.side == "B").setdefault(order.price, deque()).append(order)
        self.orders[(order.username, order.token)] = order

    def _unrest(self, order: RestingOrder) -> None:
        levels = self._levels(order.stock, order.side == "B")
        level = levels.get(order.price)
        if level is not None:
            try:
                level.remove(order)
            except ValueError:
                pass
            if not level:
                del levels[order.price]
        self.orders.pop((order.username, order.token), None)

    def _match(self, order: RestingOrder, out: list) -> None:
        buy = order.side == "B"
        opposite = self._levels(order.stock, not buy)
        while order.shares and opposite:
            price = min(opposite) if buy else max(opposite)
            if (buy and price > order.price) or (not buy and price < order.price):
                break
            level = opposite[price]
            while order.shares and level:
                resting = level[0]
                shares = min(order.shares, resting.shares)
                match = next(self._matches)
                stamp = _timestamp()
                for party, liquidity in ((order, "R"), (resting, "A")):
                    party.shares -= shares
                    out.append((party.username, _message("executed", timestamp=stamp, order_token=party.token,
                                                         executed_shares=shares, execution_price=price,
                                                         liquidity_flag=liquidity, match_number=match)))
                if not resting.shares:
                    level.popleft()
                    self.orders.pop((resting.username, resting.token), None)
            if not level:
                del opposite[price]

    # -- messages ------------------------------------------------------------------------------

    def on_message(self, username: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Handle one OUCH message from ``username``; return the sequenced answers to send."""
        try:
            self._record.decode(payload, 0, len(payload))
        except ValueError:
            return []  # not an OUCH order-entry message: the spec has no answer for it
        message = self._record.as_dict()
        kind = message["type"]
        out: list[tuple[str, bytes]] = []
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
        if shares == 0 or shares > self.max_shares:
            return "Z"
        if message["price"] == 0 or message["price"] > MAX_PRICE:
            return "X"
        if "stock" in message and (not message["stock"] or (self.stocks is not None and message["stock"] not in self.stocks)):
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
        if (username, token) in self.tokens:
            return  # duplicate token: ignored, as the spec says
        self.tokens.add((username, token))
        reason = self._reject_reason(message, message["shares"])
        if reason is not None:
            out.append((username, _message("rejected", timestamp=_timestamp(), order_token=token, reason=reason)))
            return
        order = RestingOrder(username, token, message["side"], message["shares"], message["stock"], message["price"],
                             next(self._references), message["firm"], message["capacity"], message["cross_type"])
        out.append((username, self._accepted(order, message)))
        self._match(order, out)
        self._rest_or_cancel(order, message["time_in_force"], out)

    def _accepted(self, order: RestingOrder, message: dict, previous: str | None = None) -> bytes:
        """Accepted for a new order, Replaced (with ``previous``, the replaced token) for a replacement.

        Values go to ``lowlat.ouch.encode`` in layout order (no dict per answer: this is the
        simulator's share of every benchmarked round trip)."""
        head = (_timestamp(), order.token, order.side, order.shares, order.stock, order.price, message["time_in_force"],
                order.firm, message["display"], order.reference, order.capacity, message["intermarket_sweep"],
                message["minimum_quantity"], order.cross_type, "L" if order.shares else "D")
        if previous is None:
            ouch.encode(self._accepted_buffer, 0, "accepted", head + (" ",))
            return bytes(self._accepted_buffer)
        ouch.encode(self._replaced_buffer, 0, "replaced", head + (previous, " "))
        return bytes(self._replaced_buffer)

    def _rest_or_cancel(self, order: RestingOrder, tif: int, out: list) -> None:
        if not order.shares:
            return
        if tif == TIF_IOC:
            out.append((order.username, _message("canceled", timestamp=_timestamp(), order_token=order.token,
                                                 decrement_shares=order.shares, reason="I")))
            order.shares = 0
            return
        self._rest(order)

    def _cancel(self, username: str, message: dict, out: list) -> None:
        order = self.orders.get((username, message["order_token"]))
        if order is None or message["shares"] >= order.shares:
            return  # unknown or already dead token, or not a decrease: ignored
        decrement = order.shares - message["shares"]
        order.shares = message["shares"]
        if not order.shares:
            self._unrest(order)
        out.append((username, _message("canceled", timestamp=_timestamp(), order_token=order.token,
                                       decrement_shares=decrement, reason="U")))

    def _modify(self, username: str, message: dict, out: list) -> None:
        order = self.orders.get((username, message["order_token"]))
        side, shares = message["side"], message["shares"]
        if order is None or shares > order.shares:
            return  # unknown or dead token, or an increase: ignored, as the spec says
        if side != order.side and (side not in SELL_SIDES or order.side not in SELL_SIDES):
            return  # only Sell / Sell Short / Sell Short Exempt may change into each other: ignored
        order.side = side  # same book side, same price: the order keeps its place in the queue
        order.shares = shares
        if not shares:
            self._unrest(order)
        out.append((username, _message("order_modified", timestamp=_timestamp(), order_token=order.token,
                                       side=side, shares=shares)))

    def _replace(self, username: str, message: dict, out: list) -> None:
        previous = message["existing_order_token"]
        order = self.orders.get((username, previous))
        new_token = message["replacement_order_token"]
        if order is None or (username, new_token) in self.tokens:
            return  # the spec ignores a replace of a dead order or with a used token
        self.tokens.add((username, new_token))
        reason = self._reject_reason(message, message["shares"])
        if reason is not None:
            out.append((username, _message("rejected", timestamp=_timestamp(), order_token=new_token, reason=reason)))
            return
        keeps_priority = message["price"] == order.price and message["shares"] <= order.shares
        if keeps_priority:
            del self.orders[(username, order.token)]
            order.token = new_token
            order.shares = message["shares"]
            self.orders[(username, new_token)] = order
            out.append((username, self._accepted(order, message, previous=previous)))
            if not order.shares:
                self._unrest(order)
            return
        self._unrest(order)
        replacement = RestingOrder(username, new_token, order.side, message["shares"], order.stock, message["price"],
                                   next(self._references), order.firm, order.capacity, order.cross_type)
        out.append((username, self._accepted(replacement, message, previous=previous)))
        self._match(replacement, out)
        self._rest_or_cancel(replacement, message["time_in_force"], out)
