"""lowlat.itch on both backends: against itchfeed, against each other, framings, streaming, fuzz."""

import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import load_backend
from lowlat._backend import BACKENDS
from lowlat.itch import framing, generator, spec

os.environ.setdefault("ITCH_NO_CPP", "1")  # itchfeed's own pure decoder is the referee

FEED_MESSAGES = 1_000_000
ITCHFEED_SAMPLE = 200_000

# itchfeed's attribute names where they differ from the spec's (which lowlat uses).
ITCHFEED_NAMES = {
    ("R", "luld_reference_price_tier"): "luld_ref",
    ("V", "level1"): "level1_price",
    ("V", "level2"): "level2_price",
    ("V", "level3"): "level3_price",
    ("K", "ipo_quotation_release_time"): "ipo_release_time",
    ("K", "ipo_quotation_release_qualifier"): "ipo_release_qualifier",
    ("J", "auction_collar_extension"): "auction_collar_extention",
    ("U", "original_order_reference_number"): "order_reference_number",
    ("I", "price_variation_indicator"): "variation_indicator",
}


@pytest.fixture(scope="module")
def itch(backend_name):
    return load_backend(backend_name, "lowlat.itch")


@pytest.fixture(scope="module")
def itch_backends():
    return [load_backend(name, "lowlat.itch") for name in BACKENDS]


@pytest.fixture(scope="session")
def feed():
    """A 1M-message synthetic feed in the file form (the issue's size)."""
    return generator.generate(FEED_MESSAGES, seed=9, instruments=100)


def prefix(buffer, messages):
    """Return the bytes of the first ``messages`` messages of file-form ``buffer``."""
    off = 0
    for _ in range(messages):
        off += 2 + (buffer[off] << 8 | buffer[off + 1])
    return buffer[:off]


@pytest.fixture(scope="session")
def sample(feed):
    return prefix(feed, ITCHFEED_SAMPLE)


def assert_batches_equal(a, b):
    assert list(a) == list(b)
    for t in a:
        assert a[t].dtype == b[t].dtype, t
        assert np.array_equal(a[t], b[t]), t
    assert (a.count, a.unknown, a.consumed, a.next_position) == (b.count, b.unknown, b.consumed, b.next_position)


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except ValueError as exc:
        return ("ValueError", str(exc))


def assert_same_outcome(a, b):
    assert a[0] == b[0], (a, b)
    if a[0] == "ok":
        assert_batches_equal(a[1], b[1])
    else:
        assert a[1] == b[1]


# --- against itchfeed --------------------------------------------------------------------------


def test_every_field_matches_itchfeed(itch, sample):
    """Every field of every message of a 200k-message feed equals what itchfeed decodes.

    itchfeed (one Python object per message) needs several seconds for 200k messages here; the
    whole 1M feed is compared between the two backends in test_backends_agree_on_the_1m_feed.
    """
    from itch.parser import MessageParser

    batch = itch.decode(sample)
    assert batch.count == ITCHFEED_SAMPLE and batch.unknown == 0 and batch.consumed == len(sample)
    expected = {t: [] for t in spec.TYPES}
    for position, message in enumerate(MessageParser().parse_stream(sample)):
        expected[message.message_type.decode()].append((position, message))
    assert sum(len(v) for v in expected.values()) == ITCHFEED_SAMPLE
    for t in spec.TYPES:
        got = batch[t]
        messages = expected[t]
        assert len(got) == len(messages), t
        assert len(got) > 0, f"the sample has no {t!r} message"
        assert np.array_equal(got["position"], [p for p, _ in messages])
        for field in spec.by_type(t).all_fields:
            attr = ITCHFEED_NAMES.get((t, field.name), field.name)
            want = [getattr(m, attr) for _, m in messages]
            if field.kind == spec.ALPHA:
                assert got[field.name].tolist() == [w.rstrip(b"\0") for w in want], (t, field.name)
            else:
                assert np.array_equal(got[field.name], np.array(want, dtype=np.uint64)), (t, field.name)


def test_backends_agree_on_the_1m_feed(itch_backends, feed):
    compiled, pure = itch_backends
    a = compiled.decode(feed)
    b = pure.decode(feed)
    assert a.count == FEED_MESSAGES
    assert_batches_equal(a, b)
    positions = np.sort(np.concatenate([arr["position"] for arr in a.values()]))
    assert np.array_equal(positions, np.arange(FEED_MESSAGES))


def test_columns_are_native_and_prices_convert(itch, sample):
    batch = itch.decode(sample, types="AV")
    assert list(batch) == ["A", "V"]
    add = batch["A"]
    assert add.dtype == spec.dtype_of("A") and add.dtype["price"].isnative and add.dtype["timestamp"] == np.int64
    assert np.all(np.diff(add["timestamp"]) >= 0)
    assert np.allclose(spec.price_to_float(add["price"]), add["price"] / 1e4)
    assert spec.price_to_float(batch["V"]["level1"][0], 8) == 4000.0
    assert spec.price_to_float(1234500) == 123.45


