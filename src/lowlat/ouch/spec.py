"""NASDAQ OUCH 4.2: every message layout, written once as data.

Both backends (``lowlat.ouch._c`` and ``lowlat.ouch._py``), the batch decoder's numpy dtypes and
the tests read the layouts from here; nothing else states an offset.

Wire rules (OUCH 4.2, section 2): all integers are big-endian and unsigned; alpha fields are
left-justified and padded on the right with spaces; prices are 4-byte integers with 4 implied
decimals (``12.3400`` is ``123400``); timestamps are nanoseconds since midnight in 8 bytes.
Every message is fixed-length and starts with its one-letter type.

Directions. The specification names directions from NASDAQ's side: its "inbound" messages are the
ones a client sends (Enter, Replace, Cancel, Modify Order), its "outbound" ones come from the
exchange. To avoid the two readings, lowlat says ``"client"`` (sent to the exchange) and
``"exchange"`` (sent by the exchange). The letters ``U`` and ``M`` mean different messages in
each direction (Replace Order / Replaced, Modify Order / Order Modified), so a decoder is
always told the direction.

Coverage against the list in the issue: OUCH 4.2 has every message it names (Trade Correction
``F`` included, new in 4.2), and two it does not name, both included here: Executed with
Reference Price (``G``, 45 bytes, new in 4.2) and Price Correction (``K``, 36 bytes). Accepted
(66 bytes) and Replaced (80 bytes) carry the BBO Weight Indicator added in 4.2; the 4.1 forms (65
and 79 bytes) are rejected as the wrong length, as is a 48-byte Enter Order without Customer Type.
Framing (SoupBinTCP) is not part of OUCH; :func:`frame` writes the 2-byte big-endian length
prefix the batch decoder reads (the prefix of the daily ITCH files, SoupBinTCP's without its
packet-type byte).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

__all__ = [
    "ALPHA", "CHAR", "U32", "U64", "PRICE_SCALE", "Field", "FIELDS", "FIELD_INDEX", "Layout", "MESSAGES",
    "CLIENT", "EXCHANGE", "DIRECTIONS", "by_type", "batch_dtype", "wire_dtype", "frame", "MAX_LENGTH",
]

#: Field kinds: space-padded text, one character, 4-byte and 8-byte big-endian unsigned integers.
ALPHA, CHAR, U32, U64 = "alpha", "char", "u32", "u64"
#: Prices carry 4 implied decimals.
PRICE_SCALE = 10_000

CLIENT, EXCHANGE = "client", "exchange"
DIRECTIONS = (CLIENT, EXCHANGE)


class Field(NamedTuple):
    """One field name: its kind and width are the same in every message that carries it."""

    name: str
    kind: str
    width: int
    doc: str


#: Every field any OUCH 4.2 message carries, in a fixed order (the compiled records index by it).
FIELDS: tuple[Field, ...] = (
    Field("timestamp", U64, 8, "Nanoseconds since midnight (exchange messages)."),
    Field("order_token", ALPHA, 14, "The client's order token (14 alpha, trailing spaces removed)."),
    Field("existing_order_token", ALPHA, 14, "Replace Order: the token of the order being replaced."),
    Field("replacement_order_token", ALPHA, 14, "Replace Order / Replaced: the new order's token."),
    Field("previous_order_token", ALPHA, 14, "Replaced: the token of the order that was replaced."),
    Field("side", CHAR, 1, "Buy/Sell Indicator: 'B' buy, 'S' sell, 'T' sell short, 'E' sell short exempt."),
    Field("shares", U32, 4, "Shares (Cancel Order: the new intended size, 0 cancels all)."),
    Field("stock", ALPHA, 8, "Symbol (8 alpha, trailing spaces removed)."),
    Field("price", U32, 4, "Price, an int with 4 implied decimals."),
    Field("time_in_force", U32, 4, "Seconds; 0 immediate-or-cancel, 99998 market hours, 99999 system hours."),
    Field("firm", ALPHA, 4, "Firm (MPID)."),
    Field("display", CHAR, 1, "Display: 'Y' visible, 'N' hidden, 'A' attributable, 'P' post-only, ..."),
    Field("capacity", CHAR, 1, "Capacity: 'A' agency, 'P' principal, 'R' riskless, 'O' other."),
    Field("intermarket_sweep", CHAR, 1, "Intermarket Sweep Eligibility: 'Y' or 'N'."),
    Field("minimum_quantity", U32, 4, "Minimum quantity, 0 for none."),
    Field("cross_type", CHAR, 1, "Cross type: 'N' none, 'O' opening, 'C' closing, 'H' halt/IPO, ..."),
    Field("customer_type", CHAR, 1, "Customer type: 'R' retail, 'N' not retail, ' ' port default."),
    Field("order_reference_number", U64, 8, "The exchange's day-unique order reference number."),
    Field("order_state", CHAR, 1, "Order state: 'L' live, 'D' dead."),
    Field("bbo_weight_indicator", CHAR, 1, "BBO weight indicator: '0'-'3', 'S', 'N' or ' '."),
    Field("event_code", CHAR, 1, "System event: 'S' start of day, 'E' end of day."),
    Field("decrement_shares", U32, 4, "Shares taken off the order."),
    Field("reason", CHAR, 1, "The message's reason code (cancel, reject, broken trade, correction)."),
    Field("quantity_prevented_from_trading", U32, 4, "AIQ Canceled: shares prevented from trading."),
    Field("executed_shares", U32, 4, "Shares executed."),
    Field("execution_price", U32, 4, "Execution price, 4 implied decimals."),
    Field("new_execution_price", U32, 4, "Price Correction: the corrected execution price."),
    Field("liquidity_flag", CHAR, 1, "Liquidity flag ('A' added, 'R' removed, ...)."),
    Field("match_number", U64, 8, "The exchange's day-unique execution number."),
    Field("reference_price", U32, 4, "Executed with Reference Price: the reference price."),
    Field("reference_price_type", CHAR, 1, "Executed with Reference Price: the reference price's type."),
)
FIELD_INDEX = {f.name: i for i, f in enumerate(FIELDS)}


class Layout(NamedTuple):
    """One message: its letter, direction, name, total length and ``(field, offset)`` in order."""

    type: str
    direction: str
    name: str
    title: str
    length: int
    fields: tuple[tuple[Field, int], ...]


def _layout(type_, direction, name, title, *field_names):
    fields, offset = [], 1  # offset 0 is the message type
    for field_name in field_names:
        field = FIELDS[FIELD_INDEX[field_name]]
        fields.append((field, offset))
        offset += field.width
    return Layout(type_, direction, name, title, offset, tuple(fields))


_EXECUTION = ("timestamp", "order_token", "executed_shares", "execution_price", "liquidity_flag", "match_number")

#: Every OUCH 4.2 message by name, client messages first. Lengths are computed from the widths and
#: checked against the specification's figures at import (see ``_SPEC_LENGTHS``).
MESSAGES: dict[str, Layout] = {
    m.name: m
    for m in (
        _layout("O", CLIENT, "enter_order", "Enter Order",
                "order_token", "side", "shares", "stock", "price", "time_in_force", "firm", "display",
                "capacity", "intermarket_sweep", "minimum_quantity", "cross_type", "customer_type"),
        _layout("U", CLIENT, "replace_order", "Replace Order",
                "existing_order_token", "replacement_order_token", "shares", "price", "time_in_force",
                "display", "intermarket_sweep", "minimum_quantity"),
        _layout("X", CLIENT, "cancel_order", "Cancel Order", "order_token", "shares"),
        _layout("M", CLIENT, "modify_order", "Modify Order", "order_token", "side", "shares"),
        _layout("S", EXCHANGE, "system_event", "System Event", "timestamp", "event_code"),
        _layout("A", EXCHANGE, "accepted", "Accepted",
                "timestamp", "order_token", "side", "shares", "stock", "price", "time_in_force", "firm",
                "display", "order_reference_number", "capacity", "intermarket_sweep", "minimum_quantity",
                "cross_type", "order_state", "bbo_weight_indicator"),
        _layout("U", EXCHANGE, "replaced", "Replaced",
                "timestamp", "replacement_order_token", "side", "shares", "stock", "price", "time_in_force",
                "firm", "display", "order_reference_number", "capacity", "intermarket_sweep",
                "minimum_quantity", "cross_type", "order_state", "previous_order_token",
                "bbo_weight_indicator"),
        _layout("C", EXCHANGE, "canceled", "Canceled", "timestamp", "order_token", "decrement_shares", "reason"),
        _layout("D", EXCHANGE, "aiq_canceled", "AIQ Canceled",
                "timestamp", "order_token", "decrement_shares", "reason", "quantity_prevented_from_trading",
                "execution_price", "liquidity_flag"),
        _layout("E", EXCHANGE, "executed", "Executed", *_EXECUTION),
        _layout("G", EXCHANGE, "executed_with_reference_price", "Executed with Reference Price",
                *_EXECUTION, "reference_price", "reference_price_type"),
        _layout("B", EXCHANGE, "broken_trade", "Broken Trade", "timestamp", "order_token", "match_number", "reason"),
        _layout("F", EXCHANGE, "trade_correction", "Trade Correction", *_EXECUTION, "reason"),
        _layout("K", EXCHANGE, "price_correction", "Price Correction",
                "timestamp", "order_token", "match_number", "new_execution_price", "reason"),
        _layout("J", EXCHANGE, "rejected", "Rejected", "timestamp", "order_token", "reason"),
        _layout("P", EXCHANGE, "cancel_pending", "Cancel Pending", "timestamp", "order_token"),
        _layout("I", EXCHANGE, "cancel_reject", "Cancel Reject", "timestamp", "order_token"),
        _layout("T", EXCHANGE, "order_priority_update", "Order Priority Update",
                "timestamp", "order_token", "price", "display", "order_reference_number"),
        _layout("M", EXCHANGE, "order_modified", "Order Modified", "timestamp", "order_token", "side", "shares"),
    )
}

# The total lengths the OUCH 4.2 specification gives for each message.
_SPEC_LENGTHS = {
    "enter_order": 49, "replace_order": 47, "cancel_order": 19, "modify_order": 20,
    "system_event": 10, "accepted": 66, "replaced": 80, "canceled": 28, "aiq_canceled": 37,
    "executed": 40, "executed_with_reference_price": 45, "broken_trade": 32, "trade_correction": 41,
    "price_correction": 36, "rejected": 24, "cancel_pending": 23, "cancel_reject": 23,
    "order_priority_update": 36, "order_modified": 28,
}
for _name, _layout_ in MESSAGES.items():
    if _layout_.length != _SPEC_LENGTHS[_name]:  # a typo in a layout above: fail at import
        raise AssertionError(f"OUCH layout {_name}: {_layout_.length} bytes, the spec says {_SPEC_LENGTHS[_name]}")

#: The longest message (Replaced, 80 bytes).
MAX_LENGTH = max(m.length for m in MESSAGES.values())


def by_type(direction: str) -> dict[str, Layout]:
    """Return ``{letter: layout}`` for the messages sent in ``direction`` (``"client"``/``"exchange"``)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return {m.type: m for m in MESSAGES.values() if m.direction == direction}


