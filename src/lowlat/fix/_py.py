"""FIX 4.2 / 4.4 encoder and validating streaming reader, pure Python: the twin of ``_c.pyx``.

This module is the source of truth for the names, signatures, docstrings and errors of
:mod:`lowlat.fix`; the compiled half matches it byte for byte (tested). Sans-I/O: bytes in,
bytes out, no sockets, no clock reads (the caller passes every timestamp).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterator, Optional, Union

from . import spec
from .spec import FixError, Reason
from .._twins import Final as _Final

__all__ = ["FixEncoder", "FixMessage", "FixReader"]

Price = Union[int, float]

_START = b"8=FIX"
_NEXT_START = b"\x018=FIX"
_TRAILER = b"\x0110="
_ENDS_EARLY = "the stream ends before the CheckSum (10)"
_STALE = "FixMessage is stale: the reader has moved on (copy what you keep, e.g. raw(), before the next call)"


def _target(buffer: object, offset: object) -> tuple[memoryview, int]:
    """Return a writable byte view of ``buffer`` and the checked ``offset`` into it."""
    try:
        view = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("buffer must be a writable contiguous bytes-like object") from None
    if view.readonly or not view.c_contiguous:
        raise TypeError("buffer must be a writable contiguous bytes-like object")
    view = view.cast("B")
    return view, spec.check_int("offset", offset, 0, len(view))


class FixEncoder(_Final):
    """Encode the FIX messages of one session into a caller's preallocated buffer.

    ``FixEncoder(sender_comp_id, target_comp_id, begin_string="FIX.4.4", *, price_decimals=4,
    timestamp_precision=3)`` holds what every message of a session repeats: BeginString (8),
    SenderCompID (49), TargetCompID (56). Each method writes one whole message at ``offset`` of
    ``buffer`` (any writable contiguous bytes-like object: ``bytearray``, ``memoryview``, numpy
    array) and returns the number of bytes written; the compiled path allocates nothing per
    message but that int. A message that does not fit raises ``ValueError`` and writes nothing.

    Every method takes ``seq_num`` (MsgSeqNum 34, >= 1) and ``sending_time_ns`` (SendingTime 52,
    ns since the Unix epoch, UTC; written with ``timestamp_precision`` decimals: 0 or 3, and 6 for
    FIX.4.4 only; truncated, never rounded). Header order: 8, 9, 35, 49, 56, 34, 52; CheckSum (10)
    last with three digits.

    Field types: quantities and counts are ints >= 0; prices are an ``int`` with
    ``price_decimals`` implied decimals (``1234500`` is 123.45 at 4) or a ``float`` rounded half
    up to ``price_decimals`` decimals, written in the shortest exact form (``123.45``, ``100``);
    strings are non-empty printable ASCII; char fields (side, ord_type, ...) one character, e.g.
    :class:`~lowlat.fix.spec.Side` ``.BUY``. An optional field left ``None`` is not written.
    Bad arguments raise ``TypeError``/``ValueError`` naming the argument. Not thread-safe: one
    encoder per thread (it keeps a cached date).
    """

    def __init__(
        self,
        sender_comp_id: str,
        target_comp_id: str,
        begin_string: str = "FIX.4.4",
        *,
        price_decimals: int = 4,
        timestamp_precision: int = 3,
    ) -> None:
        sender = spec.check_str("sender_comp_id", sender_comp_id)
        target = spec.check_str("target_comp_id", target_comp_id)
        if begin_string not in spec.BEGIN_STRINGS:
            raise ValueError(f"begin_string must be one of {spec.BEGIN_STRINGS}, got {begin_string!r}")
        spec.check_int("price_decimals", price_decimals, 0, 9)
        allowed = (0, 3, 6) if begin_string == spec.FIX44 else (0, 3)
        if timestamp_precision not in allowed:
            raise ValueError(f"timestamp_precision must be one of {allowed} for {begin_string}, got {timestamp_precision!r}")
        self._begin = b"8=" + begin_string.encode("ascii") + b"\x019="
        self._sender = sender
        self._target = target
        self._fix42 = begin_string == spec.FIX42
        self._begin_string = begin_string
        self._price_decimals = int(price_decimals)
        self._precision = int(timestamp_precision)

    @property
    def begin_string(self) -> str:
        """BeginString (8) of every message: ``"FIX.4.2"`` or ``"FIX.4.4"``."""
        return self._begin_string

    @property
    def sender_comp_id(self) -> str:
        """SenderCompID (49) of every message."""
        return self._sender.decode("ascii")

    @property
    def target_comp_id(self) -> str:
        """TargetCompID (56) of every message."""
        return self._target.decode("ascii")

    @property
    def price_decimals(self) -> int:
        """Implied decimals of int prices."""
        return self._price_decimals

    @property
    def timestamp_precision(self) -> int:
        """Decimals of the second in UTC timestamps: 0, 3 or 6."""
        return self._precision

    # -- helpers -------------------------------------------------------------------------------

    def _time(self, name: str, ns: object) -> bytes:
        return spec.format_timestamp(spec.check_int(name, ns, 0, spec.MAX_TIMESTAMP_NS), self._precision)

    def _header(self, msg_type: bytes, seq_num: object, sending_time_ns: object) -> list[bytes]:
        seq = spec.check_int("seq_num", seq_num, 1)
        return [
            b"35=%s\x0149=%s\x0156=%s\x0134=%d\x0152=%s\x01"
            % (msg_type, self._sender, self._target, seq, self._time("sending_time_ns", sending_time_ns))
        ]

    def _int(self, parts: list[bytes], tag: int, name: str, value: object, low: int = 0) -> None:
        parts.append(b"%d=%d\x01" % (tag, spec.check_int(name, value, low)))

    def _str(self, parts: list[bytes], tag: int, name: str, value: object) -> None:
        parts.append(b"%d=%s\x01" % (tag, spec.check_str(name, value)))

    def _char(self, parts: list[bytes], tag: int, name: str, value: object) -> None:
        parts.append(b"%d=%s\x01" % (tag, spec.check_char(name, value)))

    def _price(self, parts: list[bytes], tag: int, name: str, value: object) -> None:
        scaled = spec.scale_price(name, value, self._price_decimals)
        parts.append(b"%d=%s\x01" % (tag, spec.format_price(scaled, self._price_decimals)))

    def _stamp(self, parts: list[bytes], tag: int, name: str, value: object) -> None:
        parts.append(b"%d=%s\x01" % (tag, self._time(name, value)))

    def _finish(self, view: memoryview, offset: int, parts: list[bytes]) -> int:
        body = b"".join(parts)
        head = self._begin + b"%d\x01" % len(body)
        total = len(head) + len(body) + 7
        if total > len(view) - offset:
            raise ValueError(f"buffer has {len(view) - offset} bytes from offset {offset}, the message needs {total}")
        message = head + body
        view[offset : offset + total] = message + b"10=%03d\x01" % (sum(message) & 0xFF)
        return total

    # -- session messages ------------------------------------------------------------------------

    def logon(
        self,
        buffer: object,
        offset: int,
        seq_num: int,
        sending_time_ns: int,
        heart_bt_int: int = 30,
        *,
        reset_seq_num: bool = False,
        encrypt_method: int = 0,
    ) -> int:
        """Write a Logon (A): EncryptMethod (98), HeartBtInt (108) in s, ResetSeqNumFlag (141=Y) if asked.

        Return the bytes written.
        """
        view, offset = _target(buffer, offset)
        parts = self._header(b"A", seq_num, sending_time_ns)
        self._int(parts, 98, "encrypt_method", encrypt_method)
        self._int(parts, 108, "heart_bt_int", heart_bt_int)
        if reset_seq_num:
            parts.append(b"141=Y\x01")
        return self._finish(view, offset, parts)

    def heartbeat(
        self, buffer: object, offset: int, seq_num: int, sending_time_ns: int, test_req_id: Optional[str] = None
    ) -> int:
        """Write a Heartbeat (0), with TestReqID (112) when it answers a TestRequest. Return the bytes written."""
        view, offset = _target(buffer, offset)
        parts = self._header(b"0", seq_num, sending_time_ns)
        if test_req_id is not None:
            self._str(parts, 112, "test_req_id", test_req_id)
        return self._finish(view, offset, parts)

    def test_request(self, buffer: object, offset: int, seq_num: int, sending_time_ns: int, test_req_id: str) -> int:
        """Write a TestRequest (1) with TestReqID (112). Return the bytes written."""
        view, offset = _target(buffer, offset)
        parts = self._header(b"1", seq_num, sending_time_ns)
        self._str(parts, 112, "test_req_id", test_req_id)
        return self._finish(view, offset, parts)

    def resend_request(
        self, buffer: object, offset: int, seq_num: int, sending_time_ns: int, begin_seq_no: int, end_seq_no: int
    ) -> int:
        """Write a ResendRequest (2): BeginSeqNo (7), EndSeqNo (16; 0 = infinity). Return the bytes written."""
        view, offset = _target(buffer, offset)
        parts = self._header(b"2", seq_num, sending_time_ns)
        self._int(parts, 7, "begin_seq_no", begin_seq_no, 1)
        self._int(parts, 16, "end_seq_no", end_seq_no)
        return self._finish(view, offset, parts)

    def reject(
        self,
        buffer: object,
        offset: int,
        seq_num: int,
        sending_time_ns: int,
        ref_seq_num: int,
        *,
        ref_tag_id: Optional[int] = None,
        session_reject_reason: Optional[int] = None,
        text: Optional[str] = None,
    ) -> int:
        """Write a session Reject (3): RefSeqNum (45), RefTagID (371), SessionRejectReason (373), Text (58).

        Return the bytes written.
        """
        view, offset = _target(buffer, offset)
        parts = self._header(b"3", seq_num, sending_time_ns)
        self._int(parts, 45, "ref_seq_num", ref_seq_num, 1)
        if ref_tag_id is not None:
            self._int(parts, 371, "ref_tag_id", ref_tag_id, 1)
        if session_reject_reason is not None:
            self._int(parts, 373, "session_reject_reason", session_reject_reason)
        if text is not None:
            self._str(parts, 58, "text", text)
        return self._finish(view, offset, parts)

    def sequence_reset(
        self, buffer: object, offset: int, seq_num: int, sending_time_ns: int, new_seq_no: int, *, gap_fill: bool = False
    ) -> int:
        """Write a SequenceReset (4): GapFillFlag (123=Y) if ``gap_fill``, NewSeqNo (36). Return the bytes written."""
        view, offset = _target(buffer, offset)
        parts = self._header(b"4", seq_num, sending_time_ns)
        if gap_fill:
            parts.append(b"123=Y\x01")
        self._int(parts, 36, "new_seq_no", new_seq_no, 1)
        return self._finish(view, offset, parts)

    def logout(self, buffer: object, offset: int, seq_num: int, sending_time_ns: int, text: Optional[str] = None) -> int:
        """Write a Logout (5), with Text (58) when given. Return the bytes written."""
        view, offset = _target(buffer, offset)
        parts = self._header(b"5", seq_num, sending_time_ns)
        if text is not None:
            self._str(parts, 58, "text", text)
        return self._finish(view, offset, parts)

    # -- application messages ------------------------------------------------------------------

    def _order(
        self, parts: list, cl_ord_id: Any, account: Any, symbol: Any, side: Any, transact_time_ns: Any,
        quantity: Any, ord_type: Any, price: Any, time_in_force: Any,
    ) -> None:
        # The fields NewOrderSingle and OrderCancelReplaceRequest share, from ClOrdID (11) on.
        self._str(parts, 11, "cl_ord_id", cl_ord_id)
        if account is not None:
            self._str(parts, 1, "account", account)
        if self._fix42:
            parts.append(b"21=1\x01")
        self._str(parts, 55, "symbol", symbol)
        self._char(parts, 54, "side", side)
        self._stamp(parts, 60, "transact_time_ns", transact_time_ns)
        self._int(parts, 38, "quantity", quantity)
        self._char(parts, 40, "ord_type", ord_type)
        if price is not None:
            self._price(parts, 44, "price", price)
        if time_in_force is not None:
            self._char(parts, 59, "time_in_force", time_in_force)

    def new_order_single(
        self,
        buffer: object,
        offset: int,
        seq_num: int,
        sending_time_ns: int,
        cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: int,
        ord_type: str,
        price: Optional[Price] = None,
        *,
        time_in_force: Optional[str] = None,
        account: Optional[str] = None,
        transact_time_ns: Optional[int] = None,
    ) -> int:
        """Write a NewOrderSingle (D). Return the bytes written.

        Fields in order: ClOrdID (11), Account (1), HandlInst (21=1, FIX.4.2 only, where it is
        required), Symbol (55), Side (54), TransactTime (60; ``sending_time_ns`` when None),
        OrderQty (38), OrdType (40), Price (44), TimeInForce (59).
        """
        view, offset = _target(buffer, offset)
        parts = self._header(b"D", seq_num, sending_time_ns)
        self._order(parts, cl_ord_id, account, symbol, side,
                    sending_time_ns if transact_time_ns is None else transact_time_ns,
                    quantity, ord_type, price, time_in_force)
        return self._finish(view, offset, parts)

    def order_cancel_request(
        self,
        buffer: object,
        offset: int,
        seq_num: int,
        sending_time_ns: int,
        orig_cl_ord_id: str,
        cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: int,
        *,
        order_id: Optional[str] = None,
        transact_time_ns: Optional[int] = None,
    ) -> int:
        """Write an OrderCancelRequest (F). Return the bytes written.

        Fields in order: OrigClOrdID (41), OrderID (37), ClOrdID (11), Symbol (55), Side (54),
        TransactTime (60; ``sending_time_ns`` when None), OrderQty (38).
        """
        view, offset = _target(buffer, offset)
        parts = self._header(b"F", seq_num, sending_time_ns)
        self._str(parts, 41, "orig_cl_ord_id", orig_cl_ord_id)
        if order_id is not None:
            self._str(parts, 37, "order_id", order_id)
        self._str(parts, 11, "cl_ord_id", cl_ord_id)
        self._str(parts, 55, "symbol", symbol)
        self._char(parts, 54, "side", side)
        self._stamp(parts, 60, "transact_time_ns", sending_time_ns if transact_time_ns is None else transact_time_ns)
        self._int(parts, 38, "quantity", quantity)
        return self._finish(view, offset, parts)

    def order_cancel_replace_request(
        self,
        buffer: object,
        offset: int,
        seq_num: int,
        sending_time_ns: int,
        orig_cl_ord_id: str,
        cl_ord_id: str,
        symbol: str,
        side: str,
        quantity: int,
        ord_type: str,
        price: Optional[Price] = None,
        *,
        time_in_force: Optional[str] = None,
        account: Optional[str] = None,
        order_id: Optional[str] = None,
        transact_time_ns: Optional[int] = None,
    ) -> int:
        """Write an OrderCancelReplaceRequest (G). Return the bytes written.

        Fields in order: OrderID (37), OrigClOrdID (41), ClOrdID (11), Account (1), HandlInst
        (21=1, FIX.4.2 only), Symbol (55), Side (54), TransactTime (60; ``sending_time_ns`` when
        None), OrderQty (38), OrdType (40), Price (44), TimeInForce (59).
        """
        view, offset = _target(buffer, offset)
        parts = self._header(b"G", seq_num, sending_time_ns)
        if order_id is not None:
            self._str(parts, 37, "order_id", order_id)
        self._str(parts, 41, "orig_cl_ord_id", orig_cl_ord_id)
        self._order(parts, cl_ord_id, account, symbol, side,
                    sending_time_ns if transact_time_ns is None else transact_time_ns,
                    quantity, ord_type, price, time_in_force)
        return self._finish(view, offset, parts)

    def execution_report(
        self,
        buffer: object,
        offset: int,
        seq_num: int,
        sending_time_ns: int,
        order_id: str,
        exec_id: str,
        exec_type: str,
        ord_status: str,
        symbol: str,
        side: str,
        leaves_qty: int,
        cum_qty: int,
        avg_px: Price,
        *,
        cl_ord_id: Optional[str] = None,
        orig_cl_ord_id: Optional[str] = None,
        order_qty: Optional[int] = None,
        price: Optional[Price] = None,
        last_qty: Optional[int] = None,
        last_px: Optional[Price] = None,
        text: Optional[str] = None,
        transact_time_ns: Optional[int] = None,
    ) -> int:
        """Write an ExecutionReport (8). Return the bytes written.

        Fields in order: OrderID (37), ClOrdID (11), OrigClOrdID (41), ExecID (17), ExecTransType
        (20=0, FIX.4.2 only), ExecType (150), OrdStatus (39), Symbol (55), Side (54), OrderQty
        (38), Price (44), LastQty (32; LastShares in 4.2), LastPx (31), LeavesQty (151), CumQty
        (14), AvgPx (6), TransactTime (60; ``sending_time_ns`` when None), Text (58).
        """
        view, offset = _target(buffer, offset)
        parts = self._header(b"8", seq_num, sending_time_ns)
        self._str(parts, 37, "order_id", order_id)
        if cl_ord_id is not None:
            self._str(parts, 11, "cl_ord_id", cl_ord_id)
        if orig_cl_ord_id is not None:
            self._str(parts, 41, "orig_cl_ord_id", orig_cl_ord_id)
        self._str(parts, 17, "exec_id", exec_id)
        if self._fix42:
            parts.append(b"20=0\x01")
        self._char(parts, 150, "exec_type", exec_type)
        self._char(parts, 39, "ord_status", ord_status)
        self._str(parts, 55, "symbol", symbol)
        self._char(parts, 54, "side", side)
        if order_qty is not None:
            self._int(parts, 38, "order_qty", order_qty)
        if price is not None:
            self._price(parts, 44, "price", price)
        if last_qty is not None:
            self._int(parts, 32, "last_qty", last_qty)
        if last_px is not None:
            self._price(parts, 31, "last_px", last_px)
        self._int(parts, 151, "leaves_qty", leaves_qty)
        self._int(parts, 14, "cum_qty", cum_qty)
        self._price(parts, 6, "avg_px", avg_px)
        self._stamp(parts, 60, "transact_time_ns", sending_time_ns if transact_time_ns is None else transact_time_ns)
        if text is not None:
            self._str(parts, 58, "text", text)
        return self._finish(view, offset, parts)

    def order_cancel_reject(
        self,
        buffer: object,
        offset: int,
        seq_num: int,
        sending_time_ns: int,
        order_id: str,
        cl_ord_id: str,
        orig_cl_ord_id: str,
        ord_status: str,
        cxl_rej_response_to: str,
        *,
        cxl_rej_reason: Optional[int] = None,
        text: Optional[str] = None,
    ) -> int:
        """Write an OrderCancelReject (9). Return the bytes written.

        Fields in order: OrderID (37), ClOrdID (11), OrigClOrdID (41), OrdStatus (39),
        CxlRejResponseTo (434), CxlRejReason (102), Text (58).
        """
        view, offset = _target(buffer, offset)
        parts = self._header(b"9", seq_num, sending_time_ns)
        self._str(parts, 37, "order_id", order_id)
        self._str(parts, 11, "cl_ord_id", cl_ord_id)
        self._str(parts, 41, "orig_cl_ord_id", orig_cl_ord_id)
        self._char(parts, 39, "ord_status", ord_status)
        self._char(parts, 434, "cxl_rej_response_to", cxl_rej_response_to)
        if cxl_rej_reason is not None:
            self._int(parts, 102, "cxl_rej_reason", cxl_rej_reason)
        if text is not None:
            self._str(parts, 58, "text", text)
        return self._finish(view, offset, parts)


class FixMessage(_Final):
    """A read-only view of the last message a :class:`FixReader` returned, with typed access.

    The reader reuses one view for every message (no per-message dict on the compiled path): it
    is valid until the reader returns another event or is fed, finished or reset, after which
    every access raises ``ValueError`` (stale). Keep ``raw()`` (a bytes copy) to hold a
    message longer. A tag that is absent raises ``KeyError``; a value that is not of the asked
    type raises ``ValueError`` naming the tag. Lookups are O(1) for tags below 1024.
    """

    def __init__(self) -> None:
        self._owner: Optional[FixReader] = None
        self._generation = -1
        self._frame = b""
        self._fields: dict[int, tuple[int, int]] = {}
        self._order: list[int] = []

    def _span(self, tag: int) -> tuple[int, int]:
        if self._owner is None or self._owner._generation != self._generation:
            raise ValueError(_STALE)
        if type(tag) is not int:
            raise TypeError(f"tag must be an int, got {type(tag).__name__}")
        span = self._fields.get(tag)
        if span is None:
            raise KeyError(tag)
        return span

    def _value(self, tag: int) -> bytes:
        start, end = self._span(tag)
        return self._frame[start:end]

    @property
    def begin_string(self) -> str:
        """BeginString (8): ``"FIX.4.2"`` or ``"FIX.4.4"``."""
        if self._owner is None or self._owner._generation != self._generation:
            raise ValueError(_STALE)
        return self._frame[2 : self._frame.index(b"\x01")].decode("ascii")

    @property
    def msg_type(self) -> str:
        """MsgType (35), e.g. ``"D"``."""
        return self._value(35).decode("latin-1")

    @property
    def seq_num(self) -> int:
        """MsgSeqNum (34) as an int."""
        return self.get_int(34)

    @property
    def field_count(self) -> int:
        """Number of fields between BodyLength (9) and CheckSum (10)."""
        if self._owner is None or self._owner._generation != self._generation:
            raise ValueError(_STALE)
        return len(self._order)

    def has(self, tag: int, /) -> bool:
        """Return whether the message carries ``tag`` (8, 9 and 10 are not body fields)."""
        if self._owner is None or self._owner._generation != self._generation:
            raise ValueError(_STALE)
        if type(tag) is not int:
            raise TypeError(f"tag must be an int, got {type(tag).__name__}")
        return tag in self._fields

    def get_bytes(self, tag: int, /) -> bytes:
        """Return the raw value of ``tag``."""
        return self._value(tag)

    def get_str(self, tag: int, /) -> str:
        """Return the value of ``tag`` decoded as Latin-1 (every byte maps; ASCII is unchanged)."""
        return self._value(tag).decode("latin-1")

    def get_int(self, tag: int, /) -> int:
        """Return the value of ``tag`` as an int (``[-]digits``, at most 18 digits)."""
        return spec.parse_int(tag, self._value(tag))

    def get_price(self, tag: int, decimals: int, /) -> int:
        """Return the value of ``tag`` as an int with ``decimals`` implied decimals, exactly.

        ``"123.45"`` is ``1234500`` at 4 decimals; ``ValueError`` when the value has more
        non-zero decimals than ``decimals`` or is not ``[-]digits[.digits]``.
        """
        value = self._value(tag)
        spec.check_int("decimals", decimals, 0, 9)
        return spec.price_to_int(tag, value, decimals)

    def get_float(self, tag: int, /) -> float:
        """Return the value of ``tag`` (``[-]digits[.digits]``) as the nearest float."""
        return spec.parse_float(tag, self._value(tag))

    def get_decimal(self, tag: int, /) -> Decimal:
        """Return the value of ``tag`` (``[-]digits[.digits]``) as an exact ``decimal.Decimal``."""
        return spec.parse_decimal(tag, self._value(tag))

    def get_timestamp_ns(self, tag: int, /) -> int:
        """Return the UTCTimestamp of ``tag`` (``YYYYMMDD-HH:MM:SS[.d{1,9}]``) as ns since the epoch."""
        return spec.parse_timestamp(tag, self._value(tag))

    def fields(self) -> list[tuple[int, bytes]]:
        """Return ``(tag, value)`` of every body field in wire order (8, 9 and 10 excluded)."""
        if self._owner is None or self._owner._generation != self._generation:
            raise ValueError(_STALE)
        return [(tag, self._frame[self._fields[tag][0] : self._fields[tag][1]]) for tag in self._order]

    def raw(self) -> bytes:
        """Return a copy of the whole message, ``8=`` through the CheckSum's SOH."""
        if self._owner is None or self._owner._generation != self._generation:
            raise ValueError(_STALE)
        return bytes(self._frame)

    def __repr__(self) -> str:
        if self._owner is None or self._owner._generation != self._generation:
            return "<FixMessage (stale)>"
        return f"<FixMessage {self._frame.decode('latin-1').replace(chr(1), '|')}>"


