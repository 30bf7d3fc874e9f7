"""FIX 4.2 / 4.4 facts both backends share: tags, message types, required tags, enums, errors.

Also the plain-Python codecs of the field types (integers, prices with implied decimals, UTC
timestamps) and the argument checks, so the compiled half can call them on its slow and error
paths and both halves accept, reject and word their errors alike.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "BEGIN_STRINGS",
    "FIX42",
    "FIX44",
    "SOH",
    "Tag",
    "MsgType",
    "Side",
    "OrdType",
    "TimeInForce",
    "ExecType",
    "OrdStatus",
    "CxlRejResponseTo",
    "HEADER_REQUIRED",
    "REQUIRED",
    "required_tags",
    "Reason",
    "FixError",
    "checksum",
    "format_price",
    "price_to_int",
    "parse_float",
    "parse_decimal",
    "format_timestamp",
    "parse_timestamp",
    "parse_int",
]

FIX42 = "FIX.4.2"
FIX44 = "FIX.4.4"
#: The BeginString values the encoder writes and the reader accepts.
BEGIN_STRINGS = (FIX42, FIX44)
SOH = b"\x01"

#: Largest integer field value (and largest scaled price magnitude) either backend writes: 18 digits.
MAX_INT = 10**18 - 1


class Tag:
    """Tag numbers of the fields lowlat writes and checks."""

    Account = 1
    AvgPx = 6
    BeginSeqNo = 7
    BeginString = 8
    BodyLength = 9
    CheckSum = 10
    ClOrdID = 11
    CumQty = 14
    EndSeqNo = 16
    ExecID = 17
    ExecTransType = 20
    HandlInst = 21
    LastPx = 31
    LastQty = 32
    MsgSeqNum = 34
    MsgType = 35
    NewSeqNo = 36
    OrderID = 37
    OrderQty = 38
    OrdStatus = 39
    OrdType = 40
    OrigClOrdID = 41
    PossDupFlag = 43
    Price = 44
    RefSeqNum = 45
    SenderCompID = 49
    SendingTime = 52
    Side = 54
    Symbol = 55
    TargetCompID = 56
    Text = 58
    TimeInForce = 59
    TransactTime = 60
    EncryptMethod = 98
    CxlRejReason = 102
    HeartBtInt = 108
    TestReqID = 112
    GapFillFlag = 123
    ResetSeqNumFlag = 141
    ExecType = 150
    LeavesQty = 151
    RefTagID = 371
    SessionRejectReason = 373
    CxlRejResponseTo = 434


class MsgType:
    """MsgType (35) values in scope."""

    Heartbeat = "0"
    TestRequest = "1"
    ResendRequest = "2"
    Reject = "3"
    SequenceReset = "4"
    Logout = "5"
    ExecutionReport = "8"
    OrderCancelReject = "9"
    Logon = "A"
    NewOrderSingle = "D"
    OrderCancelRequest = "F"
    OrderCancelReplaceRequest = "G"


class Side:
    """Side (54)."""

    BUY = "1"
    SELL = "2"
    BUY_MINUS = "3"
    SELL_PLUS = "4"
    SELL_SHORT = "5"
    SELL_SHORT_EXEMPT = "6"


class OrdType:
    """OrdType (40)."""

    MARKET = "1"
    LIMIT = "2"
    STOP = "3"
    STOP_LIMIT = "4"


class TimeInForce:
    """TimeInForce (59)."""

    DAY = "0"
    GTC = "1"
    OPG = "2"
    IOC = "3"
    FOK = "4"
    GTD = "6"


class ExecType:
    """ExecType (150). ``PARTIAL_FILL``/``FILL`` are 4.2 only; 4.4 reports fills as ``TRADE``."""

    NEW = "0"
    PARTIAL_FILL = "1"
    FILL = "2"
    DONE_FOR_DAY = "3"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    STOPPED = "7"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    TRADE = "F"
    ORDER_STATUS = "I"


class OrdStatus:
    """OrdStatus (39)."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    DONE_FOR_DAY = "3"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    STOPPED = "7"
    REJECTED = "8"
    PENDING_NEW = "A"
    EXPIRED = "C"
    PENDING_REPLACE = "E"


class CxlRejResponseTo:
    """CxlRejResponseTo (434)."""

    ORDER_CANCEL_REQUEST = "1"
    ORDER_CANCEL_REPLACE_REQUEST = "2"


