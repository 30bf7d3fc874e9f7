"""lowlat.fix on both backends: byte-exact encoding, the simplefix referee, the reader under damage."""

import calendar
import inspect
import os
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import simplefix
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import load_backend
from lowlat._backend import BACKENDS
from lowlat.fix import spec
from lowlat.fix.spec import FixError, Reason

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Each encoder method: its MsgType and, per argument after sending_time_ns, (tag, kind).
S, C, I, P, T, F = "str", "char", "int", "price", "time", "flag"
MESSAGES = {
    "logon": ("A", {"heart_bt_int": (108, I), "reset_seq_num": (141, F), "encrypt_method": (98, I)}),
    "heartbeat": ("0", {"test_req_id": (112, S)}),
    "test_request": ("1", {"test_req_id": (112, S)}),
    "resend_request": ("2", {"begin_seq_no": (7, I), "end_seq_no": (16, I)}),
    "reject": ("3", {"ref_seq_num": (45, I), "ref_tag_id": (371, I), "session_reject_reason": (373, I), "text": (58, S)}),
    "sequence_reset": ("4", {"new_seq_no": (36, I), "gap_fill": (123, F)}),
    "logout": ("5", {"text": (58, S)}),
    "new_order_single": ("D", {
        "cl_ord_id": (11, S), "symbol": (55, S), "side": (54, C), "quantity": (38, I), "ord_type": (40, C),
        "price": (44, P), "time_in_force": (59, C), "account": (1, S), "transact_time_ns": (60, T)}),
    "order_cancel_request": ("F", {
        "orig_cl_ord_id": (41, S), "cl_ord_id": (11, S), "symbol": (55, S), "side": (54, C), "quantity": (38, I),
        "order_id": (37, S), "transact_time_ns": (60, T)}),
    "order_cancel_replace_request": ("G", {
        "orig_cl_ord_id": (41, S), "cl_ord_id": (11, S), "symbol": (55, S), "side": (54, C), "quantity": (38, I),
        "ord_type": (40, C), "price": (44, P), "time_in_force": (59, C), "account": (1, S), "order_id": (37, S),
        "transact_time_ns": (60, T)}),
    "execution_report": ("8", {
        "order_id": (37, S), "exec_id": (17, S), "exec_type": (150, C), "ord_status": (39, C), "symbol": (55, S),
        "side": (54, C), "leaves_qty": (151, I), "cum_qty": (14, I), "avg_px": (6, P), "cl_ord_id": (11, S),
        "orig_cl_ord_id": (41, S), "order_qty": (38, I), "price": (44, P), "last_qty": (32, I), "last_px": (31, P),
        "text": (58, S), "transact_time_ns": (60, T)}),
    "order_cancel_reject": ("9", {
        "order_id": (37, S), "cl_ord_id": (11, S), "orig_cl_ord_id": (41, S), "ord_status": (39, C),
        "cxl_rej_response_to": (434, C), "cxl_rej_reason": (102, I), "text": (58, S)}),
}
AT_LEAST_ONE = {"begin_seq_no", "ref_seq_num", "ref_tag_id", "new_seq_no"}
NOW_NS = 1_764_151_200_123_456_789  # 2025-11-26 10:00:00.123456789 UTC
MAX_TS = 2**63 - 1  # 2262-04-11 23:47:16.854775807, the encoder's last instant


@pytest.fixture(scope="module")
def fix(backend_name):
    return load_backend(backend_name, "lowlat.fix")


def _signature(method):
    return inspect.signature(getattr(load_backend("python", "lowlat.fix").FixEncoder, method)).parameters


def _required(method):
    return {name for name, p in _signature(method).items() if p.default is inspect.Parameter.empty}


texts = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24)
chars = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
timestamps = st.integers(0, MAX_TS)


def _value(kind, name, price_decimals):
    if kind == S:
        return st.one_of(texts, st.sampled_from(["8=FIX.4.4 inside a value", "x 10=123 y", "=", "a=b=c"]))
    if kind == C:
        return chars
    if kind == I:
        return st.integers(1 if name in AT_LEAST_ONE else 0, 10**18 - 1)
    if kind == P:
        bound = 10**18 - 1
        return st.one_of(
            st.integers(-bound, bound),
            st.integers(-10**12, 10**12).map(lambda v: v / 10**price_decimals),  # floats that round-trip
        )
    if kind == T:
        return timestamps
    return st.booleans()


@st.composite
def messages(draw, methods=tuple(MESSAGES), price_decimals=4):
    """Draw (method, kwargs) with every required argument and some optional ones."""
    method = draw(st.sampled_from(methods))
    required = _required(method)
    kwargs = {"seq_num": draw(st.integers(1, 10**18 - 1)), "sending_time_ns": draw(timestamps)}
    for name, (_, kind) in MESSAGES[method][1].items():
        if name in required or draw(st.booleans()):
            kwargs[name] = draw(_value(kind, name, price_decimals))
    return method, kwargs