def test_types_filter_keeps_positions(itch, sample):
    full = itch.decode(sample)
    some = itch.decode(sample, types=["D", "E"])
    assert list(some) == ["D", "E"] and some.count == full.count
    assert np.array_equal(some["D"], full["D"]) and np.array_equal(some["E"], full["E"])
    with pytest.raises(ValueError, match="types"):
        itch.decode(sample, types="Z")


def test_message_sizes_match_the_spec():
    expected = dict(S=12, R=39, H=25, Y=20, L=26, V=35, W=12, K=28, J=35, h=21, A=36, F=40, E=31, C=36,
                    X=23, D=19, U=35, P=44, Q=40, B=19, I=50, N=20, O=48)
    assert {m.type: m.size for m in spec.MESSAGES} == expected
    for t in spec.TYPES:
        assert spec.wire_dtype_of(t).itemsize == expected[t]


# --- bad input ---------------------------------------------------------------------------------


def _add(ref=7):
    return generator.generate_messages(40, seed=3)[-1] if ref is None else _pack_add(ref)


def _pack_add(ref):
    import struct

    return struct.pack(">cHHHIQcI8sI", b"A", 1, 0, 0, 5, ref, b"B", 100, b"ABCD    ", 1_000_000)


def test_bad_input_names_the_byte_offset(itch_backends):
    good = framing.frame([_pack_add(1), _pack_add(2)])
    cases = {
        "truncated message at byte offset 76: 33 bytes left": good + framing.frame([_pack_add(3)])[:-5],
        "truncated message at byte offset 76: 1 bytes left": good + b"\x00",
        "has length 35, expected 36, at byte offset 76": good + framing.frame([_pack_add(3)[:-1]]),
        "length 0) at byte offset 76": good + b"\x00\x00",
    }
    for backend in itch_backends:
        for text, data in cases.items():
            with pytest.raises(ValueError, match=text.replace("(", r"\(").replace(")", r"\)")):
                backend.decode(data)


def test_unknown_types_are_skipped_and_counted(itch_backends):
    data = framing.frame([_pack_add(1), b"z" + bytes(20), _pack_add(2), b"!"])
    for backend in itch_backends:
        batch = backend.decode(data)
        assert batch.unknown == 2 and batch.count == 4
        assert batch["A"]["position"].tolist() == [0, 2]
        assert batch["A"]["order_reference_number"].tolist() == [1, 2]


# --- MoldUDP64 ---------------------------------------------------------------------------------


def test_mold_round_trip(itch, sample):
    messages = generator.generate_messages(5_000, seed=4)
    whole = itch.decode(framing.frame(messages))
    packets = []
    sequence = 1
    rng = random.Random(5)
    i = 0
    while i < len(messages):
        k = rng.randrange(1, 40)
        packets.append(framing.encode_mold(b"SESSION01", sequence, messages[i : i + k]))
        sequence += len(messages[i : i + k])
        i += k
    parts = []
    expected_sequence = 1
    for packet in packets:
        header, batch = itch.decode_mold(packet)
        assert header.session == b"SESSION01 " and header.sequence == expected_sequence
        expected_sequence += header.count
        parts.append(batch)
    merged = framing.Batch.concatenate(parts)
    for t in whole:
        assert np.array_equal(merged[t]["position"], whole[t]["position"] + 1)
        names = [n for n in whole[t].dtype.names if n != "position"]
        assert np.array_equal(merged[t][names], whole[t][names])
    header, batch = itch.decode_mold(framing.encode_mold(b"S", 77))
    assert header.is_heartbeat and batch.count == 0
    header, batch = itch.decode_mold(framing.encode_mold(b"S", 77, end_of_session=True))
    assert header.is_end_of_session and batch.count == 0


def test_mold_bad_packets(itch_backends):
    messages = [_pack_add(1), _pack_add(2)]
    packet = framing.encode_mold(b"S", 1, messages)
    over_count = packet[:18] + (3).to_bytes(2, "big") + packet[20:]
    cases = {
        "byte offset 10": packet[:10],
        "count 3 overruns the packet: it ends after 2 messages at byte offset 96": over_count,
        "truncated message at byte offset 58": packet[:-1],
        "bytes after its 2 messages at byte offset 96": packet + b"\x00\x01A",
        "carries data at byte offset 20": framing.encode_mold(b"S", 1) + b"\x00",
    }
    for backend in itch_backends:
        for text, data in cases.items():
            with pytest.raises(ValueError, match=text):
                backend.decode_mold(data)


# --- one message at a time ---------------------------------------------------------------------


