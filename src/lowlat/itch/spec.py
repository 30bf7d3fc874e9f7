"""NASDAQ TotalView-ITCH 5.0 message layouts, written once as data.

Every message starts with the same 11-byte header: message type (1 byte, ASCII), stock locate
(u16), tracking number (u16) and timestamp (u48, nanoseconds since midnight). All integers are
big-endian on the wire. Prices are unsigned integers with 4 implied decimals (``Price(4)``, u32),
except the MWCB decline levels which have 8 (``Price(8)``, u64); :func:`price_to_float` turns them
into floats.

Everything else in :mod:`lowlat.itch` is derived from :data:`MESSAGES`: the wire size of each
type, the native numpy dtype of the decoded columns, the pure decoder's big-endian views, the
compiled decoder's field table and the synthetic feed generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = [
    "ALPHA",
    "Field",
    "HEADER",
    "HEADER_SIZE",
    "INTEGER",
    "MESSAGES",
    "MessageSpec",
    "PRICE",
    "TIMESTAMP",
    "TYPES",
    "by_type",
    "dtype_of",
    "price_to_float",
    "wire_dtype_of",
]

#: Field kinds. ALPHA: left-justified, space-padded ASCII (bytes); INTEGER: unsigned big-endian;
#: PRICE: unsigned big-endian with implied decimals; TIMESTAMP: 6-byte unsigned big-endian ns.
ALPHA = "alpha"
INTEGER = "integer"
PRICE = "price"
TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class Field:
    """One field of a message: its name (the spec's, in snake case), wire width and kind."""

    name: str
    width: int
    kind: str


@dataclass(frozen=True)
class MessageSpec:
    """One ITCH 5.0 message type: type char, name, body fields after the header, price decimals."""

    type: str
    name: str
    fields: tuple[Field, ...]
    price_decimals: int = 4

    @property
    def size(self) -> int:
        """Return the wire size in bytes, type byte and header included."""
        return 1 + sum(f.width for f in HEADER) + sum(f.width for f in self.fields)

    @property
    def all_fields(self) -> tuple[Field, ...]:
        """Return the header fields (without the type byte) followed by the body fields."""
        return HEADER + self.fields


#: The header after the type byte, common to every message.
HEADER: tuple[Field, ...] = (
    Field("stock_locate", 2, INTEGER),
    Field("tracking_number", 2, INTEGER),
    Field("timestamp", 6, TIMESTAMP),
)
HEADER_SIZE = 11


def _spec(type_: str, name: str, *fields: tuple[str, int, str], price_decimals: int = 4) -> MessageSpec:
    return MessageSpec(type_, name, tuple(Field(*f) for f in fields), price_decimals)


_A, _I, _P = ALPHA, INTEGER, PRICE

#: Every message type of the ITCH 5.0 specification (section numbers of the NASDAQ document).
MESSAGES: tuple[MessageSpec, ...] = (
    # 1.1 System Event
    _spec("S", "system_event", ("event_code", 1, _A)),
    # 1.2.1 Stock Directory
    _spec(
        "R", "stock_directory",
        ("stock", 8, _A), ("market_category", 1, _A), ("financial_status_indicator", 1, _A),
        ("round_lot_size", 4, _I), ("round_lots_only", 1, _A), ("issue_classification", 1, _A),
        ("issue_sub_type", 2, _A), ("authenticity", 1, _A), ("short_sale_threshold_indicator", 1, _A),
        ("ipo_flag", 1, _A), ("luld_reference_price_tier", 1, _A), ("etp_flag", 1, _A),
        ("etp_leverage_factor", 4, _I), ("inverse_indicator", 1, _A),
    ),
    # 1.2.2 Stock Trading Action
    _spec("H", "stock_trading_action", ("stock", 8, _A), ("trading_state", 1, _A), ("reserved", 1, _A), ("reason", 4, _A)),
    # 1.2.3 Reg SHO Short Sale Price Test Restricted Indicator
    _spec("Y", "reg_sho_restriction", ("stock", 8, _A), ("reg_sho_action", 1, _A)),
    # 1.2.4 Market Participant Position
    _spec(
        "L", "market_participant_position",
        ("mpid", 4, _A), ("stock", 8, _A), ("primary_market_maker", 1, _A),
        ("market_maker_mode", 1, _A), ("market_participant_state", 1, _A),
    ),
    # 1.2.5.1 MWCB Decline Level (Price(8))
    _spec("V", "mwcb_decline_level", ("level1", 8, _P), ("level2", 8, _P), ("level3", 8, _P), price_decimals=8),
    # 1.2.5.2 MWCB Status
    _spec("W", "mwcb_status", ("breached_level", 1, _A)),
    # 1.2.6 IPO Quoting Period Update
    _spec(
        "K", "ipo_quoting_period_update",
        ("stock", 8, _A), ("ipo_quotation_release_time", 4, _I),
        ("ipo_quotation_release_qualifier", 1, _A), ("ipo_price", 4, _P),
    ),
    # 1.2.7 LULD Auction Collar
    _spec(
        "J", "luld_auction_collar",
        ("stock", 8, _A), ("auction_collar_reference_price", 4, _P), ("upper_auction_collar_price", 4, _P),
        ("lower_auction_collar_price", 4, _P), ("auction_collar_extension", 4, _I),
    ),
    # 1.2.8 Operational Halt
    _spec("h", "operational_halt", ("stock", 8, _A), ("market_code", 1, _A), ("operational_halt_action", 1, _A)),
    # 1.3.1 Add Order - No MPID Attribution
    _spec(
        "A", "add_order",
        ("order_reference_number", 8, _I), ("buy_sell_indicator", 1, _A), ("shares", 4, _I),
        ("stock", 8, _A), ("price", 4, _P),
    ),
    # 1.3.2 Add Order with MPID Attribution
    _spec(
        "F", "add_order_mpid",
        ("order_reference_number", 8, _I), ("buy_sell_indicator", 1, _A), ("shares", 4, _I),
        ("stock", 8, _A), ("price", 4, _P), ("attribution", 4, _A),
    ),
    # 1.4.1 Order Executed
    _spec("E", "order_executed", ("order_reference_number", 8, _I), ("executed_shares", 4, _I), ("match_number", 8, _I)),
    # 1.4.2 Order Executed With Price
    _spec(
        "C", "order_executed_with_price",
        ("order_reference_number", 8, _I), ("executed_shares", 4, _I), ("match_number", 8, _I),
        ("printable", 1, _A), ("execution_price", 4, _P),
    ),
    # 1.4.3 Order Cancel
    _spec("X", "order_cancel", ("order_reference_number", 8, _I), ("cancelled_shares", 4, _I)),
    # 1.4.4 Order Delete
    _spec("D", "order_delete", ("order_reference_number", 8, _I)),
    # 1.4.5 Order Replace
    _spec(
        "U", "order_replace",
        ("original_order_reference_number", 8, _I), ("new_order_reference_number", 8, _I),
        ("shares", 4, _I), ("price", 4, _P),
    ),
    # 1.5.1 Trade Message (Non-Cross)
    _spec(
        "P", "trade",
        ("order_reference_number", 8, _I), ("buy_sell_indicator", 1, _A), ("shares", 4, _I),
        ("stock", 8, _A), ("price", 4, _P), ("match_number", 8, _I),
    ),
    # 1.5.2 Cross Trade
    _spec(
        "Q", "cross_trade",
        ("shares", 8, _I), ("stock", 8, _A), ("cross_price", 4, _P), ("match_number", 8, _I), ("cross_type", 1, _A),
    ),
    # 1.5.3 Broken Trade / Order Execution
    _spec("B", "broken_trade", ("match_number", 8, _I)),
    # 1.6 Net Order Imbalance Indicator (NOII)
    _spec(
        "I", "noii",
        ("paired_shares", 8, _I), ("imbalance_shares", 8, _I), ("imbalance_direction", 1, _A),
        ("stock", 8, _A), ("far_price", 4, _P), ("near_price", 4, _P), ("current_reference_price", 4, _P),
        ("cross_type", 1, _A), ("price_variation_indicator", 1, _A),
    ),
    # 1.7 Retail Price Improvement Indicator (RPII)
    _spec("N", "rpii", ("stock", 8, _A), ("interest_flag", 1, _A)),
    # 1.8 Direct Listing with Capital Raise Price Discovery (DLCR)
    _spec(
        "O", "dlcr",
        ("stock", 8, _A), ("open_eligibility_status", 1, _A), ("minimum_allowable_price", 4, _P),
        ("maximum_allowable_price", 4, _P), ("near_execution_price", 4, _P), ("near_execution_time", 8, _I),
        ("lower_price_range_collar", 4, _P), ("upper_price_range_collar", 4, _P),
    ),
)

#: The type chars, in :data:`MESSAGES` order.
TYPES: tuple[str, ...] = tuple(m.type for m in MESSAGES)

_BY_TYPE = {m.type: m for m in MESSAGES}


def by_type(message_type: str) -> MessageSpec:
    """Return the spec of ``message_type`` (a one-char str); ``KeyError`` when not ITCH 5.0."""
    return _BY_TYPE[message_type]


_INT_DTYPES = {1: "u1", 2: "u2", 4: "u4", 8: "u8"}
_dtype_cache: dict[str, np.dtype] = {}
_wire_cache: dict[str, np.dtype] = {}


def dtype_of(message_type: str) -> np.dtype:
    """Return the native-endian structured dtype of decoded ``message_type`` records.

    Columns: ``position`` (int64, the message's index in the stream or its MoldUDP64 sequence
    number), ``stock_locate`` (uint16), ``tracking_number`` (uint16), ``timestamp`` (int64 ns since
    midnight), then the body fields: alpha fields as ``S<width>`` bytes, integers and prices as the
    wire's unsigned integer of the same width.
    """
    cached = _dtype_cache.get(message_type)
    if cached is None:
        spec = by_type(message_type)
        cols = [("position", "i8")]
        for f in spec.all_fields:
            if f.kind == ALPHA:
                cols.append((f.name, f"S{f.width}"))
            elif f.kind == TIMESTAMP:
                cols.append((f.name, "i8"))
            else:
                cols.append((f.name, _INT_DTYPES[f.width]))
        cached = _dtype_cache[message_type] = np.dtype(cols, align=True)
    return cached


def wire_dtype_of(message_type: str) -> np.dtype:
    """Return the packed big-endian dtype of one ``message_type`` message exactly as on the wire.

    The 6-byte timestamp is split into ``timestamp_high`` (u16) and ``timestamp_low`` (u32).
    """
    cached = _wire_cache.get(message_type)
    if cached is None:
        spec = by_type(message_type)
        cols = [("type", "S1")]
        for f in spec.all_fields:
            if f.kind == ALPHA:
                cols.append((f.name, f"S{f.width}"))
            elif f.kind == TIMESTAMP:
                cols += [("timestamp_high", ">u2"), ("timestamp_low", ">u4")]
            else:
                cols.append((f.name, ">" + _INT_DTYPES[f.width]))
        cached = _wire_cache[message_type] = np.dtype(cols)
        assert cached.itemsize == spec.size
    return cached


def price_to_float(price, decimals: int = 4):
    """Return ``price`` (a wire integer or an integer array) as float(s): ``price / 10**decimals``.

    ITCH prices carry 4 implied decimals (``decimals=4``); the MWCB decline levels (type ``V``)
    carry 8. Floats are for display and research; keep the integers for arithmetic and keys.
    """
    if isinstance(price, np.ndarray):
        return price.astype(np.float64) / (10.0**decimals)
    return int(price) / (10.0**decimals)


def field_names(types: Iterable[str] | None = None) -> list[str]:
    """Return the union of body field names over ``types`` (all types by default), first seen first."""
    seen: dict[str, None] = {}
    for t in types if types is not None else TYPES:
        for f in by_type(t).all_fields:
            seen.setdefault(f.name)
    return list(seen)