def _encode(encoder, method, kwargs, size=1024):
    buffer = bytearray(size)
    n = getattr(encoder, method)(buffer, 0, **kwargs)
    return bytes(buffer[:n])


def _encoders(fix, version, precision=3):
    return fix.FixEncoder("LOWLAT", "EXCHANGE", version, timestamp_precision=precision)


def _one_message(fix, data):
    reader = fix.FixReader()
    reader.feed(data)
    event = reader.next_event()
    assert not isinstance(event, FixError), event
    assert event is not None and reader.buffered == 0
    return event


def _kwargs_from(view, method, price_decimals=4):
    """Rebuild an encoder call's arguments from a parsed message, through the typed getters."""
    kwargs = {"seq_num": view.seq_num, "sending_time_ns": view.get_timestamp_ns(52)}
    for name, (tag, kind) in MESSAGES[method][1].items():
        if not view.has(tag):
            continue
        if kind == S:
            kwargs[name] = view.get_str(tag)
        elif kind == C:
            kwargs[name] = view.get_str(tag)
        elif kind == I:
            kwargs[name] = view.get_int(tag)
        elif kind == P:
            kwargs[name] = view.get_price(tag, price_decimals)
        elif kind == T:
            kwargs[name] = view.get_timestamp_ns(tag)
        else:
            kwargs[name] = view.get_str(tag) == "Y"
    return kwargs


# --- a hand-checked message -------------------------------------------------------------------------


def test_new_order_single_bytes_by_hand(fix):
    encoder = fix.FixEncoder("SENDER", "TARGET", "FIX.4.2")
    data = _encode(encoder, "new_order_single", dict(
        seq_num=7, sending_time_ns=1_700_000_000_123_999_999, cl_ord_id="ORD1", symbol="AAPL",
        side=spec.Side.BUY, quantity=100, ord_type=spec.OrdType.LIMIT, price=1_234_500))
    body = (b"35=D\x0149=SENDER\x0156=TARGET\x0134=7\x0152=20231114-22:13:20.123\x0111=ORD1\x0121=1\x0155=AAPL"
            b"\x0154=1\x0160=20231114-22:13:20.123\x0138=100\x0140=2\x0144=123.45\x01")
    head = b"8=FIX.4.2\x019=" + str(len(body)).encode() + b"\x01"
    total = sum(head + body) % 256
    assert data == head + body + b"10=%03d\x01" % total
    assert len(body) == 128 and total == 93


def test_fix44_microseconds_and_precision_rules(fix):
    encoder = _encoders(fix, "FIX.4.4", precision=6)
    data = _encode(encoder, "heartbeat", dict(seq_num=1, sending_time_ns=NOW_NS))
    assert b"\x0152=20251126-10:00:00.123456\x01" in data
    assert b"52=20251126-10:00:00\x01" in _encode(_encoders(fix, "FIX.4.4", 0), "heartbeat", dict(seq_num=1, sending_time_ns=NOW_NS))
    with pytest.raises(ValueError, match="timestamp_precision"):
        fix.FixEncoder("A", "B", "FIX.4.2", timestamp_precision=6)
    with pytest.raises(ValueError, match="begin_string"):
        fix.FixEncoder("A", "B", "FIX.4.3")


# --- round trips and the two backends -------------------------------------------------------------


@pytest.mark.parametrize("version", ["FIX.4.2", "FIX.4.4"])
@pytest.mark.parametrize("method", list(MESSAGES))
@SETTINGS
@given(data=st.data())
def test_every_message_round_trips_byte_for_byte(fix, method, version, data):
    _, kwargs = data.draw(messages(methods=(method,)))
    encoder = _encoders(fix, version)
    first = _encode(encoder, method, kwargs)
    view = _one_message(fix, first)
    assert view.raw() == first
    assert view.msg_type == MESSAGES[method][0] and view.begin_string == version
    assert _encode(encoder, method, _kwargs_from(view, method)) == first


@pytest.mark.parametrize("version", ["FIX.4.2", "FIX.4.4"])
@SETTINGS
@given(message=messages(), offset=st.integers(0, 64))
def test_backends_write_identical_bytes(version, message, offset):
    method, kwargs = message
    outputs = []
    for name in BACKENDS:
        fix = load_backend(name, "lowlat.fix")
        buffer = bytearray(b"\xee" * 1200)
        n = getattr(_encoders(fix, version, 6 if version == "FIX.4.4" else 3), method)(buffer, offset, **kwargs)
        assert buffer[:offset] == b"\xee" * offset and buffer[offset + n:] == b"\xee" * (1200 - offset - n)
        outputs.append(bytes(buffer))
    assert outputs[0] == outputs[1]