def test_single_message_record(itch):
    messages = generator.generate_messages(20_000, seed=6)
    batch = itch.decode(framing.frame(messages))
    rows = {t: iter(batch[t]) for t in batch}
    record = itch.Message()
    assert record.type == "" and record.size == 0
    seen = set()
    for raw in messages:
        assert record.parse(raw) == len(raw)
        row = next(rows[record.type])
        as_dict = record.to_dict()
        assert as_dict["type"] == record.type
        for name in row.dtype.names[1:]:
            value = getattr(record, name)
            if isinstance(value, bytes):
                assert value.rstrip(b"\0") == row[name], name
            else:
                assert value == row[name], name
            assert as_dict[name] == value
        assert record.to_bytes() == raw
        seen.add(record.type)
    assert seen == set(spec.TYPES)
    padded = b"xx" + messages[-1] + b"yy"
    assert record.parse(padded, 2) == len(messages[-1])
    with pytest.raises(AttributeError):
        record.no_such_field


def test_single_message_errors(itch_backends):
    add = _pack_add(9)
    for backend in itch_backends:
        record = backend.Message()
        with pytest.raises(ValueError, match="truncated message at byte offset 0"):
            record.parse(add[:-1])
        with pytest.raises(ValueError, match="unknown message type 'z' at byte offset 1"):
            record.parse(b"Az" + add, 1)
        with pytest.raises(ValueError, match="offset"):
            record.parse(add, len(add))
        with pytest.raises(ValueError, match="offset"):
            record.parse(add, -1)
        record.parse(add)
        with pytest.raises(AttributeError):
            record.executed_shares  # an add has no executed shares
        assert record.order_reference_number == 9 and record.price == 1_000_000 and record.stock == b"ABCD    "


# --- streaming ---------------------------------------------------------------------------------


def test_split_chunks_equal_one_shot(itch):
    data = generator.generate(20_000, seed=7)
    whole = itch.decode(data)
    rng = random.Random(8)
    for _ in range(6):
        decoder = itch.StreamDecoder()
        cuts = sorted(rng.sample(range(1, len(data)), rng.randrange(1, 300)))
        cuts += [1, 2, 3]  # the length prefix itself split too
        cuts = sorted(set(cuts))
        parts = []
        last = 0
        for cut in cuts + [len(data)]:
            parts.append(decoder.feed(data[last:cut]))
            last = cut
        decoder.close()
        merged = framing.Batch.concatenate(parts)
        for t in whole:
            assert np.array_equal(merged[t], whole[t]), t
        assert decoder.count == whole.count and decoder.offset == len(data)


def test_byte_by_byte_streaming(itch):
    data = generator.generate(300, seed=10)
    decoder = itch.StreamDecoder(types="AD")
    parts = [decoder.feed(data[i : i + 1]) for i in range(len(data))]
    merged = framing.Batch.concatenate(parts)
    whole = itch.decode(data, types="AD")
    assert np.array_equal(merged["A"], whole["A"]) and np.array_equal(merged["D"], whole["D"])


def test_stream_errors_name_the_stream_offset(itch):
    data = framing.frame([_pack_add(1), _pack_add(2), _pack_add(3)[:-1]])
    decoder = itch.StreamDecoder()
    decoder.feed(data[:50])
    with pytest.raises(ValueError, match="expected 36, at byte offset 76"):
        decoder.feed(data[50:])
    decoder = itch.StreamDecoder()
    decoder.feed(framing.frame([_pack_add(1)])[:-3])
    with pytest.raises(ValueError, match="truncated message at byte offset 0"):
        decoder.close()


def test_read_file_in_chunks(itch, tmp_path):
    data = generator.generate(30_000, seed=11)
    path = tmp_path / "feed.itch"
    path.write_bytes(data)
    whole = itch.decode(data)
    batches = list(itch.read(str(path), chunk_size=4096, progress=False))
    assert len(batches) == -(-len(data) // 4096)
    merged = framing.Batch.concatenate(batches)
    for t in whole:
        assert np.array_equal(merged[t], whole[t])
    path.write_bytes(data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        list(itch.read(str(path), chunk_size=1000, progress=False))
    with pytest.raises(ValueError, match="chunk_size"):
        list(itch.read(str(path), chunk_size=0))


# --- fuzz: both backends, same outcome, never a crash ------------------------------------------


_SEED_FEED = generator.generate(200, seed=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    compiled, pure = [load_backend(name, "lowlat.itch") for name in BACKENDS]
    assert_same_outcome(outcome(compiled.decode, data), outcome(pure.decode, data))
    assert_same_outcome(outcome(lambda d: compiled.decode_mold(d)[1], data), outcome(lambda d: pure.decode_mold(d)[1], data))
    for backend in (compiled, pure):
        record = backend.Message()
        for offset in range(min(len(data), 8)):
            try:
                record.parse(data, offset)
            except ValueError:
                pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SEED_FEED) - 1), st.integers(0, 255)), max_size=6), st.integers(0, len(_SEED_FEED)))
