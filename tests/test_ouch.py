"""OUCH 4.2 codec: layouts against the specification, round trips, both backends byte for byte."""

import inspect
import struct
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_backend
from lowlat.ouch import spec

# The OUCH 4.2 specification's tables, typed out by hand: (field, offset, width) after the type byte.
SPEC_TABLES = {
    "enter_order": ("O", 49, [
        ("order_token", 1, 14), ("side", 15, 1), ("shares", 16, 4), ("stock", 20, 8), ("price", 28, 4),
        ("time_in_force", 32, 4), ("firm", 36, 4), ("display", 40, 1), ("capacity", 41, 1),
        ("intermarket_sweep", 42, 1), ("minimum_quantity", 43, 4), ("cross_type", 47, 1), ("customer_type", 48, 1)]),
    "replace_order": ("U", 47, [
        ("existing_order_token", 1, 14), ("replacement_order_token", 15, 14), ("shares", 29, 4), ("price", 33, 4),
        ("time_in_force", 37, 4), ("display", 41, 1), ("intermarket_sweep", 42, 1), ("minimum_quantity", 43, 4)]),
    "cancel_order": ("X", 19, [("order_token", 1, 14), ("shares", 15, 4)]),
    "modify_order": ("M", 20, [("order_token", 1, 14), ("side", 15, 1), ("shares", 16, 4)]),
    "system_event": ("S", 10, [("timestamp", 1, 8), ("event_code", 9, 1)]),
    "accepted": ("A", 66, [
        ("timestamp", 1, 8), ("order_token", 9, 14), ("side", 23, 1), ("shares", 24, 4), ("stock", 28, 8),
        ("price", 36, 4), ("time_in_force", 40, 4), ("firm", 44, 4), ("display", 48, 1),
        ("order_reference_number", 49, 8), ("capacity", 57, 1), ("intermarket_sweep", 58, 1),
        ("minimum_quantity", 59, 4), ("cross_type", 63, 1), ("order_state", 64, 1), ("bbo_weight_indicator", 65, 1)]),
    "replaced": ("U", 80, [
        ("timestamp", 1, 8), ("replacement_order_token", 9, 14), ("side", 23, 1), ("shares", 24, 4), ("stock", 28, 8),
        ("price", 36, 4), ("time_in_force", 40, 4), ("firm", 44, 4), ("display", 48, 1),
        ("order_reference_number", 49, 8), ("capacity", 57, 1), ("intermarket_sweep", 58, 1),
        ("minimum_quantity", 59, 4), ("cross_type", 63, 1), ("order_state", 64, 1),
        ("previous_order_token", 65, 14), ("bbo_weight_indicator", 79, 1)]),
    "canceled": ("C", 28, [("timestamp", 1, 8), ("order_token", 9, 14), ("decrement_shares", 23, 4), ("reason", 27, 1)]),
    "aiq_canceled": ("D", 37, [
        ("timestamp", 1, 8), ("order_token", 9, 14), ("decrement_shares", 23, 4), ("reason", 27, 1),
        ("quantity_prevented_from_trading", 28, 4), ("execution_price", 32, 4), ("liquidity_flag", 36, 1)]),
    "executed": ("E", 40, [
        ("timestamp", 1, 8), ("order_token", 9, 14), ("executed_shares", 23, 4), ("execution_price", 27, 4),
        ("liquidity_flag", 31, 1), ("match_number", 32, 8)]),
    "executed_with_reference_price": ("G", 45, [
        ("timestamp", 1, 8), ("order_token", 9, 14), ("executed_shares", 23, 4), ("execution_price", 27, 4),
        ("liquidity_flag", 31, 1), ("match_number", 32, 8), ("reference_price", 40, 4), ("reference_price_type", 44, 1)]),
    "broken_trade": ("B", 32, [("timestamp", 1, 8), ("order_token", 9, 14), ("match_number", 23, 8), ("reason", 31, 1)]),
    "trade_correction": ("F", 41, [
        ("timestamp", 1, 8), ("order_token", 9, 14), ("executed_shares", 23, 4), ("execution_price", 27, 4),
        ("liquidity_flag", 31, 1), ("match_number", 32, 8), ("reason", 40, 1)]),
    "price_correction": ("K", 36, [
        ("timestamp", 1, 8), ("order_token", 9, 14), ("match_number", 23, 8), ("new_execution_price", 31, 4),
        ("reason", 35, 1)]),
    "rejected": ("J", 24, [("timestamp", 1, 8), ("order_token", 9, 14), ("reason", 23, 1)]),
    "cancel_pending": ("P", 23, [("timestamp", 1, 8), ("order_token", 9, 14)]),
    "cancel_reject": ("I", 23, [("timestamp", 1, 8), ("order_token", 9, 14)]),
    "order_priority_update": ("T", 36, [
        ("timestamp", 1, 8), ("order_token", 9, 14), ("price", 23, 4), ("display", 27, 1),
        ("order_reference_number", 28, 8)]),
    "order_modified": ("M", 28, [("timestamp", 1, 8), ("order_token", 9, 14), ("side", 23, 1), ("shares", 24, 4)]),
}
CLIENT_NAMES = ["enter_order", "replace_order", "cancel_order", "modify_order"]