def _error_of(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - comparing what each backend raises
        return type(exc), str(exc)
    return None


BAD_ARGUMENTS = [
    ("seq_num", 0), ("seq_num", -1), ("seq_num", 10**18), ("seq_num", 1.0), ("seq_num", "1"),
    ("sending_time_ns", -1), ("sending_time_ns", MAX_TS * 2), ("sending_time_ns", None),
    ("cl_ord_id", ""), ("cl_ord_id", "a\x01b"), ("cl_ord_id", "é"), ("cl_ord_id", b"ORD"), ("cl_ord_id", None),
    ("side", "12"), ("side", ""), ("side", 1), ("quantity", -1), ("quantity", 10**18), ("quantity", 1.5),
    ("price", float("nan")), ("price", float("inf")), ("price", 1e300), ("price", 10**18), ("price", "1.5"),
    ("transact_time_ns", -5), ("time_in_force", "ab"), ("account", ""),
]


@pytest.mark.parametrize("name,value", BAD_ARGUMENTS)
def test_bad_arguments_raise_the_same_error_in_both_backends(name, value):
    kwargs = dict(seq_num=1, sending_time_ns=NOW_NS, cl_ord_id="C1", symbol="AAPL", side="1", quantity=10,
                  ord_type="2", price=100, time_in_force="0", account="ACC", transact_time_ns=NOW_NS)
    kwargs[name] = value
    errors = []
    for backend in BACKENDS:
        fix = load_backend(backend, "lowlat.fix")
        errors.append(_error_of(lambda: _encode(_encoders(fix, "FIX.4.4"), "new_order_single", kwargs)))
    assert errors[0] is not None and errors[0][0] in (TypeError, ValueError), errors
    assert name in errors[0][1]
    assert errors[0] == errors[1]


def test_buffer_checks(fix):
    encoder = _encoders(fix, "FIX.4.4")
    args = (1, NOW_NS, "ORD1", "AAPL", "1", 100, "2", 1_000_000)
    n = encoder.new_order_single(bytearray(512), 0, *args)
    exact = bytearray(n + 10)
    assert encoder.new_order_single(exact, 10, *args) == n
    too_small = bytearray(b"\x00" * (n + 9))
    with pytest.raises(ValueError, match="buffer"):
        encoder.new_order_single(too_small, 10, *args)
    assert too_small == bytearray(n + 9)  # nothing written
    with pytest.raises(ValueError, match="offset"):
        encoder.new_order_single(bytearray(512), 513, *args)
    with pytest.raises(ValueError, match="offset"):
        encoder.new_order_single(bytearray(512), -1, *args)
    with pytest.raises(TypeError, match="buffer"):
        encoder.new_order_single(bytes(512), 0, *args)
    with pytest.raises(TypeError, match="buffer"):
        encoder.new_order_single(memoryview(bytearray(1024))[::2], 0, *args)
    with pytest.raises(TypeError, match="buffer"):
        encoder.new_order_single(None, 0, *args)
    import numpy as np

    array = np.zeros(512, dtype=np.uint8)
    assert encoder.new_order_single(array, 3, *args) == n
    assert bytes(array[3 : 3 + n]) == bytes(exact[10:])


# --- simplefix as referee ---------------------------------------------------------------------------


def _expected_text(kind, value, price_decimals=4, precision=3):
    """The FIX text of one argument, formatted here without lowlat."""
    if kind in (S, C):
        return value.encode()
    if kind == I:
        return str(value).encode()
    if kind == F:
        return b"Y"
    if kind == T:
        moment = datetime.fromtimestamp(value // 10**9, tz=timezone.utc)
        text = moment.strftime("%Y%m%d-%H:%M:%S")
        if precision:
            text += "." + f"{value % 10**9:09d}"[:precision]
        return text.encode()
    scaled = value if isinstance(value, int) else int(Decimal(repr(value)).scaleb(price_decimals).to_integral_value())
    number = Decimal(scaled).scaleb(-price_decimals)
    return number


@pytest.mark.parametrize("version", ["FIX.4.2", "FIX.4.4"])
@SETTINGS
@given(message=messages())
def test_simplefix_parses_what_lowlat_writes(fix, version, message):
    method, kwargs = message
    data = _encode(_encoders(fix, version), method, kwargs)
    parser = simplefix.FixParser()
    parser.append_buffer(data)
    parsed = parser.get_message()
    assert parsed is not None and parser.get_message() is None
    pairs = list(parsed)
    assert pairs[0] == (8, version.encode())
    body_start = data.index(b"\x01", data.index(b"\x019=") + 1) + 1
    assert pairs[1][0] == 9 and int(pairs[1][1]) == data.index(b"\x0110=") + 1 - body_start
    assert pairs[-1][0] == 10 and int(pairs[-1][1]) == sum(data[: data.index(b"\x0110=") + 1]) % 256
    got = {tag: value for tag, value in pairs}
    assert len(got) == len(pairs)
    assert got[35] == MESSAGES[method][0].encode() and got[49] == b"LOWLAT" and got[56] == b"EXCHANGE"
    assert int(got[34]) == kwargs["seq_num"]
    assert got[52] == _expected_text(T, kwargs["sending_time_ns"])
    for name, (tag, kind) in MESSAGES[method][1].items():
        value = kwargs.get(name, _signature(method)[name].default)
        if name == "transact_time_ns" and value is None:
            value = kwargs["sending_time_ns"]
        if value is None or value is False:
            assert tag not in got, name
        elif kind == P:
            assert Decimal(got[tag].decode()) == _expected_text(P, value), name
        else:
            assert got[tag] == _expected_text(kind, value), name
    # simplefix's own encoding of the same fields computes BodyLength and CheckSum itself.
    again = simplefix.FixMessage()
    for tag, value in pairs[:-1]:
        if tag != 9:
            again.append_pair(tag, value)
    assert again.encode() == data


@st.composite
def simplefix_messages(draw):
    """A message simplefix encodes: header and the body fields of one of lowlat's message types."""
    method, kwargs = draw(messages())
    version = draw(st.sampled_from(["FIX.4.2", "FIX.4.4"]))
    stamp = datetime.fromtimestamp(draw(st.integers(0, 4_102_444_800)), tz=timezone.utc).replace(
        microsecond=draw(st.integers(0, 999_999)))
    message = simplefix.FixMessage()
    message.append_pair(8, version)
    message.append_pair(35, MESSAGES[method][0])
    message.append_pair(49, draw(texts))
    message.append_pair(56, draw(texts))
    message.append_pair(34, kwargs["seq_num"])
    message.append_utc_timestamp(52, stamp, precision=draw(st.sampled_from([0, 3, 6])))
    expected = {}
    for name, (tag, kind) in MESSAGES[method][1].items():
        value = kwargs.get(name)
        if value is None or value is False:
            continue
        if kind == P:
            value = draw(st.decimals(min_value=-10**12, max_value=10**12, places=draw(st.integers(0, 4))))
            text = format(value, "f")
        else:
            text = _expected_text(kind, value).decode()
        message.append_pair(tag, text)
        expected[tag] = (kind, value)
    for tag in spec.required_tags(version, MESSAGES[method][0]):
        if message.get(tag) is None:  # a required field the draw left out (e.g. 21 in 4.2)
            message.append_pair(tag, "1")
            expected[tag] = (I, 1)
    return message, expected, stamp


@SETTINGS
@given(drawn=simplefix_messages(), splits=st.lists(st.integers(1, 40), max_size=20))
def test_lowlat_parses_what_simplefix_writes(fix, drawn, splits):
    message, expected, stamp = drawn
    data = message.encode()
    reader = fix.FixReader()
    seen = []

    def drain():
        for event in reader:
            assert not isinstance(event, FixError), event
            seen.append(event.raw())
            check(event)

    def check(view):
        assert view.raw() == data
        pairs = list(message)
        assert view.fields() == [(tag, value) for tag, value in pairs if tag not in (8, 9, 10)]
        assert view.seq_num == int(message.get(34))
        text = message.get(52).decode()
        parsed = datetime.strptime(text, "%Y%m%d-%H:%M:%S.%f" if "." in text else "%Y%m%d-%H:%M:%S")
        expected_ns = calendar.timegm(parsed.timetuple()) * 10**9 + parsed.microsecond * 1000
        assert view.get_timestamp_ns(52) == expected_ns
        for tag, (kind, value) in expected.items():
            if kind == I:
                assert view.get_int(tag) == value
            elif kind == P:
                assert view.get_price(tag, 4) == int(value.scaleb(4))
                assert view.get_decimal(tag) == value
                assert view.get_float(tag) == float(value)
            elif kind == T:
                assert view.get_timestamp_ns(tag) == value - value % 10**6
            elif kind in (S, C):
                assert view.get_str(tag) == value

    position = 0
    for size in splits:
        reader.feed(data[position : position + size])
        position += size
        drain()
    reader.feed(data[position:])
    drain()
    assert seen == [data] and reader.buffered == 0


# --- typed access -----------------------------------------------------------------------------------


def _view_of(fix, fields, version="FIX.4.4"):
    message = simplefix.FixMessage()
    message.append_pair(8, version)
    for tag, value in [(35, "0"), (49, "A"), (56, "B"), (34, "1"), (52, "20251126-10:00:00.5")] + fields:
        message.append_pair(tag, value)
    reader = fix.FixReader()
    reader.feed(message.encode())
    return reader, reader.next_event()


def test_typed_getters(fix):
    reader, view = _view_of(fix, [(58, "héllo".encode("latin-1")), (44, "-0.05"), (31, "12."), (6, ".5"),
                                  (38, "-12"), (60, "20240229-23:59:60.999"), (32, "1.23456")])
    assert view.get_timestamp_ns(52) == calendar.timegm((2025, 11, 26, 10, 0, 0)) * 10**9 + 500_000_000
    assert view.get_str(58) == "héllo" and view.get_bytes(58) == "héllo".encode("latin-1")
    assert view.get_price(44, 2) == -5 and view.get_price(44, 4) == -500 and view.get_price(31, 0) == 12
    assert view.get_price(6, 1) == 5 and view.get_int(38) == -12 and view.get_float(44) == -0.05
    assert view.get_decimal(32) == Decimal("1.23456")
    assert view.get_timestamp_ns(60) == calendar.timegm((2024, 2, 29, 23, 59, 59)) * 10**9 + 999_999_999
    with pytest.raises(ValueError, match="tag 32 has more than 4 decimals"):
        view.get_price(32, 4)
    with pytest.raises(ValueError, match="tag 58 is not an integer"):
        view.get_int(58)
    with pytest.raises(ValueError, match="tag 58 is not a decimal"):
        view.get_price(58, 4)
    with pytest.raises(ValueError, match="tag 44 is not a UTC timestamp"):
        view.get_timestamp_ns(44)
    with pytest.raises(KeyError):
        view.get_int(999)
    with pytest.raises(KeyError):
        view.get_str(5000)
    assert view.has(58) and not view.has(8) and not view.has(10) and view.field_count == 12
    reader.feed(b"")
    with pytest.raises(ValueError, match="stale"):
        view.get_int(34)
    with pytest.raises(ValueError, match="stale"):
        view.raw()


@pytest.mark.parametrize("value", [
    b"1", b"-1", b"0", b"999999999999999999", b"-999999999999999999", b"1000000000000000000", b"", b"-", b"+1",
    b"1.0", b" 1", b"1e3", b"007", b"--1",
])
@pytest.mark.parametrize("getter", ["get_int", "get_price", "get_float", "get_decimal", "get_timestamp_ns"])
def test_getters_agree_across_backends(getter, value):
    results = []
    for backend in BACKENDS:
        fix = load_backend(backend, "lowlat.fix")
        fields = [(58, value)] if value else []
        reader, view = _view_of(fix, fields + [(60, b"20251126-10:00:00." + (value or b"1"))])
        args = (4,) if getter == "get_price" else ()
        results.append([_error_of(lambda t=t: getattr(view, getter)(t, *args)) or getattr(view, getter)(t, *args)
                        for t in (58, 60)])
    assert results[0] == results[1]


def _timestamp_like():
    digits = st.text("0123456789", min_size=1, max_size=2)
    return st.builds(
        lambda y, mo, d, h, mi, se, frac: f"{y}{mo}{d}-{h}:{mi}:{se}{frac}",
        st.text("0123456789", min_size=4, max_size=4), digits, digits, digits, digits, digits,
        st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=11).map(lambda f: "." + f)),
    ).filter(lambda text: text.count(":") == 2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.text("0123456789.-", min_size=1, max_size=30),
        st.text("0123456789.-+e x", min_size=1, max_size=8),
        _timestamp_like(),
        st.binary(min_size=1, max_size=12).filter(lambda b: 1 not in b).map(lambda b: b.decode("latin-1")),
    ),
    decimals=st.integers(0, 9),
)
def test_getters_agree_on_random_values(value, decimals):
    results = []
    for backend in BACKENDS:
        fix = load_backend(backend, "lowlat.fix")
        reader, view = _view_of(fix, [(58, value.encode("latin-1"))])
        outcome = []
        for getter, args in (("get_int", ()), ("get_price", (decimals,)), ("get_float", ()), ("get_decimal", ()),
                             ("get_timestamp_ns", ()), ("get_str", ()), ("get_bytes", ())):
            error = _error_of(lambda: getattr(view, getter)(58, *args))
            outcome.append(error or getattr(view, getter)(58, *args))
        results.append(outcome)
    assert results[0] == results[1]