def test_fuzz_mutated_feed(mutations, cut):
    data = bytearray(_SEED_FEED)
    for index, value in mutations:
        data[index] = value
    data = bytes(data[:cut])
    compiled, pure = [load_backend(name, "lowlat.itch") for name in BACKENDS]
    assert_same_outcome(outcome(compiled.decode, data), outcome(pure.decode, data))


# --- the two backends have one interface -------------------------------------------------------


def _doc(obj):
    import inspect

    doc = obj.__doc__ or ""
    if "\n--\n\n" in doc:  # the compiled half's embedded signature
        doc = doc.split("\n--\n\n", 1)[1]
    return inspect.cleandoc(doc)


def _parameters(fn):
    import inspect

    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_backends_have_the_same_interface(itch_backends):
    import inspect

    compiled, pure = itch_backends
    assert compiled.__all__ == pure.__all__
    for name in pure.__all__:
        a, b = getattr(compiled, name), getattr(pure, name)
        if name == "StreamDecoder" or not callable(b):
            continue
        assert _doc(a) == _doc(b), name
        if inspect.isfunction(b):
            assert _parameters(a) == _parameters(b), name
    for method in ("parse", "to_dict", "to_bytes"):
        a, b = getattr(compiled.Message, method), getattr(pure.Message, method)
        assert _doc(a) == _doc(b), method


def test_default_backend_is_compiled():
    import subprocess
    import sys

    if not os.environ.get("LOWLAT_REQUIRE_EXTENSIONS"):
        pytest.skip("the compiled half is optional here")
    out = subprocess.run(
        [sys.executable, "-c", "import lowlat.itch as i; print(i.BACKEND)"],
        capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if k != "LOWLAT_PURE_PYTHON"},
    )
    assert out.stdout.split() == ["cython"]


def test_stubs_name_the_public_api(itch_backends):
    import ast
    from pathlib import Path

    import lowlat.itch

    stub = Path(lowlat.itch.__file__).with_name("_c.pyi")
    tree = ast.parse(stub.read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for backend in itch_backends:
        assert set(backend.__all__) == names
    message = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Message")
    for item in message.body:
        # Properties past the header are read through __getattr__ in the pure twin: methods only.
        if isinstance(item, ast.FunctionDef) and not item.name.startswith("_") and not item.decorator_list:
            for backend in itch_backends:
                assert hasattr(backend.Message, item.name), item.name
    init_stub = Path(lowlat.itch.__file__).with_name("__init__.pyi").read_text()
    for name in lowlat.itch.__all__:
        assert f" as {name}\n" in init_stub or f"{name}: " in init_stub, name


def test_compiled_order_flow_uses_the_straight_line_converters():
    compiled = load_backend("cython", "lowlat.itch")
    # Each converter's C struct must match spec.dtype_of at import, or the type falls back to the table.
    assert compiled._specialised_types() == "ACDEFUX"


def test_read_shows_progress_when_asked(itch, tmp_path, capsys):
    data = generator.generate(5_000, seed=13)
    path = tmp_path / "feed.itch"
    path.write_bytes(data)
    total = sum(b.count for b in itch.read(str(path), chunk_size=10_000, progress=True))
    assert total == 5_000
    err = capsys.readouterr().err
    assert "itch:" in err and "5,000 messages" in err and "100.0%" in err


def test_generator_is_seeded_and_consistent(itch):
    a = generator.generate(20_000, seed=5, instruments=30)
    assert a == generator.generate(20_000, seed=5, instruments=30)
    assert a != generator.generate(20_000, seed=6, instruments=30)
    batch = itch.decode(a)
    assert batch.count == 20_000 and all(len(batch[t]) for t in spec.TYPES)
    assert set(batch["R"]["stock_locate"].tolist()) == set(range(1, 31))
    # Every modification names a live order, never more shares than it has.
    live = {}
    for t, row in batch.ordered():
        rec = batch[t][row]
        if t in "AF":
            live[int(rec["order_reference_number"])] = int(rec["shares"])
        elif t in "ECX":
            ref = int(rec["order_reference_number"])
            taken = int(rec["executed_shares"] if t != "X" else rec["cancelled_shares"])
            assert 0 < taken <= live[ref]
            live[ref] -= taken
            if not live[ref]:
                del live[ref]
        elif t == "D":
            del live[int(rec["order_reference_number"])]
        elif t == "U":
            del live[int(rec["original_order_reference_number"])]
            live[int(rec["new_order_reference_number"])] = int(rec["shares"])
    assert np.all(np.diff(np.concatenate([batch[t]["timestamp"] for t in spec.TYPES])[np.argsort(
        np.concatenate([batch[t]["position"] for t in spec.TYPES]))]) >= 0)
