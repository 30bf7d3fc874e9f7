"""The OUCH 4.2 messages a session and the simulator exchange, as ``struct`` layouts.

Only what the session layer needs: the three order-entry messages (Enter, Replace, Cancel) and the
answers (System Event, Accepted, Replaced, Canceled, Executed, Rejected, Cancel Reject). Byte
layouts are NASDAQ OUCH 4.2's: big-endian integers, alpha fields left-justified and padded with
spaces, prices u32 with 4 implied decimals, timestamps u64 nanoseconds since midnight. The
complete codec (every message, buffers, batch decoding) is :mod:`lowlat.ouch`; the tests check that
these bytes are the same as its bytes.

Decoded messages are plain dicts keyed by field name plus ``"type"`` (one ASCII letter): this is
the cold path (one decode per answer the exchange sends), where clarity beats the last 100 ns.
"""

from __future__ import annotations

import struct

__all__ = ["LAYOUTS", "INBOUND", "OUTBOUND", "encode", "decode", "REJECT_REASONS", "CANCEL_REASONS",
           "TIF_IOC", "TIF_MARKET_HOURS", "TIF_SYSTEM_HOURS", "SIDES", "DISPLAYS", "price_to_int", "int_to_price"]

# (field name, struct code); "type" first in every message. Alpha fields are "<n>s".
_ENTER = (("type", "c"), ("token", "14s"), ("side", "c"), ("shares", "I"), ("stock", "8s"), ("price", "I"),
          ("tif", "I"), ("firm", "4s"), ("display", "c"), ("capacity", "c"), ("intermarket_sweep", "c"),
          ("minimum_quantity", "I"), ("cross_type", "c"), ("customer_type", "c"))
_REPLACE = (("type", "c"), ("existing_token", "14s"), ("replacement_token", "14s"), ("shares", "I"),
            ("price", "I"), ("tif", "I"), ("display", "c"), ("intermarket_sweep", "c"), ("minimum_quantity", "I"))
_CANCEL = (("type", "c"), ("token", "14s"), ("shares", "I"))
_SYSTEM_EVENT = (("type", "c"), ("timestamp", "Q"), ("event", "c"))
_ACCEPTED = (("type", "c"), ("timestamp", "Q"), ("token", "14s"), ("side", "c"), ("shares", "I"), ("stock", "8s"),
             ("price", "I"), ("tif", "I"), ("firm", "4s"), ("display", "c"), ("order_reference", "Q"),
             ("capacity", "c"), ("intermarket_sweep", "c"), ("minimum_quantity", "I"), ("cross_type", "c"),
             ("order_state", "c"), ("bbo_weight", "c"))
_REPLACED = (("type", "c"), ("timestamp", "Q"), ("token", "14s"), ("side", "c"), ("shares", "I"), ("stock", "8s"),
             ("price", "I"), ("tif", "I"), ("firm", "4s"), ("display", "c"), ("order_reference", "Q"),
             ("capacity", "c"), ("intermarket_sweep", "c"), ("minimum_quantity", "I"), ("cross_type", "c"),
             ("order_state", "c"), ("previous_token", "14s"), ("bbo_weight", "c"))
_CANCELED = (("type", "c"), ("timestamp", "Q"), ("token", "14s"), ("decrement", "I"), ("reason", "c"))
_EXECUTED = (("type", "c"), ("timestamp", "Q"), ("token", "14s"), ("shares", "I"), ("price", "I"),
             ("liquidity", "c"), ("match_number", "Q"))
_REJECTED = (("type", "c"), ("timestamp", "Q"), ("token", "14s"), ("reason", "c"))
_CANCEL_REJECT = (("type", "c"), ("timestamp", "Q"), ("token", "14s"))

OUTBOUND = {"O": _ENTER, "U": _REPLACE, "X": _CANCEL}  # client to exchange
INBOUND = {"S": _SYSTEM_EVENT, "A": _ACCEPTED, "U": _REPLACED, "C": _CANCELED, "E": _EXECUTED, "J": _REJECTED,
           "I": _CANCEL_REJECT}  # exchange to client
LAYOUTS = {("out", k): v for k, v in OUTBOUND.items()} | {("in", k): v for k, v in INBOUND.items()}

_STRUCTS = {key: (struct.Struct(">" + "".join(code for _, code in fields)), fields) for key, fields in LAYOUTS.items()}

REJECT_REASONS = {"T": "test mode", "H": "halted", "Z": "shares exceed the configured safety threshold",
                  "S": "invalid stock", "D": "invalid display type", "C": "exchange closed",
                  "L": "firm not authorized for the clearing type", "M": "outside permitted times for the clearing type",
                  "R": "not allowed in this type of cross", "X": "invalid price", "N": "invalid minimum quantity",
                  "O": "other"}
CANCEL_REASONS = {"U": "user requested", "I": "immediate or cancel", "T": "timeout", "S": "supervisory",
                  "D": "regulatory restriction", "Q": "self-match prevention", "Z": "system cancel"}
TIF_IOC, TIF_MARKET_HOURS, TIF_SYSTEM_HOURS = 0, 99998, 99999
SIDES = frozenset("BSTE")
DISPLAYS = frozenset("YNAPIMWLOTQ")


def price_to_int(price) -> int:
    """A price in dollars (float, Decimal, str) as OUCH's u32 with 4 implied decimals."""
    from decimal import Decimal

    return int((Decimal(str(price)) * 10000).to_integral_value())


def int_to_price(value: int) -> float:
    return value / 10000


def encode(direction: str, **fields) -> bytes:
    """Pack the message ``fields["type"]`` (``direction`` "out": client to exchange, "in": back).

    Strings are ASCII (alpha fields padded with spaces, one-letter fields as str), integers as
    given; a missing field or one that does not fit is a ``ValueError`` naming it.
    """
    kind = fields.get("type")
    try:
        packer, layout = _STRUCTS[(direction, kind)]
    except KeyError:
        raise ValueError(f"type: no OUCH 4.2 {direction}bound message {kind!r}") from None
    values = []
    for name, code in layout:
        if name not in fields:
            raise ValueError(f"{name}: missing from OUCH {kind!r}")
        value = fields[name]
        if code.endswith("s") or code == "c":
            width = 1 if code == "c" else int(code[:-1])
            raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if len(raw) > width or (code == "c" and len(raw) != 1):
                raise ValueError(f"{name}: {value!r} does not fit {width} byte(s)")
            value = raw.ljust(width)
        values.append(value)
    try:
        return packer.pack(*values)
    except struct.error as error:
        raise ValueError(f"OUCH {kind!r}: {error}") from None


def decode(direction: str, data: bytes) -> dict:
    """Unpack one message into a dict (alpha fields stripped of padding); ``ValueError`` on an
    unknown type or a wrong length (offset 0 of ``data``)."""
    if not data:
        raise ValueError("offset 0: empty OUCH message")
    kind = chr(data[0])
    try:
        unpacker, layout = _STRUCTS[(direction, kind)]
    except KeyError:
        raise ValueError(f"offset 0: unknown OUCH 4.2 {direction}bound message type {kind!r}") from None
    if len(data) != unpacker.size:
        raise ValueError(f"offset 0: OUCH {kind!r} is {unpacker.size} bytes, got {len(data)}")
    out = {}
    for (name, code), value in zip(layout, unpacker.unpack(data)):
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace").rstrip(" ")
        out[name] = value
    return out