# --- the reader: each kind of damage ------------------------------------------------------------------


def _good(fix, seq=1, version="FIX.4.4"):
    return _encode(_encoders(fix, version), "new_order_single", dict(
        seq_num=seq, sending_time_ns=NOW_NS, cl_ord_id=f"ORD{seq}", symbol="MSFT", side="2", quantity=5,
        ord_type="2", price=4_100_000))


def _rebuild(fields, version=b"FIX.4.4", length_delta=0, checksum_delta=0):
    body = b"".join(b"%s=%s\x01" % (tag, value) for tag, value in fields)
    head = b"8=" + version + b"\x019=%d\x01" % (len(body) + length_delta)
    return head + body + b"10=%03d\x01" % ((sum(head + body) + checksum_delta) % 256)


HEADER = [(b"35", b"0"), (b"49", b"A"), (b"56", b"B"), (b"34", b"1"), (b"52", b"20251126-10:00:00")]


@pytest.mark.parametrize("bad,reason,tag", [
    (_rebuild(HEADER, length_delta=1), Reason.BODY_LENGTH, 9),
    (_rebuild(HEADER, length_delta=-3), Reason.BODY_LENGTH, 9),
    (_rebuild(HEADER, checksum_delta=1), Reason.CHECKSUM, 10),
    (_rebuild(HEADER, version=b"FIX.4.3"), Reason.BEGIN_STRING, 8),
    (_rebuild(HEADER[:3] + HEADER[4:]), Reason.MISSING_TAG, 34),
    (_rebuild([(b"35", b"1")] + HEADER[1:] + [(b"1", b"TEST")]), Reason.MISSING_TAG, 112),  # a TestRequest without TestReqID
    (_rebuild([(b"35", b"1")] + HEADER[1:] + [(b"112", b"X")] * 2), Reason.REPEATED_TAG, 112),
    (_rebuild([(b"35", b"1")] + HEADER[1:] + [(b"112", b"X"), (b"9", b"5")]), Reason.REPEATED_TAG, 9),
    (_rebuild(HEADER[1:2] + HEADER[:1] + HEADER[2:]), Reason.MSG_TYPE, 35),
    (_rebuild(HEADER + [(b"58", b"")]), Reason.MALFORMED_FIELD, 58),
    (_rebuild(HEADER + [(b"x8", b"1")]), Reason.MALFORMED_FIELD, 0),
    (_rebuild(HEADER).replace(b"\x0110=", b"\x0111="), Reason.TRUNCATED, 10),
    (_rebuild(HEADER)[:-1] + b"X", Reason.CHECKSUM, 10),
    (_rebuild(HEADER)[:-2] + b"\x01", Reason.CHECKSUM, 10),
    (b"8=FIX.4.4\x019=abc\x0135=0\x0110=000\x01", Reason.BODY_LENGTH, 9),
    (_rebuild(HEADER).replace(b"\x019=", b"\x01X="), Reason.BODY_LENGTH, 9),
    (_rebuild(HEADER)[:-9], Reason.TRUNCATED, 10),
])
def test_each_damage_is_reported_and_the_stream_goes_on(fix, bad, reason, tag):
    first, last = _good(fix, 1), _good(fix, 2)
    reader = fix.FixReader()
    reader.feed(first + bad + last)
    events = [(e.raw() if not isinstance(e, FixError) else e) for e in reader]
    assert events[0] == first and events[-1] == last and len(events) == 3, events
    error = events[1]
    assert (error.reason, error.tag) == (reason, tag), error
    assert error.offset == len(first) and error.data == bad and str(error.tag) in str(error)