def _numpy_format(field: Field) -> str:
    return {ALPHA: f"S{field.width}", CHAR: "S1", U32: "<u4", U64: "<u8"}[field.kind]


def batch_dtype(name: str) -> np.dtype:
    """Return the numpy dtype of one message's rows in ``decode_batch``: ``position`` then its fields.

    ``position`` is the message's index in the decoded stream (to merge the per-type arrays back into
    stream order). Integers are native little-endian; alpha fields keep their padding (``S14``).
    """
    layout = MESSAGES[name]
    return np.dtype([("position", "<u8")] + [(f.name, _numpy_format(f)) for f, _ in layout.fields])


def wire_dtype(name: str) -> np.dtype:
    """Return the packed big-endian dtype of one message exactly as it is on the wire (type included)."""
    layout = MESSAGES[name]
    big = {U32: ">u4", U64: ">u8"}
    return np.dtype([("type", "S1")] + [(f.name, big.get(f.kind) or _numpy_format(f)) for f, _ in layout.fields])


_PREFIX = struct.Struct(">H")


def frame(messages) -> bytes:
    """Return ``messages`` (an iterable of bytes-like) each preceded by its 2-byte big-endian length."""
    out = bytearray()
    for message in messages:
        out += _PREFIX.pack(len(message))
        out += message
    return bytes(out)
