"""The baseline built the seed's way: the same path in plain Python, as day 4 of the lesson builds it.

What the seed's classes are, written here in the project's style so a run can put them beside the
compiled and pure backends stage by stage:

* :class:`SeedRingBuffer` / :class:`SeedMessageQueue` -- the lesson's "lock-free" list ring (head
  and tail over a Python list, one slot wasted) and the message queue on top of it that wraps each
  message in a ``(sequence, timestamp, message)`` envelope and counts drops;
* :class:`SeedLatencyTracker` -- a list of latencies, sorted when statistics are asked for;
* :class:`SeedMessage` -- ``struct``-level parsing: the header and the type's fields unpacked into
  a dict per message;
* :class:`SeedBook` -- a dict of orders and, per instrument and side, a dict of price levels; the
  top of book is found by sorting the level prices;
* :class:`SeedRiskCheck` -- the lesson's bounds checks in Python (quantity, notional, collar);
* :func:`seed_encode_enter_order` -- an OUCH 4.2 Enter Order built with ``struct.pack`` as new bytes.

None of this is meant to be used: it is the reference point the table compares against.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from ..itch import spec as itch_spec

__all__ = ["SeedRingBuffer", "SeedMessageQueue", "SeedLatencyTracker", "SeedMessage", "SeedBook",
           "SeedRiskCheck", "seed_encode_enter_order"]


class SeedRingBuffer:
    """The seed's SPSC ring: a list, ``head`` written by the producer, ``tail`` by the consumer.

    Capacity rounds up to a power of two and one slot stays empty (full is ``head + 1 == tail``).
    ``push`` returns False when full; ``pop`` returns None when empty. O(1).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = 1 << (capacity - 1).bit_length()
        self.mask = self.capacity - 1
        self.buffer: list[Any] = [None] * self.capacity
        self.head = 0
        self.tail = 0

    def push(self, item: Any) -> bool:
        next_head = (self.head + 1) & self.mask
        if next_head == self.tail:
            return False
        self.buffer[self.head] = item
        self.head = next_head
        return True

    def pop(self) -> Any:
        if self.tail == self.head:
            return None
        item = self.buffer[self.tail]
        self.tail = (self.tail + 1) & self.mask
        return item

    def __len__(self) -> int:
        return (self.head - self.tail) & self.mask


class SeedMessageQueue:
    """The seed's LowLatencyMessageQueue: envelopes ``(sequence, enqueue ns, message)`` in a ring.

    ``enqueue`` stamps with ``time.perf_counter_ns()`` unless given a stamp and returns False
    (counting a drop) when full; ``dequeue`` returns ``(sequence, message, queue latency ns)`` or None.
    """

    def __init__(self, capacity: int = 65536) -> None:
        self.buffer = SeedRingBuffer(capacity)
        self.sequence_number = 0
        self.stats = {"enqueue_count": 0, "dequeue_count": 0, "drops": 0}

    def enqueue(self, message: Any, timestamp_ns: int | None = None) -> bool:
        if timestamp_ns is None:
            timestamp_ns = time.perf_counter_ns()
        if self.buffer.push((self.sequence_number, timestamp_ns, message)):
            self.sequence_number += 1
            self.stats["enqueue_count"] += 1
            return True
        self.stats["drops"] += 1
        return False

    def dequeue(self) -> tuple[int, Any, int] | None:
        envelope = self.buffer.pop()
        if envelope is None:
            return None
        self.stats["dequeue_count"] += 1
        sequence, enqueued, message = envelope
        return sequence, message, time.perf_counter_ns() - enqueued

    def __len__(self) -> int:
        return len(self.buffer)