def test_garbage_between_messages_and_at_the_end(fix):
    first, last = _good(fix, 1), _good(fix, 2)
    reader = fix.FixReader()
    reader.feed(b"hello" + first + b"\x01\x01noise 8=FI" + last + b"8=FIX.4.4\x019=5")
    events = list(reader)
    assert [type(e) is FixError for e in events] == [True, False, True, False]
    assert events[0].reason == Reason.GARBAGE and events[0].data == b"hello"
    assert events[2].data == b"\x01\x01noise 8=FI" and events[2].offset == 5 + len(first)
    assert reader.next_event() is None and reader.buffered == 13
    reader.finish()
    tail = reader.next_event()
    assert tail.reason == Reason.TRUNCATED and tail.data == b"8=FIX.4.4\x019=5"
    assert reader.next_event() is None and reader.error_count == 3 and reader.message_count == 2
    with pytest.raises(ValueError, match="finish"):
        reader.feed(first)
    reader.reset()
    reader.feed(first)
    assert reader.next_event().raw() == first and reader.offset == len(first)


def test_errors_pickle_with_their_fields(fix):
    import pickle

    reader = fix.FixReader()
    reader.feed(b"noise" + _good(fix))
    error = reader.next_event()
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is FixError and str(again) == str(error)
    assert (again.reason, again.tag, again.text, again.offset, again.data) == (Reason.GARBAGE, 0, error.text, 0, b"noise")