#: Tags every message must carry after BeginString and BodyLength (CheckSum is checked apart).
HEADER_REQUIRED = (Tag.MsgType, Tag.SenderCompID, Tag.TargetCompID, Tag.MsgSeqNum, Tag.SendingTime)

_BODY_REQUIRED_44 = {
    MsgType.Heartbeat: (),
    MsgType.TestRequest: (Tag.TestReqID,),
    MsgType.ResendRequest: (Tag.BeginSeqNo, Tag.EndSeqNo),
    MsgType.Reject: (Tag.RefSeqNum,),
    MsgType.SequenceReset: (Tag.NewSeqNo,),
    MsgType.Logout: (),
    MsgType.Logon: (Tag.EncryptMethod, Tag.HeartBtInt),
    MsgType.NewOrderSingle: (Tag.ClOrdID, Tag.Symbol, Tag.Side, Tag.TransactTime, Tag.OrdType),
    MsgType.OrderCancelRequest: (Tag.OrigClOrdID, Tag.ClOrdID, Tag.Symbol, Tag.Side, Tag.TransactTime),
    MsgType.OrderCancelReplaceRequest: (
        Tag.OrigClOrdID, Tag.ClOrdID, Tag.Symbol, Tag.Side, Tag.TransactTime, Tag.OrdType,
    ),
    MsgType.ExecutionReport: (
        Tag.OrderID, Tag.ExecID, Tag.ExecType, Tag.OrdStatus, Tag.Symbol, Tag.Side, Tag.LeavesQty,
        Tag.CumQty, Tag.AvgPx,
    ),
    MsgType.OrderCancelReject: (Tag.OrderID, Tag.ClOrdID, Tag.OrigClOrdID, Tag.OrdStatus, Tag.CxlRejResponseTo),
}
# 4.2 adds HandlInst to new and replaced orders, OrderQty to cancels, ExecTransType to reports.
_BODY_REQUIRED_42 = dict(_BODY_REQUIRED_44)
_BODY_REQUIRED_42[MsgType.NewOrderSingle] += (Tag.HandlInst,)
_BODY_REQUIRED_42[MsgType.OrderCancelReplaceRequest] += (Tag.HandlInst,)
_BODY_REQUIRED_42[MsgType.OrderCancelRequest] += (Tag.OrderQty,)
_BODY_REQUIRED_42[MsgType.ExecutionReport] += (Tag.ExecTransType,)

#: ``REQUIRED[begin_string][msg_type]``: the unconditionally required tags of each message in scope
#: (header included). A message type not listed needs only :data:`HEADER_REQUIRED`.
REQUIRED = {
    FIX42: {t: HEADER_REQUIRED + body for t, body in _BODY_REQUIRED_42.items()},
    FIX44: {t: HEADER_REQUIRED + body for t, body in _BODY_REQUIRED_44.items()},
}


def required_tags(begin_string: str, msg_type: str) -> tuple[int, ...]:
    """Return the tags a ``msg_type`` message of ``begin_string`` must carry (header included)."""
    return REQUIRED.get(begin_string, {}).get(msg_type, HEADER_REQUIRED)


class Reason:
    """The reasons a :class:`FixError` gives, one per way a peer's bytes can be wrong."""

    GARBAGE = "garbage"  #: bytes between messages that do not start with ``8=FIX``
    BEGIN_STRING = "begin_string"  #: BeginString (8) malformed or not FIX.4.2 / FIX.4.4
    BODY_LENGTH = "body_length"  #: BodyLength (9) missing, malformed, too large or not the real length
    CHECKSUM = "checksum"  #: CheckSum (10) malformed or not the sum of the bytes
    TRUNCATED = "truncated"  #: the message ends (next ``8=FIX`` or end of stream) before its CheckSum
    MALFORMED_FIELD = "malformed_field"  #: a field that is not ``tag=value`` with a numeric tag and a value
    MSG_TYPE = "msg_type"  #: MsgType (35) is not the third field
    REPEATED_TAG = "repeated_tag"  #: a tag appears twice (repeating groups are not supported)
    MISSING_TAG = "missing_tag"  #: a tag the message type requires is absent
    TOO_MANY_FIELDS = "too_many_fields"  #: more fields than the reader's ``max_fields``
    TOO_LONG = "too_long"  #: no message end within ``max_message_size`` bytes