class SeedLatencyTracker:
    """The seed's LatencyTracker without its context manager: a list of ns, sorted on demand.

    ``record`` appends (O(1)); ``percentile`` sorts a copy (O(n log n) per query) and indexes it
    the seed's way, ``sorted[int(n * p / 100)]``.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.latencies_ns: list[int] = []

    def record(self, latency_ns: int) -> None:
        self.latencies_ns.append(latency_ns)

    @property
    def count(self) -> int:
        return len(self.latencies_ns)

    def percentile(self, p: float) -> int:
        ordered = sorted(self.latencies_ns)
        if not ordered:
            return 0
        return ordered[min(int(len(ordered) * p / 100), len(ordered) - 1)]


_HEADER = struct.Struct(">cHH6s")
_FIELD_FORMATS = {}
for _type in itch_spec.TYPES:
    _fmt = ">"
    _names = []
    for _field in itch_spec.by_type(_type).fields:
        _fmt += f"{_field.width}s" if _field.kind == itch_spec.ALPHA else {1: "B", 2: "H", 4: "I", 8: "Q"}[_field.width]
        _names.append(_field.name)
    _FIELD_FORMATS[ord(_type)] = (struct.Struct(_fmt), tuple(_names), itch_spec.by_type(_type).size)


class SeedMessage:
    """``struct``-level parsing: ``parse(data, offset)`` unpacks one ITCH message into ``fields``.

    The header (type, locate, tracking, 6-byte timestamp) and the type's own fields become a dict,
    a new one per message, as a plain-Python feed handler writes it. Returns the message size;
    ``ValueError`` naming the offset for an unknown type or a truncated message.
    """

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.type = ""
        self.stock_locate = 0

    def parse(self, data: bytes, offset: int = 0) -> int:
        code = data[offset]
        layout = _FIELD_FORMATS.get(code)
        if layout is None:
            raise ValueError(f"unknown message type {chr(code)!r} at byte offset {offset}")
        unpacker, names, size = layout
        if offset + size > len(data):
            raise ValueError(f"truncated message at byte offset {offset}: type {chr(code)!r} needs {size} bytes")
        kind, locate, tracking, stamp = _HEADER.unpack_from(data, offset)
        values = unpacker.unpack_from(data, offset + 11)
        fields = {"type": kind.decode(), "stock_locate": locate, "tracking_number": tracking,
                  "timestamp": int.from_bytes(stamp, "big")}
        fields.update(zip(names, values))
        self.fields = fields
        self.type = fields["type"]
        self.stock_locate = locate
        return size

    @property
    def stock(self) -> bytes:
        return self.fields["stock"]


class SeedBook:
    """A dict-and-sort book: orders by reference, ``{price: [shares, orders]}`` per instrument and side.

    ``apply(data, offset)`` takes the raw message like ``lowlat.book.Book.apply`` (its fields
    unpacked with ``struct``) and returns True for book messages. ``best_bid``/``best_ask`` sort
    the level prices: O(L log L) per query for L levels.
    """

    _ADD = struct.Struct(">xHxxxxxxxxQcI8sI")
    _REF = struct.Struct(">xxxxxxxxxxxQ")
    _REF_COUNT = struct.Struct(">xxxxxxxxxxxQI")
    _REPLACE = struct.Struct(">xxxxxxxxxxxQQII")

    def __init__(self) -> None:
        self.orders: dict[int, list] = {}  # reference -> [locate, side, price, shares]
        self.levels: dict[tuple[int, bytes], dict[int, list]] = {}

    def _insert(self, reference: int, locate: int, side: bytes, price: int, shares: int) -> None:
        self.orders[reference] = [locate, side, price, shares]
        level = self.levels.setdefault((locate, side), {}).setdefault(price, [0, 0])
        level[0] += shares
        level[1] += 1

    def _reduce(self, reference: int, shares: int) -> None:
        order = self.orders.get(reference)
        if order is None:
            return
        shares = min(shares, order[3])
        levels = self.levels[(order[0], order[1])]
        level = levels[order[2]]
        level[0] -= shares
        order[3] -= shares
        if order[3] == 0:
            level[1] -= 1
            del self.orders[reference]
            if level[1] == 0:
                del levels[order[2]]

    def apply(self, data: bytes, offset: int = 0) -> bool:
        code = data[offset]
        if code == 65 or code == 70:  # A, F
            locate, reference, side, shares, _stock, price = self._ADD.unpack_from(data, offset)
            self._insert(reference, locate, side, price, shares)
        elif code == 69 or code == 67 or code == 88:  # E, C, X
            reference, shares = self._REF_COUNT.unpack_from(data, offset)
            self._reduce(reference, shares)
        elif code == 68:  # D
            reference = self._REF.unpack_from(data, offset)[0]
            order = self.orders.get(reference)
            if order is not None:
                self._reduce(reference, order[3])
        elif code == 85:  # U
            reference, new_reference, shares, price = self._REPLACE.unpack_from(data, offset)
            order = self.orders.get(reference)
            if order is not None:
                locate, side = order[0], order[1]
                self._reduce(reference, order[3])
                self._insert(new_reference, locate, side, price, shares)
        else:
            return False
        return True

    def _best(self, locate: int, side: bytes, highest: bool):
        levels = self.levels.get((locate, side))
        if not levels:
            return None
        prices = sorted(levels)
        price = prices[-1] if highest else prices[0]
        shares, orders = levels[price]
        return (price, shares, orders)

    def best_bid(self, locate: int):
        return self._best(locate, b"B", True)

    def best_ask(self, locate: int):
        return self._best(locate, b"S", False)

    def __len__(self) -> int:
        return len(self.orders)


class SeedRiskCheck:
    """The lesson's order validation, extended to the checks the path needs, in plain Python.

    ``check(instrument, side, quantity, price)`` returns 0 when accepted, else a nonzero code:
    1 quantity outside (0, max], 2 notional over the limit, 3 price outside the collar around the
    instrument's reference price (the first price seen on it), 4 position limit.
    """

    def __init__(self, max_order_quantity: int = 10_000, max_order_notional: int = 10**12,
                 price_collar_bps: int = 1_000, max_position: int = 10**9) -> None:
        self.limits = {"max_order_quantity": max_order_quantity, "max_order_notional": max_order_notional,
                       "price_collar_bps": price_collar_bps, "max_position": max_position}
        self.reference: dict[int, int] = {}
        self.position: dict[int, int] = {}

    def check(self, instrument: int, side: int, quantity: int, price: int) -> int:
        limits = self.limits
        if quantity <= 0 or quantity > limits["max_order_quantity"]:
            return 1
        if quantity * price > limits["max_order_notional"]:
            return 2
        reference = self.reference.setdefault(instrument, price)
        if abs(price - reference) * 10_000 > limits["price_collar_bps"] * reference:
            return 3
        position = self.position.get(instrument, 0) + side * quantity
        if abs(position) > limits["max_position"]:
            return 4
        self.position[instrument] = position
        return 0

    def on_reject(self, instrument: int, side: int, quantity: int, price: int) -> None:
        self.position[instrument] = self.position.get(instrument, 0) - side * quantity

    on_cancel = on_reject

    def on_fill(self, instrument: int, side: int, quantity: int, price: int) -> None:
        pass  # the position already counts the order from the check on


_ENTER_ORDER = struct.Struct(">Hcc14scI8sII4scccIcc")


def seed_encode_enter_order(token: str, side: str, shares: int, stock: str, price: int) -> bytes:
    """Return a SoupBinTCP Unsequenced Data packet carrying an OUCH 4.2 Enter Order (IOC), new bytes."""
    return _ENTER_ORDER.pack(50, b"U", b"O", token.encode("ascii").ljust(14), side.encode("ascii"), shares,
                             stock.encode("ascii").ljust(8), price, 0, b"    ", b"Y", b"A", b"N", 0, b"N", b" ")