@pytest.fixture(scope="module")
def ouch(backend_name):
    return load_backend(backend_name, "lowlat.ouch")


@pytest.fixture(scope="module")
def both():
    return [load_backend(name, "lowlat.ouch") for name in ("cython", "python")]


def test_layouts_match_the_specification_tables():
    assert set(spec.MESSAGES) == set(SPEC_TABLES)
    for name, (letter, length, fields) in SPEC_TABLES.items():
        layout = spec.MESSAGES[name]
        assert (layout.type, layout.length) == (letter, length), name
        assert [(f.name, off, f.width) for f, off in layout.fields] == fields, name
        # The fields tile the message exactly: no gap, no overlap.
        assert fields[0][1] == 1 and all(a[1] + a[2] == b[1] for a, b in zip(fields, fields[1:]))
        assert fields[-1][1] + fields[-1][2] == length
    assert {m.type for m in spec.MESSAGES.values() if m.direction == "client"} == {"O", "U", "X", "M"}


def test_enter_order_bytes_written_out_by_hand(ouch):
    buf = bytearray(b"\xee" * 60)
    end = ouch.encode_enter_order(buf, 3, "ABC123", "B", 100, "AAPL", 1234500, 99998, "FIRM", "Y", "P", "N", 7, "O", "R")
    assert end == 52
    expected = (b"O" + b"ABC123        " + b"B" + (100).to_bytes(4, "big") + b"AAPL    " + bytes([0x00, 0x12, 0xD6, 0x44])
                + bytes([0x00, 0x01, 0x86, 0x9E]) + b"FIRM" + b"YPN" + b"\x00\x00\x00\x07" + b"OR")
    assert len(expected) == 49
    assert bytes(buf[3:52]) == expected
    assert buf[:3] == b"\xee" * 3 and buf[52:] == b"\xee" * 8  # nothing written outside the message


@pytest.mark.parametrize("time_in_force", [0, 99998])
def test_enter_order_packet_is_the_soupbintcp_packet_of_encode_enter_order(ouch, time_in_force):
    writer = ouch.EnterOrderPacket(time_in_force)
    assert writer.time_in_force == time_in_force
    packet = writer.packet
    for token, side, shares, stock, price in [("ABC123", "B", 100, "AAPL", 1234500), ("Z" * 14, "S", 1, "MSFT", 7)]:
        expected = bytearray(b"\x00\x32U") + bytearray(49)  # SoupBinTCP: length 50, Unsequenced Data
        ouch.encode_enter_order(expected, 3, token, side, shares, stock, price, time_in_force)
        assert writer(token, side, shares, stock, price) is packet  # rewritten in place
        assert packet == expected and len(packet) == 52
    with pytest.raises(ValueError, match="side"):
        writer("T", "BS", 1, "A", 1)
    assert packet == expected  # a refused order leaves the last one whole
    with pytest.raises(AttributeError):
        writer.packet = bytearray(52)


def test_cancel_replace_modify_bytes_by_hand(ouch):
    buf = bytearray(200)
    end = ouch.encode_cancel_order(buf, 0, "T1", 0)
    end = ouch.encode_replace_order(buf, end, "T1", "T2", 300, 99, 0, "N", "Y", 0)
    end = ouch.encode_modify_order(buf, end, "T2", "S", 5)
    assert end == 19 + 47 + 20
    assert bytes(buf[:19]) == b"XT1" + b" " * 12 + b"\0\0\0\0"
    assert bytes(buf[19:66]) == (b"UT1" + b" " * 12 + b"T2" + b" " * 12 + struct.pack(">III", 300, 99, 0) + b"NY" + b"\0" * 4)
    assert bytes(buf[66:86]) == b"MT2" + b" " * 12 + b"S" + struct.pack(">I", 5)