class FixError(ValueError):
    """A rejected span of a FIX stream: what was wrong, where, and which tag.

    The reader returns these as events (it never raises them); raise one to treat it as fatal.
    ``reason`` is one of the :class:`Reason` names, ``tag`` the offending tag (0 when none),
    ``text`` a sentence saying what was wrong, ``offset`` the position of the span's first byte in
    the stream (counting every byte ever fed), ``data`` the span's bytes.
    """

    def __init__(self, reason: str, tag: int, text: str, offset: int, data: bytes) -> None:
        super().__init__(f"{reason} (tag {tag}) at stream offset {offset}: {text}")
        self.reason = reason
        self.tag = tag
        self.text = text
        self.offset = offset
        self.data = data

    def __reduce__(self):  # pickles (to another process) with its fields, not just the message
        return (type(self), (self.reason, self.tag, self.text, self.offset, self.data))

    def __repr__(self) -> str:
        return f"FixError({self.reason!r}, tag={self.tag}, offset={self.offset}, length={len(self.data)}, text={self.text!r})"


def checksum(data: bytes) -> int:
    """Return the FIX CheckSum of ``data``: the sum of its bytes modulo 256."""
    return sum(data) & 0xFF


# --- integers -----------------------------------------------------------------------------------


def check_int(name: str, value: object, low: int, high: int = MAX_INT) -> int:
    """Return ``value`` if it is an int in ``[low, high]``; ``TypeError``/``ValueError`` naming ``name``."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def parse_int(tag: int, value: bytes) -> int:
    """Return the integer a field's ``value`` holds: optional ``-``, then 1 to 18 digits."""
    body = value[1:] if value[:1] == b"-" else value
    if not body or len(body) > 18 or not body.isdigit():
        raise ValueError(f"tag {tag} is not an integer: {bytes(value)!r}")
    return int(value)


# --- strings and chars --------------------------------------------------------------------------


def check_str(name: str, value: object) -> bytes:
    """Return ``value`` (a non-empty str of printable ASCII) as bytes; else ``TypeError``/``ValueError``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{name} must be printable ASCII, got {value!r}")
    return value.encode("ascii")


def check_char(name: str, value: object) -> bytes:
    """Return ``value`` (one printable ASCII character, e.g. ``Side.BUY``) as bytes."""
    data = check_str(name, value)
    if len(data) != 1:
        raise ValueError(f"{name} must be one character, got {value!r}")
    return data


# --- prices ---------------------------------------------------------------------------------------


def scale_price(name: str, value: object, decimals: int) -> int:
    """Return ``value`` as an int with ``decimals`` implied decimals.

    An int already is one; a float is rounded half up to ``decimals`` decimals
    (``floor(value * 10**decimals + 0.5)`` in double precision, the same in both backends).
    """
    import math

    if isinstance(value, int):
        scaled = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        product = value * float(10**decimals) + 0.5
        if not -1e18 < product < 1e18:
            raise ValueError(f"{name} must be in [-{MAX_INT}, {MAX_INT}] once scaled, got {value!r}")
        scaled = math.floor(product)
    else:
        raise TypeError(f"{name} must be an int (implied decimals) or a float, got {type(value).__name__}")
    if not -MAX_INT <= scaled <= MAX_INT:
        raise ValueError(f"{name} must be in [-{MAX_INT}, {MAX_INT}] once scaled, got {value!r}")
    return scaled


def format_price(scaled: int, decimals: int) -> bytes:
    """Return the FIX text of ``scaled`` with ``decimals`` implied decimals, shortest form.

    ``format_price(1234500, 4) == b"123.45"``, ``format_price(1000000, 4) == b"100"``,
    ``format_price(-5, 2) == b"-0.05"``.
    """
    sign = b"-" if scaled < 0 else b""
    magnitude = -scaled if scaled < 0 else scaled
    if decimals == 0:
        return sign + str(magnitude).encode()
    whole, frac = divmod(magnitude, 10**decimals)
    if frac == 0:
        return sign + str(whole).encode()
    digits = str(frac).rjust(decimals, "0").rstrip("0")
    return sign + f"{whole}.{digits}".encode()


def _check_decimal(tag: int, value: bytes) -> bytes:
    """Return ``value`` as bytes if it is ``[-]digits[.digits]`` (one side of the dot may be empty)."""
    text = bytes(value)
    body = text[1:] if text[:1] == b"-" else text
    whole, dot, frac = body.partition(b".")
    if not (whole or frac) or (whole and not whole.isdigit()) or (frac and not frac.isdigit()):
        raise ValueError(f"tag {tag} is not a decimal number: {text!r}")
    return text


def parse_float(tag: int, value: bytes) -> float:
    """Return a decimal field's ``value`` as the nearest float."""
    return float(_check_decimal(tag, value))