def test_lengths_are_bounded(fix):
    reader = fix.FixReader(max_message_size=256)
    reader.feed(b"8=FIX.4.4\x019=99999\x01" + b"x" * 300 + _good(fix))
    events = list(reader)
    assert events[0].reason == Reason.BODY_LENGTH and "exceeds" in events[0].text
    assert events[-1].raw() == _good(fix)
    reader = fix.FixReader(max_message_size=256)
    reader.feed(b"8=FIX.4.4\x019=200\x01" + b"y" * 300)
    assert reader.next_event().reason == Reason.TOO_LONG
    reader.feed(b"z" * 1000)
    events = list(reader)
    assert all(e.reason == Reason.GARBAGE for e in events) and reader.buffered <= 4
    with pytest.raises(TypeError, match="data"):
        reader.feed("text")
    reader = fix.FixReader(max_fields=8)
    reader.feed(_good(fix))
    assert reader.next_event().reason == Reason.TOO_MANY_FIELDS


# --- the reader under random splits and random damage ---------------------------------------------


def _sample_stream_messages():
    fix = load_backend("python", "lowlat.fix")
    out = []
    for i, method in enumerate(MESSAGES):
        for version in ("FIX.4.2", "FIX.4.4"):
            encoder = _encoders(fix, version)
            kwargs = {"seq_num": i + 1, "sending_time_ns": NOW_NS + i}
            for name, (_, kind) in MESSAGES[method][1].items():
                if kind == S:
                    kwargs[name] = "see 8=FIX.4.4 10=123" if name == "text" else f"{name[:3]}{i}"
                elif kind == C:
                    kwargs[name] = "1"
                elif kind == I:
                    kwargs[name] = 14 + i
                elif kind == P:
                    kwargs[name] = 100_500 + i
                elif kind == T:
                    kwargs[name] = NOW_NS
                else:
                    kwargs[name] = bool(i % 2)
            out.append(_encode(encoder, method, kwargs))
    return out