def test_accepted_bytes_by_hand(ouch):
    buf = bytearray(66)
    values = (2**40 + 5, "TOK", "S", 10, "MSFT", 99, 0, "AB", "Y", 2**63 + 1, "A", "N", 0, "N", "L", " ")
    ouch.encode(buf, 0, "accepted", values)
    assert buf[0:1] == b"A"
    assert int.from_bytes(buf[1:9], "big") == 2**40 + 5
    assert buf[9:23] == b"TOK" + b" " * 11 and buf[23:24] == b"S"
    assert int.from_bytes(buf[24:28], "big") == 10 and buf[28:36] == b"MSFT    "
    assert int.from_bytes(buf[49:57], "big") == 2**63 + 1
    assert buf[57:66] == b"AN\0\0\0\0NL "


# -- random messages -------------------------------------------------------------------------------------

_ascii = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=14)


def _value(field):
    if field.kind == spec.ALPHA:
        # Leading spaces survive, trailing ones are padding: generate text without them.
        return st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=field.width).map(str.rstrip)
    if field.kind == spec.CHAR:
        return st.characters(min_codepoint=32, max_codepoint=126)
    if field.kind == spec.U32:
        return st.integers(0, 2**32 - 1)
    return st.integers(0, 2**64 - 1)


def _message(name):
    return st.tuples(*[_value(f) for f, _ in spec.MESSAGES[name].fields]).map(lambda values: (name, values))


any_message = st.one_of([_message(name) for name in spec.MESSAGES])


def _record(module, name):
    return module.ClientMessage() if name in CLIENT_NAMES else module.ExchangeMessage()


@settings(max_examples=300, deadline=None)
@given(message=any_message, offset=st.integers(0, 20))
def test_every_message_round_trips_and_both_backends_agree(both, message, offset):
    name, values = message
    length = spec.MESSAGES[name].length
    outputs = []
    for module in both:
        buf = bytearray(offset + length + 5)
        assert module.encode(buf, offset, name, values) == offset + length
        record = _record(module, name)
        assert record.decode(buf, offset, length) == offset + length
        assert record.name == name and record.type == spec.MESSAGES[name].type and record.length == length
        assert record.values() == values
        again = bytearray(length)
        module.encode(again, 0, name, record.values())
        assert bytes(again) == bytes(buf[offset:offset + length])
        outputs.append(bytes(buf))
    assert outputs[0] == outputs[1]


@settings(max_examples=200, deadline=None)
@given(message=st.one_of([_message(n) for n in CLIENT_NAMES]))
def test_named_encoders_write_what_the_generic_one_does(both, message):
    name, values = message
    for module in both:
        generic, named = bytearray(64), bytearray(64)
        module.encode(generic, 0, name, values)
        getattr(module, "encode_" + name)(named, 0, *values)
        assert generic == named


def test_record_fields_absent_read_as_none(ouch):
    buf = bytearray(40)
    ouch.encode(buf, 0, "executed", (1, "T", 5, 100, "A", 9))
    record = ouch.ExchangeMessage()
    assert record.name is None and record.values() == () and record.as_dict() == {}
    record.decode(buf)
    assert record.executed_shares == 5 and record.match_number == 9 and record.stock is None and record.shares is None
    assert record.as_dict() == {"type": "E", "timestamp": 1, "order_token": "T", "executed_shares": 5,
                                "execution_price": 100, "liquidity_flag": "A", "match_number": 9}
    assert list(record.as_dict()) == ["type", *(f.name for f, _ in ouch.MESSAGES["executed"].fields)]  # layout order
    first, second = record.as_dict(), record.as_dict()
    first["order_token"] = "changed"
    assert second["order_token"] == "T"  # a new dict each time


def test_direction_disambiguates_u_and_m(ouch):
    buf = bytearray(100)
    ouch.encode_replace_order(buf, 0, "OLD", "NEW", 1, 2)
    client = ouch.ClientMessage()
    client.decode(buf, 0)
    assert client.name == "replace_order" and client.replacement_order_token == "NEW"
    with pytest.raises(ValueError, match="truncated|offset 0"):
        ouch.ExchangeMessage().decode(buf[:47], 0)  # 'U' from the exchange is Replaced: 80 bytes


# -- errors ----------------------------------------------------------------------------------------------

