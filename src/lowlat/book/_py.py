"""Pure-Python L3 order book: the twin of :mod:`lowlat.book._c` (same names, signatures, errors).

Orders live in a dict by reference; each (instrument, side) keeps a dict of price levels (each
an insertion-ordered dict of references: time priority) and a sorted list of its prices, so the
best level is the list's end and a level is found by dict lookup.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, insort
from typing import Any

import numpy as np

from ..itch import spec as _spec
from .common import BOOK_TYPES, BUY, DEPTH_DTYPE, SELL, merged_book_messages, side_code, unsigned
from .._twins import Final as _Final

__all__ = ["Book"]

_ADD = struct.Struct(">xH8xQBI8xI")  # locate, ref, side, shares, price
_REF_COUNT = struct.Struct(">11xQI")  # ref, shares (E, C, X)
_REF = struct.Struct(">11xQ")
_REPLACE = struct.Struct(">11xQQII")
_SIZES = {ord(m.type): m.size for m in _spec.MESSAGES}


class _Side:
    __slots__ = ("prices", "levels", "ascending")

    def __init__(self, ascending: bool) -> None:
        # Prices kept so the best is last: bids ascending, asks descending (stored negated).
        self.prices: list[int] = []
        self.levels: dict[int, list] = {}  # price -> [shares, {ref: None}]
        self.ascending = ascending


class Book(_Final):
    """Full-depth (L3) order book for every instrument of an ITCH feed.

    Orders are keyed by reference number and carry instrument (stock locate), side, price (the
    wire's integer, 4 implied decimals) and shares; levels aggregate them per side in time
    priority. ``add``, ``execute``, ``cancel``, ``delete`` and ``replace`` follow ITCH 5.0 (a
    replace keeps instrument and side, takes the new reference and loses priority). Gaps of real
    feeds never raise: an unknown reference is counted in ``unknown_references``, an execution
    or cancel beyond the order's shares in ``over_executions`` (the order is removed), a reused
    reference in ``duplicate_references``, an add with zero shares or a bad side in
    ``invalid_messages``; the book stays consistent. Nothing is preset: instruments, orders and
    prices grow as needed. Best bid/ask cost one lookup whatever the depth. One thread at a time.
    """

    def __init__(self) -> None:
        self._orders: dict[int, list] = {}
        self._sides: dict[tuple[int, int], _Side] = {}
        self._unknown = 0
        self._over = 0
        self._duplicate = 0
        self._invalid = 0
        self._applied = 0

    # --- counters -------------------------------------------------------------------------

    @property
    def unknown_references(self) -> int:
        """Messages naming an order reference the book does not hold (ignored)."""
        return self._unknown

    @property
    def over_executions(self) -> int:
        """Executions or cancels of more shares than the order had (the order is removed)."""
        return self._over

    @property
    def duplicate_references(self) -> int:
        """Adds or replaces whose new reference is already live (the new order is ignored)."""
        return self._duplicate

    @property
    def invalid_messages(self) -> int:
        """Adds with zero shares or a side other than B/S (ignored)."""
        return self._invalid

    @property
    def messages(self) -> int:
        """Book messages applied (A, F, E, C, X, D, U), whatever their outcome."""
        return self._applied

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_reference_number) -> bool:
        return order_reference_number in self._orders

    # --- updates --------------------------------------------------------------------------

    def _side(self, locate: int, side: int) -> _Side:
        key = (locate, side)
        book_side = self._sides.get(key)
        if book_side is None:
            book_side = self._sides[key] = _Side(side == BUY)
        return book_side

    def _insert(self, ref: int, locate: int, side: int, price: int, shares: int) -> bool:
        if ref in self._orders:
            self._duplicate += 1
            return False
        if shares == 0 or (side != BUY and side != SELL):
            self._invalid += 1
            return False
        self._orders[ref] = [locate, side, price, shares]
        book_side = self._side(locate, side)
        level = book_side.levels.get(price)
        if level is None:
            level = book_side.levels[price] = [0, {}]
            insort(book_side.prices, price if book_side.ascending else -price)
        level[0] += shares
        level[1][ref] = None
        return True

    def _remove(self, ref: int, order: list) -> None:
        del self._orders[ref]
        book_side = self._sides[(order[0], order[1])]
        price = order[2]
        level = book_side.levels[price]
        level[0] -= order[3]
        del level[1][ref]
        if not level[1]:
            del book_side.levels[price]
            key = price if book_side.ascending else -price
            del book_side.prices[bisect_left(book_side.prices, key)]

    def _reduce(self, ref: int, shares: int) -> int:
        order = self._orders.get(ref)
        if order is None:
            self._unknown += 1
            return 0
        if shares >= order[3]:
            if shares > order[3]:
                self._over += 1
            done = order[3]
            self._remove(ref, order)
            return done
        order[3] -= shares
        self._sides[(order[0], order[1])].levels[order[2]][0] -= shares
        return shares

    def add(self, stock_locate: int, order_reference_number: int, side, price: int, shares: int) -> bool:
        """Add an order at the back of its level's queue; False when ignored (counted).

        ``side``: ``"B"`` or ``"S"`` (str, bytes or the code 66/83); anything else ``ValueError``.
        """
        code = side_code(side)
        unsigned(stock_locate, 16), unsigned(order_reference_number, 64), unsigned(price, 32), unsigned(shares, 32)
        self._applied += 1
        return self._insert(order_reference_number, stock_locate, code, price, shares)

    def execute(self, order_reference_number: int, shares: int) -> int:
        """Execute ``shares`` of an order (ITCH E/C); return the shares taken from the book."""
        unsigned(order_reference_number, 64), unsigned(shares, 32)
        self._applied += 1
        return self._reduce(order_reference_number, shares)

    def cancel(self, order_reference_number: int, shares: int) -> int:
        """Cancel ``shares`` of an order (ITCH X); return the shares taken from the book."""
        unsigned(order_reference_number, 64), unsigned(shares, 32)
        self._applied += 1
        return self._reduce(order_reference_number, shares)

    def delete(self, order_reference_number: int) -> bool:
        """Delete an order (ITCH D); False (counted) when the reference is unknown."""
        unsigned(order_reference_number, 64)
        self._applied += 1
        order = self._orders.get(order_reference_number)
        if order is None:
            self._unknown += 1
            return False
        self._remove(order_reference_number, order)
        return True

    def replace(self, order_reference_number: int, new_order_reference_number: int, shares: int, price: int) -> bool:
        """Replace an order (ITCH U): same instrument and side, new reference, back of the queue.

        False (counted) when the original is unknown or the new reference is already live; in
        the second case the original is still removed.
        """
        unsigned(order_reference_number, 64), unsigned(new_order_reference_number, 64), unsigned(shares, 32), unsigned(price, 32)
        self._applied += 1
        order = self._orders.get(order_reference_number)
        if order is None:
            self._unknown += 1
            return False
        self._remove(order_reference_number, order)
        return self._insert(new_order_reference_number, order[0], order[1], price, shares)

    def apply(self, message, offset: int = 0) -> bool:
        """Apply one raw ITCH message (no length prefix) at ``message[offset:]``.

        Book messages (A, F, E, C, X, D, U) update the book and return True; every other type is
        ignored and returns False. ``message`` may be bytes-like or a :class:`lowlat.itch.Message`
        record. ``ValueError`` naming the byte offset when the data is shorter than the type.
        """
        view: bytes | memoryview
        if type(message) is bytes:
            view = message  # the common case: struct reads bytes directly, no view to build
        elif not isinstance(message, (bytearray, memoryview)) and hasattr(message, "to_bytes"):
            view = message.to_bytes()
        else:
            view = memoryview(message).cast("B")
        if offset < 0 or offset >= len(view):
            raise ValueError(f"offset {offset} is outside the data (length {len(view)})")
        code = view[offset]
        size = _SIZES.get(code)
        if size is None or code not in _BOOK_CODES:
            return False
        if offset + size > len(view):
            raise ValueError(f"truncated message at byte offset {offset}: type {chr(code)!r} needs {size} bytes, {len(view) - offset} left")
        if code == 65 or code == 70:  # A, F
            locate, ref, side, shares, price = _ADD.unpack_from(view, offset)
            self._applied += 1
            self._insert(ref, locate, side, price, shares)
        elif code == 68:  # D
            self.delete(_REF.unpack_from(view, offset)[0])
        elif code == 85:  # U
            ref, new_ref, shares, price = _REPLACE.unpack_from(view, offset)
            self.replace(ref, new_ref, shares, price)
        else:  # E, C, X
            ref, shares = _REF_COUNT.unpack_from(view, offset)
            self._applied += 1
            self._reduce(ref, shares)
        return True

    def apply_batch(self, batch) -> int:
        """Apply every book message of a decoded :class:`lowlat.itch.Batch` in stream order.

        The batch must hold the book types it has (A, F, E, C, X, D, U) with their ``position``
        columns; other types are ignored. Return the number of book messages applied.
        """
        kinds, rows = merged_book_messages(batch)
        columns: list[dict[str, Any]] = []
        for t in BOOK_TYPES:
            arr = batch.get(t)
            if arr is None or not len(arr):
                columns.append({})  # never read: merged_book_messages yields no row of an absent type
                continue
            names = [n for n in ("stock_locate", "order_reference_number", "buy_sell_indicator", "shares", "price",
                                 "executed_shares", "cancelled_shares", "original_order_reference_number",
                                 "new_order_reference_number") if n in arr.dtype.names]
            columns.append({n: arr[n].tolist() for n in names})
        insert, reduce, orders = self._insert, self._reduce, self._orders
        for kind, row in zip(kinds.tolist(), rows.tolist()):
            c = columns[kind]
            if kind <= 1:  # A, F
                side = c["buy_sell_indicator"][row]
                insert(c["order_reference_number"][row], c["stock_locate"][row], side[0] if side else 0, c["price"][row], c["shares"][row])
            elif kind <= 3:  # E, C
                reduce(c["order_reference_number"][row], c["executed_shares"][row])
            elif kind == 4:  # X
                reduce(c["order_reference_number"][row], c["cancelled_shares"][row])
            elif kind == 5:  # D
                ref = c["order_reference_number"][row]
                order = orders.get(ref)
                if order is None:
                    self._unknown += 1
                else:
                    self._remove(ref, order)
            else:  # U
                ref = c["original_order_reference_number"][row]
                order = orders.get(ref)
                if order is None:
                    self._unknown += 1
                else:
                    self._remove(ref, order)
                    insert(c["new_order_reference_number"][row], order[0], order[1], c["price"][row], c["shares"][row])
        self._applied += len(kinds)
        return len(kinds)

    # --- queries --------------------------------------------------------------------------

    def _best(self, locate: int, side: int):
        book_side = self._sides.get((locate, side))
        if book_side is None or not book_side.prices:
            return None
        price = book_side.prices[-1]
        if not book_side.ascending:
            price = -price
        level = book_side.levels[price]
        return (price, level[0], len(level[1]))

    def best_bid(self, stock_locate: int):
        """Return ``(price, shares, orders)`` of the best bid of ``stock_locate``, or None. O(1)."""
        return self._best(stock_locate, BUY)

    def best_ask(self, stock_locate: int):
        """Return ``(price, shares, orders)`` of the best ask of ``stock_locate``, or None. O(1)."""
        return self._best(stock_locate, SELL)

    def depth(self, stock_locate: int, side, levels: int = 10) -> np.ndarray:
        """Return the best ``levels`` levels of one side as a :data:`DEPTH_DTYPE` array, best first."""
        code = side_code(side)
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        book_side = self._sides.get((stock_locate, code))
        if book_side is None:
            return np.empty(0, dtype=DEPTH_DTYPE)
        keys = book_side.prices[::-1][:levels]
        out = np.empty(len(keys), dtype=DEPTH_DTYPE)
        for i, key in enumerate(keys):
            price = key if book_side.ascending else -key
            level = book_side.levels[price]
            out[i] = (price, level[0], len(level[1]))
        return out

    def level_count(self, stock_locate: int, side) -> int:
        """Return how many price levels one side of ``stock_locate`` has."""
        book_side = self._sides.get((stock_locate, side_code(side)))
        return 0 if book_side is None else len(book_side.prices)

    def orders_at(self, stock_locate: int, side, price: int) -> list:
        """Return ``[(order_reference_number, shares), ...]`` at one level in time priority."""
        book_side = self._sides.get((stock_locate, side_code(side)))
        if book_side is None:
            return []
        level = book_side.levels.get(price)
        if level is None:
            return []
        return [(ref, self._orders[ref][3]) for ref in level[1]]

    def order(self, order_reference_number: int):
        """Return ``(stock_locate, side, price, shares)`` of a live order (side 'B'/'S'), or None."""
        order = self._orders.get(order_reference_number)
        if order is None:
            return None
        return (order[0], chr(order[1]), order[2], order[3])

    def totals(self, stock_locate: int) -> tuple:
        """Return ``(bid_orders, bid_shares, ask_orders, ask_shares)`` of ``stock_locate``. O(levels)."""
        out = []
        for side in (BUY, SELL):
            book_side = self._sides.get((stock_locate, side))
            levels = book_side.levels.values() if book_side is not None else ()
            out.append(sum(len(level[1]) for level in levels))
            out.append(sum(level[0] for level in (book_side.levels.values() if book_side is not None else ())))
        return tuple(out)

    def instruments(self) -> list:
        """Return the sorted stock locates that have at least one live order."""
        return sorted({locate for (locate, _side), s in self._sides.items() if s.prices})


_BOOK_CODES = frozenset(ord(t) for t in BOOK_TYPES)
