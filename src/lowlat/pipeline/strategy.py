"""What a strategy returns, and the example that ships: top-of-book imbalance sending a small IOC.

A strategy is any callable ``on_book_update(book, instrument) -> Order | None``, called after
every book update with the book (anything with ``best_bid(locate)`` / ``best_ask(locate)``
returning ``(price, shares, orders)`` or None) and the stock locate the update touched. It runs
on the hot path, in the thread that reads the feed: return fast, never block.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

__all__ = ["Order", "ImbalanceStrategy"]


class Order(NamedTuple):
    """An order a strategy wants sent: ``instrument`` (stock locate), ``side`` ``"B"``/``"S"``,
    ``shares``, ``price`` (ITCH/OUCH integer, 4 implied decimals). Sent immediate-or-cancel."""

    instrument: int
    side: str
    shares: int
    price: int


#: ``Order(*fields)`` without the Python-level ``__new__`` a NamedTuple calls: the very same
#: object, built in C (~120 ns sooner on the order's path; ~0.15 µs at p50 on the message that
#: fires, whose code is cold). A strategy of your own can simply call ``Order(...)``.
_new_order = partial(tuple.__new__, Order)


class ImbalanceStrategy:
    """Buy (sell) ``shares`` at the best offer (bid) when the top of book leans to the bid (offer).

    The imbalance is ``(bid_size - ask_size) / (bid_size + ask_size)`` of the best levels, in
    [-1, 1]; with ``use_microprice`` the signal is instead the microprice
    ``(bid*ask_size + ask*bid_size) / (bid_size + ask_size)`` against the mid, in units of the
    half spread (the same range). Crossing ``threshold`` fires once; the instrument re-arms only
    after the signal falls back inside ``threshold * rearm`` (hysteresis, so a book hovering at
    the threshold does not send an order per update). Each call is O(1).
    """

    __slots__ = ("threshold", "rearm", "shares", "use_microprice", "_armed", "orders")

    def __init__(self, threshold: float = 0.8, shares: int = 100, *, rearm: float = 0.5,
                 use_microprice: bool = False) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if not 0 <= rearm < 1:
            raise ValueError(f"rearm must be in [0, 1), got {rearm!r}")
        if not isinstance(shares, int) or shares < 1:
            raise ValueError(f"shares must be a positive int, got {shares!r}")
        self.threshold = threshold
        self.rearm = rearm
        self.shares = shares
        self.use_microprice = use_microprice
        self._armed: dict[int, int] = {}  # instrument -> side last fired (1 buy, -1 sell, 0 armed)
        self.orders = 0

    def __call__(self, book, instrument: int) -> Order | None:
        bid = book.best_bid(instrument)
        if bid is None:
            return None
        ask = book.best_ask(instrument)
        if ask is None:
            return None
        bid_price, bid_size = bid[0], bid[1]
        ask_price, ask_size = ask[0], ask[1]
        total = bid_size + ask_size
        if total <= 0 or ask_price <= bid_price:
            return None
        if self.use_microprice:
            half_spread = (ask_price - bid_price) / 2
            micro = (bid_price * ask_size + ask_price * bid_size) / total
            signal = (micro - (bid_price + half_spread)) / half_spread
        else:
            signal = (bid_size - ask_size) / total
        fired = self._armed.get(instrument, 0)
        if fired:
            if -self.threshold * self.rearm < signal < self.threshold * self.rearm:
                self._armed[instrument] = 0
            return None
        if signal >= self.threshold:
            self._armed[instrument] = 1
            self.orders += 1
            return _new_order((instrument, "B", self.shares, ask_price))
        if signal <= -self.threshold:
            self._armed[instrument] = -1
            self.orders += 1
            return _new_order((instrument, "S", self.shares, bid_price))
        return None