def _error(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - compared between backends
        return type(exc), str(exc)
    return None


def _shrunk_packet(m):
    writer = m.EnterOrderPacket()
    del writer.packet[10:]  # the caller's to change: the writer must refuse it, not write past it
    return writer("T", "B", 1, "A", 1)


BAD_CALLS = [
    lambda m: m.EnterOrderPacket()("X" * 15, "B", 1, "A", 1),
    lambda m: m.EnterOrderPacket()("T", "B", 1.0, "A", 1),
    lambda m: m.EnterOrderPacket(-1),
    lambda m: m.EnterOrderPacket(1.5),
    _shrunk_packet,
    lambda m: m.encode_enter_order(bytearray(49), 0, "X" * 15, "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "é", "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, 5, "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "BS", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "B", -1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "B", 2**32, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "B", 1.0, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "B", np.float64(1), "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "B", np.int64(-1), "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0.0, "T", "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, b"T" * 15, "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", b"B", 1, b"A" * 9, 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "B", 1, "A", 1, display=None),
    lambda m: m.encode_modify_order(bytearray(20), 0, "T", "SS", 1),
    lambda m: m.encode_replace_order(bytearray(47), 0, "T", "U" * 15, 1, 1),
    lambda m: m.encode_enter_order(bytearray(49), 0, "T", "B", 1, "A", 1, firm="FIRMS"),
    lambda m: m.encode_enter_order(bytearray(48), 0, "T", "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(60), 12, "T", "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytearray(60), -1, "T", "B", 1, "A", 1),
    lambda m: m.encode_enter_order(bytes(60), 0, "T", "B", 1, "A", 1),
    lambda m: m.encode_enter_order(memoryview(bytearray(60)).toreadonly(), 0, "T", "B", 1, "A", 1),
    lambda m: m.encode_cancel_order(np.zeros((4, 8), dtype=np.uint8)[:, ::2], 0, "T"),
    lambda m: m.encode(bytearray(40), 0, "nope", ()),
    lambda m: m.encode(bytearray(40), 0, "executed", (1, "T", 5)),
    lambda m: m.encode(bytearray(40), 0, "executed", (2**64, "T", 5, 100, "A", 9)),
    lambda m: m.encode(bytearray(40), 0, "executed", (-1, "T", 5, 100, "A", 9)),
    lambda m: m.ExchangeMessage().decode(b"Z" + bytes(30), 0),
    lambda m: m.ExchangeMessage().decode(b"\x00\x00E" + bytes(39), 2, 41),
    lambda m: m.ExchangeMessage().decode(b"\x00\x00E" + bytes(20), 2),
    lambda m: m.ExchangeMessage().decode(b"E" + bytes(39), 40),
    lambda m: m.ExchangeMessage().decode(b"O" + bytes(48), 0),
    lambda m: m.ClientMessage().decode(b"A" + bytes(65), 0),
    lambda m: m.ExchangeMessage().decode(12, 0),
    lambda m: m.decode_batch(b"\x00\x28E" + bytes(39) + b"\x00"),
    lambda m: m.decode_batch(b"\x00\x28E" + bytes(39) + b"\x00\x10"),
    lambda m: m.decode_batch(b"\x00\x28E" + bytes(39) + b"\x00\x05Zabcd"),
    lambda m: m.decode_batch(b"\x00\x28E" + bytes(39) + b"\x00\x29E" + bytes(40)),
    lambda m: m.decode_batch(b"\x00\x00"),
    lambda m: m.decode_batch(b"", "sideways"),
]


@pytest.mark.parametrize("index", range(len(BAD_CALLS)))
def test_errors_are_the_same_in_both_backends(both, index):
    compiled, pure = (_error(lambda: BAD_CALLS[index](m)) for m in both)
    assert compiled is not None, "the call must fail"
    assert compiled == pure


@pytest.mark.parametrize(("blob", "offset"), [
    (b"\x00\x28E" + bytes(39) + b"\x00\x05Zabcd", 44),
    (b"\x00\x28E" + bytes(39) + b"\x00\x29E" + bytes(40), 44),
    (b"\x00\x28E" + bytes(39) + b"\x00\x28E" + bytes(10), 44),
])
def test_batch_errors_name_the_offset(ouch, blob, offset):
    with pytest.raises(ValueError, match=f"offset {offset}"):
        ouch.decode_batch(blob)


def test_field_errors_name_the_field(ouch):
    with pytest.raises(ValueError, match="order_token"):
        ouch.encode_enter_order(bytearray(49), 0, "X" * 15, "B", 1, "A", 1)
    with pytest.raises(TypeError, match="shares"):
        ouch.encode_enter_order(bytearray(49), 0, "T", "B", "1", "A", 1)
    with pytest.raises(ValueError, match="price"):
        ouch.encode_enter_order(bytearray(49), 0, "T", "B", 1, "A", 2**32)


def test_failed_encode_leaves_the_buffer_untouched(ouch):
    buf = bytearray(b"\xaa" * 49)
    with pytest.raises(ValueError):
        ouch.encode_enter_order(buf, 0, "T", "B", 1, "A", 1, customer_type="RR")
    with pytest.raises(ValueError):
        ouch.encode_enter_order(buf, 0, "T", "B", 1, "A", 1, minimum_quantity=-1)  # the last integer
    with pytest.raises(TypeError):
        ouch.encode_replace_order(buf, 0, "T", "U", 1, 2, 3, "Y", "N", 1.5)
    assert buf == b"\xaa" * 49


def test_integers_may_be_numpy_integers(both):
    out = []
    for module in both:
        buf = bytearray(49)
        module.encode_enter_order(buf, 0, "T", "B", np.uint32(7), "A", np.int64(12345), minimum_quantity=np.uint8(1))
        out.append(bytes(buf))
    assert out[0] == out[1] and out[0][16:20] == b"\0\0\0\x07"


def test_record_keeps_its_message_after_a_failed_decode(ouch):
    buf = bytearray(40)
    ouch.encode(buf, 0, "executed", (1, "T", 5, 100, "A", 9))
    record = ouch.ExchangeMessage()
    record.decode(buf)
    with pytest.raises(ValueError):
        record.decode(b"Q" * 40)
    assert record.values() == (1, "T", 5, 100, "A", 9)
    buf[:] = bytes(40)  # the record holds its own copy
    assert record.executed_shares == 5


def test_encoders_accept_any_writable_buffer(ouch):
    out = []
    for buf in (bytearray(49), np.zeros(49, dtype=np.uint8), np.zeros(7, dtype=np.uint64), memoryview(bytearray(49))):
        ouch.encode_enter_order(buf, 0, b"TOK", b"B", 1, b"AAPL", 10)
        out.append(bytes(memoryview(buf).cast("B")[:49]))
    assert len(set(out)) == 1


@pytest.mark.c_extension
def test_compiled_decode_and_encode_allocate_nothing():
    ouch = load_backend("cython", "lowlat.ouch")
    buf = bytearray(100)
    record = ouch.ExchangeMessage()
    ouch.encode(buf, 0, "accepted", (1, "T", "B", 1, "A", 2, 3, "F", "Y", 4, "A", "N", 0, "N", "L", " "))
    out = bytearray(64)
    encode, decode, write = ouch.encode_enter_order, record.decode, ouch.EnterOrderPacket()
    for _ in range(100):
        decode(buf, 0)
        encode(out, 0, "TOKEN", "B", 100, "AAPL", 1234500)
        write("TOKEN", "B", 100, "AAPL", 1234500)
    before = sys.getallocatedblocks()
    for _ in range(20_000):
        decode(buf, 0)
        encode(out, 0, "TOKEN", "B", 100, "AAPL", 1234500)
        write("TOKEN", "B", 100, "AAPL", 1234500)
    assert sys.getallocatedblocks() - before < 50


# -- batch -----------------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(messages=st.lists(st.one_of([_message(n) for n in spec.MESSAGES if n not in CLIENT_NAMES]), max_size=40))
def test_decode_batch_matches_one_by_one_decoding_in_both_backends(both, messages):
    encoded = []
    for name, values in messages:
        buf = bytearray(spec.MESSAGES[name].length)
        both[1].encode(buf, 0, name, values)
        encoded.append(bytes(buf))
    blob = spec.frame(encoded)
    results = [module.decode_batch(blob) for module in both]
    for name in results[0]:
        assert results[0][name].dtype == results[1][name].dtype == spec.batch_dtype(name)
        assert results[0][name].tobytes() == results[1][name].tobytes()
    seen = {name: 0 for name in results[0]}
    for position, (name, values) in enumerate(messages):
        row = results[0][name][seen[name]]
        seen[name] += 1
        assert row["position"] == position
        for (field, _), value in zip(spec.MESSAGES[name].fields, values):
            got = row[field.name]
            if field.kind in (spec.ALPHA, spec.CHAR):
                got = got.decode("latin-1").rstrip(" ") if field.kind == spec.ALPHA else got.decode("latin-1")
            assert got == value, (name, field.name)
    assert all(len(results[0][name]) == seen[name] for name in seen)


def test_decode_batch_of_client_messages(ouch):
    buf = bytearray(49)
    ouch.encode_enter_order(buf, 0, "T", "B", 1, "A", 1)
    out = ouch.decode_batch(spec.frame([buf, buf]), "client")
    assert set(out) == set(CLIENT_NAMES)
    assert len(out["enter_order"]) == 2 and list(out["enter_order"]["position"]) == [0, 1]


# -- one interface ---------------------------------------------------------------------------------------

def _parameters(obj):
    params = list(inspect.signature(obj).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def test_backends_have_one_interface(both):
    compiled, pure = both
    assert sorted(compiled.__all__) == sorted(pure.__all__)
    for name in pure.__all__:
        a, b = getattr(compiled, name), getattr(pure, name)
        assert inspect.cleandoc(a.__doc__) == inspect.cleandoc(b.__doc__), name
        if inspect.isclass(b):
            members = sorted(n for n in dir(b) if not n.startswith("_"))
            assert members == sorted(n for n in dir(a) if not n.startswith("_")), name
            for member in members:
                ma, mb = getattr(a, member), getattr(b, member)
                assert inspect.cleandoc(ma.__doc__ or "") == inspect.cleandoc(mb.__doc__ or ""), f"{name}.{member}"
                if callable(mb):
                    assert _parameters(ma) == _parameters(mb), f"{name}.{member}"
        else:
            assert _parameters(a) == _parameters(b), name


def test_stub_names_match(ouch):
    import ast
    from pathlib import Path

    import lowlat.ouch

    tree = ast.parse(Path(lowlat.ouch.__file__).with_name("_c.pyi").read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and not n.name.startswith("_")}
    assert names == set(ouch.__all__)


def _fixed_values(name):
    values = []
    for k, (field, _) in enumerate(spec.MESSAGES[name].fields):
        if field.kind == spec.ALPHA:
            values.append(("Z" + "x" * k)[:field.width])
        elif field.kind == spec.CHAR:
            values.append(chr(65 + k))
        elif field.kind == spec.U32:
            values.append(2**32 - 1 - k)
        else:
            values.append(2**64 - 1 - k)
    return tuple(values)


@pytest.mark.parametrize("name", list(spec.MESSAGES))
def test_each_message_type_round_trips_in_both_backends(both, name):
    values = _fixed_values(name)
    layout = spec.MESSAGES[name]
    outputs = []
    for module in both:
        buf = bytearray(layout.length)
        module.encode(buf, 0, name, values)
        assert buf[0:1] == layout.type.encode()
        for (field, offset), value in zip(layout.fields, values):  # each value at its offset
            raw = bytes(buf[offset:offset + field.width])
            if field.kind in (spec.ALPHA, spec.CHAR):
                assert raw == value.encode().ljust(field.width, b" "), field.name
            else:
                assert int.from_bytes(raw, "big") == value, field.name
        record = _record(module, name)
        record.decode(bytes(buf))
        assert record.name == name and record.values() == values
        outputs.append(bytes(buf))
    assert outputs[0] == outputs[1]


def test_default_import_is_compiled_unless_forced():
    import os
    import subprocess

    load_backend("cython", "lowlat.ouch")  # skips unless built (fails when required)
    code = "import lowlat.ouch as o; print(o.BACKEND, o.ExchangeMessage.__module__)"
    env = {**os.environ, "LOWLAT_PURE_PYTHON": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["cython", "lowlat.ouch._c"]
    env["LOWLAT_PURE_PYTHON"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["python", "lowlat.ouch._py"]


def test_generic_encode_survives_values_that_change_the_sequence(both):
    class Shrinker:
        def __init__(self, victim, value):
            self.victim, self.value = victim, value

        def __index__(self):
            self.victim.clear()  # empties the list being encoded
            return self.value

    out = []
    for module in both:
        values: list = [1, "T", 5, 100, "A", 9]
        values[0] = Shrinker(values, 7)
        buf = bytearray(40)
        module.encode(buf, 0, "executed", values)
        out.append(bytes(buf))
    assert out[0] == out[1] and out[0][1:9] == (7).to_bytes(8, "big")