class FixReader(_Final):
    """Split a FIX byte stream into validated messages: feed bytes in any split, take events out.

    ``feed(data)`` appends bytes; ``next_event()`` returns the next :class:`FixMessage` (the
    reader's one reusable view), a :class:`~lowlat.fix.spec.FixError` for a rejected span, or
    ``None`` when more bytes are needed. Iterating the reader yields events until ``None``.

    Validation: BeginString (8) must be FIX.4.2 or FIX.4.4 and first, BodyLength (9) second and
    equal to the real length, CheckSum (10) last with three digits and equal to the byte sum,
    MsgType (35) third, every field ``tag=value`` with a non-empty value, no tag twice
    (repeating groups are not supported), and every tag the message type requires present
    (:func:`~lowlat.fix.spec.required_tags`). A message failing any check comes out as one
    ``FixError`` (reason, tag, text, stream offset, bytes) covering it up to its own CheckSum or
    to the next ``8=FIX``, whichever comes first; bytes between messages that are not one come out
    as one ``garbage`` error. The stream goes on with the next ``8=FIX``: an intact message is
    never lost or returned twice, whatever precedes it. Nothing about the peer's bytes raises.

    The end of a message is looked for within ``max_message_size`` bytes; a span that long with
    no end is reported (``too_long``) and skipped. ``finish()`` marks the end of the stream: what
    is left then comes out as errors. Not thread-safe: one reader per connection and thread.
    Complexity: O(bytes) per message; the compiled half allocates only for errors and ``feed``
    growth.
    """

    def __init__(self, max_message_size: int = 65536, max_fields: int = 256) -> None:
        self._max = spec.check_int("max_message_size", max_message_size, 64, 1 << 30)
        self._max_fields = spec.check_int("max_fields", max_fields, 8, 4096)
        self._buffer = bytearray()
        self._pos = 0
        self._base = 0  # stream offset of self._buffer[0]
        self._eof = False
        self._generation = 0
        self._messages = 0
        self._errors = 0
        self._view = FixMessage()

    @property
    def max_message_size(self) -> int:
        """Longest span searched for a message's end before it is reported ``too_long``."""
        return self._max

    @property
    def max_fields(self) -> int:
        """Most body fields a message may have (more is a ``too_many_fields`` error)."""
        return self._max_fields

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned as a message or an error."""
        return len(self._buffer) - self._pos

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet returned (every byte ever fed counts)."""
        return self._base + self._pos

    @property
    def message_count(self) -> int:
        """Messages returned so far."""
        return self._messages

    @property
    def error_count(self) -> int:
        """Errors returned so far."""
        return self._errors

    def feed(self, data: object, /) -> None:
        """Append ``data`` (any bytes-like object) to the stream. ``ValueError`` after ``finish()``."""
        if self._eof:
            raise ValueError("feed() after finish(): call reset() to start a new stream")
        try:
            chunk = memoryview(data).cast("B")  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"data must be a bytes-like object, got {type(data).__name__}") from None
        self._generation += 1
        if self._pos and self._pos * 2 >= len(self._buffer):
            del self._buffer[: self._pos]
            self._base += self._pos
            self._pos = 0
        self._buffer += chunk

    def finish(self) -> None:
        """Mark the end of the stream: what remains comes out of ``next_event`` as errors."""
        self._generation += 1
        self._eof = True

    def reset(self) -> None:
        """Drop everything buffered and start a new stream at offset 0."""
        self._generation += 1
        self._buffer = bytearray()
        self._pos = 0
        self._base = 0
        self._eof = False

    def __iter__(self) -> Iterator[Union[FixMessage, FixError]]:
        return self

    def __next__(self) -> Union[FixMessage, FixError]:
        event = self.next_event()
        if event is None:
            raise StopIteration
        return event

    def next_event(self) -> Union[FixMessage, FixError, None]:
        """Return the next message (the reusable view), error, or ``None`` when more bytes are needed.

        A message or an error ends the previous message's view; ``None`` leaves it valid.
        """
        buf, p = self._buffer, self._pos
        n = len(buf)
        if p >= n:
            return None
        if not buf.startswith(_START, p):
            q = buf.find(_START, p)
            if q < 0:
                if self._eof:
                    q = n
                elif n - p > self._max:
                    q = n - 4  # the last 4 bytes may begin an 8=FIX
                else:
                    return None
            return self._error(Reason.GARBAGE, 0, f"{q - p} bytes that are not a FIX message", p, q)
        return self._frame(buf, p, n)

    # -- internals -------------------------------------------------------------------------------

    def _error(self, reason: str, tag: int, text: str, start: int, end: int) -> FixError:
        self._generation += 1
        self._pos = end
        self._errors += 1
        return FixError(reason, tag, text, self._base + start, bytes(self._buffer[start:end]))

    def _scan_end(self, buf: bytearray, p: int, n: int, strict: bool) -> tuple[int, bool, int]:
        """Return ``(end, by_trailer, k)``: where the frame at ``p`` ends.

        That is the first complete ``<SOH>10=ddd<SOH>`` (at ``k``) or the next message start,
        whichever comes first; ``end`` is -1 when neither is in the buffer yet. A start is
        ``<SOH>8=FIX`` when ``strict`` (an intact message may still be arriving: a value such as
        ``58=FIX`` must not cut it), else any ``8=FIX`` after ``p`` (the frame is already known
        to be bad, and its final SOH may be the byte that was damaged).
        """
        k = buf.find(_TRAILER, p, n)
        trailer_end = -1
        while k >= 0 and k + 8 <= n:
            if 0x30 <= buf[k + 4] <= 0x39 and 0x30 <= buf[k + 5] <= 0x39 and 0x30 <= buf[k + 6] <= 0x39 and buf[k + 7] == 1:
                trailer_end = k + 8
                break
            k = buf.find(_TRAILER, k + 1, n)
        if strict:
            s = buf.find(_NEXT_START, p, n)
            start = s + 1 if s >= 0 else -1
        else:
            start = buf.find(_START, p + 1, n)
        if start >= 0 and (trailer_end < 0 or start < trailer_end):
            return start, False, start
        return trailer_end, trailer_end >= 0, k

    def _bad(self, reason: str, tag: int, text: str, buf: bytearray, p: int, n: int) -> Optional[FixError]:
        """Report the frame at ``p`` once its end is known (else wait for more bytes)."""
        end = self._scan_end(buf, p, n, False)[0]
        if end < 0:
            if not self._eof and n - p <= self._max:
                return None
            end = n
        return self._error(reason, tag, text, p, end)

    def _cut(self, buf: bytearray, p: int, end: int) -> int:
        """Return ``end``, or the start of an ``8=FIX`` inside ``(p, end)`` if one begins there."""
        s = buf.find(_START, p + 1, end)
        return s if s >= 0 else end

    def _frame(self, buf: bytearray, p: int, n: int) -> Union[FixMessage, FixError, None]:
        eof = self._eof
        # BeginString (8)
        e8 = buf.find(b"\x01", p, min(n, p + 16))
        if e8 < 0:
            if n - p < 16:
                return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n) if eof else None
            return self._bad(Reason.BEGIN_STRING, 8, "BeginString (8) is not FIX.4.2 or FIX.4.4", buf, p, n)
        begin = bytes(buf[p + 2 : e8])
        if begin != b"FIX.4.4" and begin != b"FIX.4.2":
            return self._bad(Reason.BEGIN_STRING, 8, f"BeginString (8) {begin!r} is not FIX.4.2 or FIX.4.4", buf, p, n)
        # BodyLength (9)
        q = e8 + 1
        e9 = buf.find(b"\x01", q, min(n, q + 11))
        if e9 < 0:
            if n - q < 11:
                return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n) if eof else None
            return self._bad(Reason.BODY_LENGTH, 9, "BodyLength (9) is missing or not a number", buf, p, n)
        digits = buf[q + 2 : e9]
        if buf[q : q + 2] != b"9=" or not 1 <= len(digits) <= 8 or not digits.isdigit():
            return self._bad(Reason.BODY_LENGTH, 9, "BodyLength (9) is missing or not a number", buf, p, n)
        length = int(digits)
        body = e9 + 1
        t = body + length  # where "10=" must begin
        if length > self._max:
            return self._bad(Reason.BODY_LENGTH, 9, f"BodyLength (9) {length} exceeds max_message_size {self._max}", buf, p, n)
        if n < t + 7:
            # Not all there, or BodyLength is wrong: conclusive only when the real end shows up early.
            if self._scan_end(buf, p, n, True)[0] < 0:
                if eof:
                    return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n)
                if n - p > self._max:
                    return self._error(Reason.TOO_LONG, 0, f"no message end within {self._max} bytes", p, n)
                return None
            # The frame is bad: now any 8=FIX ends it (its final SOH may be what was damaged).
            end, by_trailer, k = self._scan_end(buf, p, n, False)
            if by_trailer:
                return self._error(Reason.BODY_LENGTH, 9, f"BodyLength (9) is {length}, the body has {k + 1 - body} bytes", p, end)
            return self._error(Reason.TRUNCATED, 10, "the next 8=FIX begins before the CheckSum (10)", p, end)
        if not (
            buf[t - 1] == 1
            and buf[t : t + 3] == b"10="
            and 0x30 <= buf[t + 3] <= 0x39
            and 0x30 <= buf[t + 4] <= 0x39
            and 0x30 <= buf[t + 5] <= 0x39
            and buf[t + 6] == 1
        ):
            end, by_trailer, k = self._scan_end(buf, p, n, False)
            if end < 0:
                if eof:
                    return self._error(Reason.TRUNCATED, 10, _ENDS_EARLY, p, n)
                if n - p > self._max:
                    return self._error(Reason.TOO_LONG, 0, f"no message end within {self._max} bytes", p, n)
                return None
            if buf[t - 1] == 1 and buf[t : t + 3] == b"10=":
                return self._error(Reason.CHECKSUM, 10, "CheckSum (10) is not three digits and SOH", p, end)
            if by_trailer:
                return self._error(Reason.BODY_LENGTH, 9, f"BodyLength (9) is {length}, the body has {k + 1 - body} bytes", p, end)
            return self._error(Reason.TRUNCATED, 10, "the next 8=FIX begins before the CheckSum (10)", p, end)
        end = t + 7
        declared = int(buf[t + 3 : t + 6])
        computed = sum(memoryview(buf)[p:t]) & 0xFF
        if declared != computed:
            return self._error(Reason.CHECKSUM, 10, f"CheckSum (10) is {declared:03d}, the bytes sum to {computed:03d}", p, self._cut(buf, p, end))
        # Body fields
        fields: dict[int, tuple[int, int]] = {}
        order: list[int] = []
        i = body
        while i < t:
            j = buf.find(b"\x01", i, t)
            eq = buf.find(b"=", i, j)
            name = buf[i:eq]
            if eq < 0 or not 1 <= eq - i <= 9 or not name.isdigit() or name[0] == 0x30:
                return self._error(Reason.MALFORMED_FIELD, 0, f"field {bytes(buf[i:j])!r} is not tag=value", p, self._cut(buf, p, end))
            tag = int(name)
            if eq + 1 == j:
                return self._error(Reason.MALFORMED_FIELD, tag, f"tag {tag} has an empty value", p, self._cut(buf, p, end))
            if not order and tag != 35:
                return self._error(Reason.MSG_TYPE, 35, "MsgType (35) is not the third field", p, self._cut(buf, p, end))
            if tag in fields or tag == 8 or tag == 9 or tag == 10:
                return self._error(Reason.REPEATED_TAG, tag, f"tag {tag} appears twice", p, self._cut(buf, p, end))
            if len(order) == self._max_fields:
                return self._error(Reason.TOO_MANY_FIELDS, tag, f"more than {self._max_fields} fields", p, self._cut(buf, p, end))
            fields[tag] = (eq + 1 - p, j - p)
            order.append(tag)
            i = j + 1
        if not order:
            return self._error(Reason.MSG_TYPE, 35, "MsgType (35) is not the third field", p, end)
        a, b = fields[35]
        msg_type = buf[p + a : p + b].decode("latin-1")
        for tag in spec.required_tags(begin.decode("ascii"), msg_type):
            if tag not in fields:
                return self._error(Reason.MISSING_TAG, tag, f"required tag {tag} is missing from MsgType {msg_type}", p, end)
        self._generation += 1
        view = self._view
        view._owner = self
        view._generation = self._generation
        view._frame = bytes(buf[p:end])
        view._fields = fields
        view._order = order
        self._pos = end
        self._messages += 1
        return view