def parse_decimal(tag: int, value: bytes) -> Decimal:
    """Return a decimal field's ``value`` as an exact :class:`decimal.Decimal`."""
    return Decimal(_check_decimal(tag, value).decode("ascii"))


def price_to_int(tag: int, value: bytes, decimals: int) -> int:
    """Return a price field's ``value`` as an int with ``decimals`` implied decimals, exactly.

    ``ValueError`` when it is not a decimal number (``[-]digits[.digits]``) or has more non-zero
    decimals than ``decimals``.
    """
    text = _check_decimal(tag, value)
    negative = text[:1] == b"-"
    whole, _, frac = (text[1:] if negative else text).partition(b".")
    whole = whole.lstrip(b"0")
    if len(whole) > 18:
        raise ValueError(f"tag {tag} is out of range once scaled by 10**{decimals}: {text!r}")
    if frac[decimals:].strip(b"0"):
        raise ValueError(f"tag {tag} has more than {decimals} decimals: {text!r}")
    digits = frac[:decimals].ljust(decimals, b"0")
    result = int(whole or b"0") * 10**decimals + (int(digits) if digits else 0)
    if negative:
        result = -result
    if not -MAX_INT <= result <= MAX_INT:
        raise ValueError(f"tag {tag} is out of range once scaled by 10**{decimals}: {text!r}")
    return result


# --- UTC timestamps -------------------------------------------------------------------------------

_NS_PER_DAY = 86_400 * 10**9
#: Latest instant the encoder writes: 2262-04-11T23:47:16.854775807Z, the most 64-bit ns hold.
MAX_TIMESTAMP_NS = 2**63 - 1


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Return ``(year, month, day)`` of ``days`` since 1970-01-01 (Howard Hinnant's algorithm)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def days_from_civil(year: int, month: int, day: int) -> int:
    """Return the days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def format_timestamp(ns: int, precision: int) -> bytes:
    """Return UTCTimestamp text ``YYYYMMDD-HH:MM:SS[.fff[fff[fff]]]`` of ``ns`` since the epoch.

    ``precision`` is the number of decimals of the second: 0, 3 (milliseconds), 6 or 9; the
    instant is truncated, never rounded (a clock reading is not moved into the future).
    """
    days, rest = divmod(ns, _NS_PER_DAY)
    year, month, day = civil_from_days(days)
    secs, frac = divmod(rest, 10**9)
    text = f"{year:04d}{month:02d}{day:02d}-{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    if precision:
        text += "." + f"{frac:09d}"[:precision]
    return text.encode("ascii")


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def parse_timestamp(tag: int, value: bytes) -> int:
    """Return ns since the epoch of a UTCTimestamp ``YYYYMMDD-HH:MM:SS[.d{1,9}]``.

    Leap second 60 is accepted as 59.999999999 (the instant cannot be represented otherwise).
    """
    text = bytes(value)
    bad = ValueError(f"tag {tag} is not a UTC timestamp (YYYYMMDD-HH:MM:SS[.fff]): {text!r}")
    if len(text) < 17 or text[8:9] != b"-" or text[11:12] != b":" or text[14:15] != b":":
        raise bad
    date, hh, mm, ss = text[:8], text[9:11], text[12:14], text[15:17]
    frac = text[18:] if len(text) > 17 else b""
    if len(text) > 17 and (text[17:18] != b"." or not 1 <= len(frac) <= 9 or not frac.isdigit()):
        raise bad
    if not (date.isdigit() and hh.isdigit() and mm.isdigit() and ss.isdigit()):
        raise bad
    year, month, day = int(date[:4]), int(date[4:6]), int(date[6:8])
    hour, minute, second = int(hh), int(mm), int(ss)
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month) and hour < 24 and minute < 60 and second <= 60):
        raise bad
    nanos = int(frac.ljust(9, b"0")) if frac else 0
    if second == 60:
        second, nanos = 59, 999_999_999
    days = days_from_civil(year, month, day)
    return ((days * 86_400 + hour * 3600 + minute * 60 + second) * 10**9) + nanos