SAMPLES = _sample_stream_messages()
damage = st.one_of(
    st.none(), st.none(),
    st.tuples(st.just("replace"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("insert"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=4)),
)
garbage = st.one_of(st.just(b""), st.just(b""), st.binary(min_size=1, max_size=12).filter(lambda g: b"8=FIX" not in g))


def _damaged(message, how):
    if how is None:
        return message
    at = int(how[1] * len(message))
    if how[0] == "replace":
        return message[:at] + bytes([how[2]]) + message[at + 1 :]
    if how[0] == "delete":
        return message[:at] + message[at + 1 :]
    if how[0] == "truncate":
        return message[: max(at, 5)]  # a lone "8" would join a next message missing its "8"
    at = 1 + int(how[1] * (len(message) - 1))  # inside: bytes before or after it would be garbage, not damage
    return message[:at] + how[2] + message[at:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.tuples(st.sampled_from(range(len(SAMPLES))), damage, garbage), min_size=1, max_size=12),
    splits=st.lists(st.integers(1, 64), max_size=40),
)
def test_reader_under_random_splits_and_damage(fix, plan, splits):
    stream = b""
    intact, damaged = [], []
    for index, how, junk in plan:
        stream += junk
        if junk:
            damaged.append((len(stream) - len(junk), len(stream)))
        message = _damaged(SAMPLES[index], how)
        (intact if message == SAMPLES[index] else damaged).append((len(stream), len(stream) + len(message)))
        stream += message
    # Damage next to garbage can rebuild a whole message (a stray "8" then a message missing its "8"):
    # such a stream holds an intact message where none was planned, so it is not a damage case.
    for sample in set(SAMPLES):
        at = stream.find(sample)
        while at >= 0:
            assume((at, at + len(sample)) in intact)
            at = stream.find(sample, at + 1)
    reader = fix.FixReader()
    spans = []  # (start, end, is_message)

    def drain():
        while True:
            start = reader.offset
            event = reader.next_event()
            if event is None:
                return
            is_message = not isinstance(event, FixError)
            if is_message:
                assert event.raw() == stream[start : reader.offset]
            else:
                assert (event.offset, event.data) == (start, stream[start : reader.offset])
                assert event.reason in vars(Reason).values() and event.text
            spans.append((start, reader.offset, is_message))

    position = 0
    for size in splits:
        reader.feed(stream[position : position + size])
        position += size
        drain()
    reader.feed(stream[position:])
    drain()
    reader.finish()
    drain()
    assert reader.buffered == 0
    # Every byte is in exactly one event, in order; the messages are exactly the intact ones.
    assert [s[0] for s in spans] == [0] + [s[1] for s in spans[:-1]] and (not spans or spans[-1][1] == len(stream))
    assert [(a, b) for a, b, ok in spans if ok] == intact
    for a, b in damaged:
        assert any(ok is False and s < b and a < e for s, e, ok in spans), (a, b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.tuples(st.sampled_from(range(len(SAMPLES))), damage, garbage), min_size=1, max_size=8),
    splits=st.lists(st.integers(1, 64), max_size=20),
    max_message_size=st.sampled_from([64, 200, 65536]),
)
def test_backends_report_the_same_events(plan, splits, max_message_size):
    stream = b"".join(junk + _damaged(SAMPLES[index], how) for index, how, junk in plan)
    seen = []
    for backend in BACKENDS:
        fix = load_backend(backend, "lowlat.fix")
        reader = fix.FixReader(max_message_size=max_message_size)
        events = []
        position = 0
        for size in splits + [len(stream)]:
            reader.feed(stream[position : position + size])
            position += size
            for event in reader:
                if isinstance(event, FixError):
                    events.append((event.reason, event.tag, event.text, event.offset, event.data))
                else:
                    events.append((event.raw(), event.fields(), event.msg_type, event.begin_string, reader.offset))
        reader.finish()
        events.extend((e.reason, e.tag, e.text, e.offset, e.data) for e in reader)
        seen.append(events)
    assert seen[0] == seen[1]


def test_over_a_loopback_tcp_connection(fix):
    """Once over a real socket: a sender thread writes 2,000 messages in odd-sized sends."""
    import socket
    import threading

    encoder = _encoders(fix, "FIX.4.4")
    buffer = bytearray(1 << 20)
    size = 0
    expected = []
    for seq in range(1, 2001):
        start = size
        if seq % 3:
            size += encoder.new_order_single(buffer, size, seq, NOW_NS + seq, f"ORD{seq}", "MSFT", "1", seq, "2", seq * 100)
        else:
            size += encoder.heartbeat(buffer, size, seq, NOW_NS + seq, test_req_id=f"T{seq}")
        expected.append(bytes(buffer[start:size]))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def send():
        with socket.create_connection(listener.getsockname(), timeout=10) as out:
            out.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            position, step = 0, 1
            while position < size:
                out.sendall(buffer[position : min(position + step, size)])
                position += step
                step = step * 7 % 1499 + 1

    sender = threading.Thread(target=send)
    sender.start()
    received = []
    reader = fix.FixReader()
    try:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10)
            while chunk := connection.recv(65536):
                reader.feed(chunk)
                for event in reader:
                    assert not isinstance(event, FixError), event
                    received.append(event.raw())
    finally:
        sender.join(10)
        listener.close()
    assert not sender.is_alive()
    reader.finish()
    assert reader.next_event() is None
    assert received == expected and reader.buffered == 0 and reader.offset == size


# --- one interface, compiled by default -------------------------------------------------------------


def _parameters(obj):
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def test_same_names_signatures_and_docstrings():
    compiled, pure = load_backend("cython", "lowlat.fix"), load_backend("python", "lowlat.fix")
    assert sorted(compiled.__all__) == sorted(pure.__all__)
    for name in pure.__all__:
        a, b = getattr(compiled, name), getattr(pure, name)
        assert inspect.cleandoc(a.__doc__) == inspect.cleandoc(b.__doc__), name
        assert _parameters(a) == _parameters(b), name
        members = sorted(m for m in dir(b) if not m.startswith("_"))
        assert sorted(m for m in dir(a) if not m.startswith("_")) == members, name
        for member in members:
            x, y = getattr(a, member), getattr(b, member)
            assert inspect.cleandoc(x.__doc__ or "") == inspect.cleandoc(y.__doc__ or ""), f"{name}.{member}"
            if callable(y):
                assert _parameters(x) == _parameters(y), f"{name}.{member}"


def test_default_import_is_compiled():
    load_backend("cython", "lowlat.fix")
    code = "import lowlat.fix as f; print(f.BACKEND, f.FixReader.__module__)"
    env = {**os.environ, "LOWLAT_PURE_PYTHON": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["cython", "lowlat.fix._c"]
    env["LOWLAT_PURE_PYTHON"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["python", "lowlat.fix._py"]


def test_stub_describes_the_live_api(backend_name):
    import ast
    from pathlib import Path

    import lowlat.fix

    fix = load_backend(backend_name, "lowlat.fix")
    stub = Path(lowlat.fix.__file__).with_name("__init__.pyi")
    tree = ast.parse(stub.read_text())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    assert set(classes) == set(fix.__all__)
    for name, node in classes.items():
        stubbed = {item.name for item in node.body if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")}
        live = {member for member in dir(getattr(fix, name)) if not member.startswith("_")}
        assert stubbed == live, name
    exported = {alias.asname for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names} - {None}
    assert exported | set(classes) | {"BACKEND"} == set(lowlat.fix.__all__)
