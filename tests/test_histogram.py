"""LatencyHistogram, LatencyTracker, timer calibration: both backends, checked against numpy and hdrhistogram."""

from __future__ import annotations

import base64
import inspect
import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowlat

try:
    from hdrh.histogram import HdrHistogram
except ImportError:  # only the tests that compare with it skip; the twin comparisons still run
    HdrHistogram = None

needs_hdrh = pytest.mark.skipif(HdrHistogram is None, reason="needs the hdrhistogram package")

HOUR_NS = 3_600_000_000_000
HIST_NAMES = ["LatencyHistogram", "LatencyTracker", "latency_benchmark", "timer_overhead_ns"]
SMALL = dict(lowest=1, highest=10**7, significant_figures=2)  # 1,664 counters: fast hdrh oracle
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_oracles: dict[tuple[int, int, int], HdrHistogram] = {}


def oracle(lowest=1, highest=HOUR_NS, significant_figures=3) -> HdrHistogram:
    """An empty hdrh histogram of the same layout: the reference for bucket bounds."""
    key = (lowest, highest, significant_figures)
    if key not in _oracles:
        _oracles[key] = HdrHistogram(*key)
    return _oracles[key]


def hdrh_with(values, lowest=1, highest=HOUR_NS, significant_figures=3) -> HdrHistogram:
    ref = HdrHistogram(lowest, highest, significant_figures)
    for v in values:
        assert ref.record_value(int(v))
    return ref


def rank_value(sorted_values: np.ndarray, p: float) -> int:
    """The recorded value HdrHistogram's getValueAtPercentile looks up: rank max(1, int(p/100*n + 0.5))."""
    n = len(sorted_values)
    k = min(max(int(p * n / 100 + 0.5), 1), n)
    return int(sorted_values[k - 1])


# --------------------------------------------------------------------- interface parity
def _params(obj):
    sig = inspect.signature(obj)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def test_names_signatures_docstrings_agree(backends):
    compiled, pure = backends
    for name in HIST_NAMES:
        assert name in compiled.__all__ and name in pure.__all__
        c, p = getattr(compiled, name), getattr(pure, name)
        assert _params(c) == _params(p), name
        assert inspect.getdoc(c) == inspect.getdoc(p), name
    for cls in ("LatencyHistogram", "LatencyTracker"):
        c_cls, p_cls = getattr(compiled, cls), getattr(pure, cls)
        public = sorted(a for a in dir(p_cls) if not a.startswith("_"))
        assert public == sorted(a for a in dir(c_cls) if not a.startswith("_"))
        for attr in public:
            c, p = getattr(c_cls, attr), getattr(p_cls, attr)
            assert inspect.getdoc(c) == inspect.getdoc(p), f"{cls}.{attr}"
            if callable(p):
                assert _params(c) == _params(p), f"{cls}.{attr}"


# --------------------------------------------------------------------- layout and memory
@needs_hdrh
def test_default_layout_memory(impl):
    h = impl.LatencyHistogram()
    assert (h.lowest, h.highest, h.significant_figures) == (1, HOUR_NS, 3)
    ref = oracle()
    assert h.nbytes == ref.counts_len * 8 == 270_336 < 1_000_000
    assert impl.LatencyHistogram(1000, 10**9, 2).nbytes == oracle(1000, 10**9, 2).counts_len * 8


@needs_hdrh
@pytest.mark.parametrize("layout", [(1, HOUR_NS, 3), (1000, 10**9, 2), (7, 2**62, 1), (1, 10**6, 5), (2**20, 2**40, 4)])
def test_bucket_bounds_match_hdrh(impl, layout):
    ref = oracle(*layout)
    h = impl.LatencyHistogram(*layout)
    rng = np.random.default_rng(sum(layout) % 2**32)
    values = sorted({0, 1, layout[0], layout[1], *rng.integers(0, layout[1], 200).tolist()})
    for v in values:
        h.reset()
        h.record(v)
        assert h.percentile(100) == ref.get_highest_equivalent_value(v), v
        assert h.percentile(0) == ref.get_lowest_equivalent_value(v), v


# --------------------------------------------------------------------- percentiles vs numpy
def _lognormal(n, seed):
    return np.random.default_rng(seed).lognormal(mean=np.log(50_000), sigma=1.0, size=n).astype(np.int64)


def _bimodal(n, seed):
    rng = np.random.default_rng(seed)
    fast = rng.lognormal(np.log(20_000), 0.25, size=int(n * 0.7))
    slow = rng.lognormal(np.log(800_000), 0.4, size=n - fast.size)
    data = np.concatenate([fast, slow]).astype(np.int64)
    rng.shuffle(data)
    return data


@needs_hdrh
@pytest.mark.parametrize("make", [_lognormal, _bimodal], ids=["lognormal", "bimodal"])
def test_percentiles_vs_numpy_1m(impl, make):
    data = make(1_000_000, 7)
    h = impl.LatencyHistogram()
    h.record_many(data)
    ordered = np.sort(data)
    ref = oracle()
    assert (h.count, h.min, h.max) == (data.size, int(ordered[0]), int(ordered[-1]))
    precision = 2.0**-10  # bucket width / value at 3 significant figures
    ps = [0.0, 1.0, 10.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]
    got = h.percentiles(ps)
    for p in ps:
        value = h.percentile(p)
        assert value == got[p]
        exact = rank_value(ordered, p)
        # HdrHistogram's answer is the bucket bound of the exact order statistic ...
        bound = ref.get_highest_equivalent_value(exact) if p else ref.get_lowest_equivalent_value(exact)
        assert value == bound, p
        assert abs(value - exact) <= precision * exact, p
    # ... and agrees with numpy.percentile's interpolation within the stated precision where the
    # distribution is dense (away from the bimodal gap, and not in the last 1,000 samples).
    for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9]:
        expected = np.percentile(data, p)
        assert abs(h.percentile(p) - expected) <= 2 * precision * expected + 1, p
    assert h.mean == pytest.approx(float(data.mean()), rel=precision)
    assert h.stdev == pytest.approx(float(data.std()), rel=4 * precision)


def test_record_many_equals_record_loop(impl):
    data = _lognormal(20_000, 3)
    a, b = impl.LatencyHistogram(), impl.LatencyHistogram()
    a.record_many(data)
    for v in data.tolist():
        b.record(v)
    assert a.to_bytes() == b.to_bytes()
    for dtype in (np.int32, np.uint32, np.uint64, np.int16):
        c = impl.LatencyHistogram()
        small = (data % 30_000).astype(dtype).reshape(100, 200)
        c.record_many(small)
        d = impl.LatencyHistogram()
        d.record_many(small.astype(np.int64).ravel().tolist())
        assert c.to_bytes() == d.to_bytes()
    e = impl.LatencyHistogram()
    e.record_many(np.array([], dtype=np.int64))
    assert e.count == 0


# --------------------------------------------------------------------- equality with hdrhistogram
ALL_PS = [0, 0.001, 1, 5, 25, 50, 75, 90, 99, 99.5, 99.9, 99.99, 99.999, 100]


@needs_hdrh
@pytest.mark.parametrize("make", [_lognormal, _bimodal], ids=["lognormal", "bimodal"])
def test_equals_hdrhistogram(impl, make):
    data = make(30_000, 11)
    ref = hdrh_with(data.tolist())
    h = impl.LatencyHistogram()
    for v in data[:15_000].tolist():
        h.record(v)
    h.record_many(data[15_000:])
    expected = {p: ref.get_value_at_percentile(p) for p in ALL_PS}
    assert {p: h.percentile(p) for p in ALL_PS} == expected
    assert h.percentiles(ALL_PS) == expected
    assert h.percentiles(ALL_PS) == ref.get_percentile_to_value_dict(ALL_PS)
    assert h.mean == ref.get_mean_value()
    assert h.stdev == pytest.approx(ref.get_stddev(), rel=1e-12)
    assert h.count == ref.get_total_count()


@needs_hdrh
@given(values=st.lists(st.integers(0, 10**7), min_size=1, max_size=300), ps=st.lists(st.floats(0, 100), max_size=5))
@HYPOTHESIS
def test_equals_hdrhistogram_arbitrary(impl, values, ps):
    ref = hdrh_with(values, **SMALL)
    h = impl.LatencyHistogram(**SMALL)
    h.record_many(np.array(values, dtype=np.int64))
    for p in [*ps, 0.0, 50.0, 100.0]:
        assert h.percentile(p) == ref.get_value_at_percentile(p), p
    assert h.encode() == ref.encode().decode()


# --------------------------------------------------------------------- V2 encoding round trips
@needs_hdrh
def test_encode_roundtrips_with_hdrhistogram(impl):
    data = _bimodal(20_000, 5)
    h = impl.LatencyHistogram()
    h.record_many(data)
    text = h.encode()
    assert isinstance(text, str) and text.startswith("HISTF")
    ref = hdrh_with(data.tolist())
    assert text == ref.encode().decode()  # byte-identical to the package's own encoding
    theirs = HdrHistogram.decode(text)
    assert theirs.get_total_count() == h.count
    assert {p: theirs.get_value_at_percentile(p) for p in ALL_PS} == h.percentiles(ALL_PS)
    back = impl.LatencyHistogram.decode(ref.encode())  # bytes accepted too
    assert back.percentiles(ALL_PS) == h.percentiles(ALL_PS)
    assert back.count == h.count and back.mean == h.mean
    assert (back.min, back.max) == (ref.get_min_value(), ref.get_max_value())
    assert impl.LatencyHistogram.decode(back.encode()).encode() == text


@needs_hdrh
def test_decode_other_layouts_and_empty(impl):
    ref = HdrHistogram(1000, 10**9, 2)
    for v in (0, 999, 1000, 123_456, 10**9):
        ref.record_value(v)
    h = impl.LatencyHistogram.decode(ref.encode())
    assert (h.lowest, h.highest, h.significant_figures, h.count) == (1000, 10**9, 2, 5)
    assert h.percentiles(ALL_PS) == {p: ref.get_value_at_percentile(p) for p in ALL_PS}
    # The package also counts values above `highest` that fit its top bucket: kept, not overflow.
    ref = HdrHistogram(1, 1000, 3)
    for v in (1500, 1600, 2000):
        assert ref.record_value(v)
    h = impl.LatencyHistogram.decode(ref.encode())
    assert (h.count, h.overflow, h.min, h.max) == (3, 0, 1500, 2000)
    assert h.percentiles(ALL_PS) == {p: ref.get_value_at_percentile(p) for p in ALL_PS}
    assert [h.percentile(p) for p in ALL_PS] == [ref.get_value_at_percentile(p) for p in ALL_PS]
    h.record(1700)  # above highest for lowlat: overflow
    assert (h.count, h.overflow, h.percentile(0), h.percentile(100)) == (4, 1, 1500, 2000)
    empty = impl.LatencyHistogram()
    assert empty.encode() == HdrHistogram(1, HOUR_NS, 3).encode().decode()
    again = impl.LatencyHistogram.decode(empty.encode())
    assert (again.count, again.min, again.max, again.percentile(99)) == (0, 0, 0, 0)


def test_to_bytes_roundtrip_across_backends(backends):
    data = np.concatenate([_lognormal(5000, 1), np.array([HOUR_NS + 5, 2 * HOUR_NS])])
    blobs = []
    for impl in backends:
        h = impl.LatencyHistogram()
        h.record_many(data)
        h.record_corrected(HOUR_NS + 10**9, 10**11)
        blobs.append(h.to_bytes())
    assert blobs[0] == blobs[1]
    for impl in backends:
        h = impl.LatencyHistogram.from_bytes(blobs[0])
        assert h.to_bytes() == blobs[0]
        assert h.overflow == 2 + 1 and h.max == 2 * HOUR_NS and h.min == int(data.min())
        clone = pickle.loads(pickle.dumps(h))
        # Pickles name a backend-neutral constructor: they load as the live backend's histogram.
        assert type(clone) is lowlat.LatencyHistogram and clone.to_bytes() == blobs[0]
        assert impl.LatencyHistogram.from_bytes(impl.LatencyHistogram().to_bytes()).count == 0


# --------------------------------------------------------------------- merge, copy, reset
def test_merge_equals_record_all(impl):
    data = _bimodal(40_000, 2)
    whole, parts = impl.LatencyHistogram(), [impl.LatencyHistogram() for _ in range(4)]
    whole.record_many(data)
    whole.record(HOUR_NS + 1)
    for i, part in enumerate(parts):
        part.record_many(data[i::4])
    parts[2].record(HOUR_NS + 1)
    merged = impl.LatencyHistogram()
    for part in parts:
        merged.merge(part)
    assert merged.to_bytes() == whole.to_bytes()
    assert merged.percentiles(ALL_PS) == whole.percentiles(ALL_PS)
    assert (merged.count, merged.min, merged.max, merged.overflow) == (whole.count, whole.min, whole.max, 1)
    assert parts[0].count == 10_000  # other is unchanged
    doubled = whole.copy()
    doubled.merge(doubled)
    assert doubled.count == 2 * whole.count and doubled.percentile(50) == whole.percentile(50)


@needs_hdrh
def test_merge_rejects_other_layouts(impl):
    h = impl.LatencyHistogram()
    for other in (impl.LatencyHistogram(2, HOUR_NS, 3), impl.LatencyHistogram(1, 10**9, 3), impl.LatencyHistogram(1, HOUR_NS, 2)):
        with pytest.raises(ValueError, match="layout"):
            h.merge(other)
    for bad in (None, object(), HdrHistogram(1, HOUR_NS, 3)):
        with pytest.raises(TypeError):
            h.merge(bad)


def test_copy_and_reset(impl):
    h = impl.LatencyHistogram()
    h.record_many(_lognormal(1000, 4))
    clone = h.copy()
    h.record(5)
    assert clone.count == 1000 and h.count == 1001
    h.reset()
    assert (h.count, h.min, h.max, h.overflow, h.mean, h.stdev, h.percentile(50)) == (0, 0, 0, 0, 0.0, 0.0, 0)
    assert h.percentiles([50, 99]) == {50: 0, 99: 0}
    assert h.nbytes == clone.nbytes
    assert "LatencyHistogram(lowest=1" in repr(clone)


# --------------------------------------------------------------------- coordinated omission
@needs_hdrh
def test_record_corrected_hand_computed(impl):
    h = impl.LatencyHistogram()
    # One stall of 10 ms in a loop expecting a sample every 2 ms: HdrHistogram adds the samples
    # the stall hid, at 8, 6, 4 and 2 ms.
    h.record_corrected(10_000_000, 2_000_000)
    assert h.count == 5 and (h.min, h.max) == (2_000_000, 10_000_000)
    ref = oracle()
    hidden = [2_000_000, 4_000_000, 6_000_000, 8_000_000, 10_000_000]
    for i, v in enumerate(hidden):
        assert h.percentile(100 * (i + 1) / 5) == ref.get_highest_equivalent_value(v)
    # A value at or below the interval (or an interval of 0) is recorded alone.
    h.record_corrected(1_500_000, 2_000_000)
    h.record_corrected(30, 0)
    assert h.count == 7 and h.min == 30
    # The package agrees on a case small enough for its loop.
    ref = HdrHistogram(1, HOUR_NS, 3)
    ref.record_corrected_value(10_000_000, 2_000_000)
    ref.record_corrected_value(1_500_000, 2_000_000)
    ref.record_corrected_value(30, 0)
    assert h.encode() == ref.encode().decode()


@pytest.mark.parametrize("value,interval", [(3_000_001, 7), (10**7, 1), (999, 1000), (10**9 + 3, 12_345)])
def test_record_corrected_equals_explicit_series(impl, value, interval):
    h = impl.LatencyHistogram(**SMALL)  # highest 1e7: the larger cases overflow part of the series
    h.record_corrected(value, interval)
    series = np.arange(value, 0, -interval, dtype=np.int64)
    ref = impl.LatencyHistogram(**SMALL)
    ref.record_many(series)
    assert (h.count, h.min, h.max, h.overflow) == (ref.count, ref.min, ref.max, ref.overflow)
    assert h.percentiles(ALL_PS) == ref.percentiles(ALL_PS)
    assert h.mean == pytest.approx(ref.mean, rel=1e-12)
    assert h.stdev == pytest.approx(ref.stdev, rel=1e-6)


# --------------------------------------------------------------------- overflow
def test_overflow_is_counted_not_lost(impl):
    h = impl.LatencyHistogram(1, 10_000, 3)
    h.record_many(np.arange(1, 101))
    h.record(50_000)
    h.record(10_001, 2)
    assert (h.count, h.overflow, h.max, h.min) == (103, 3, 50_000, 1)
    assert h.percentile(100) == 50_000 and h.percentile(99.5) == 50_000
    assert h.percentile(50) == 52  # rank int(103 / 2 + 0.5)
    assert h.mean == pytest.approx((5050 + 50_000 + 20_002) / 103)
    h.record_many(np.array([10**15], dtype=np.uint64))
    assert h.overflow == 4 and h.max == 10**15
    assert impl.LatencyHistogram.decode(h.encode()).count == 100  # V2 carries the buckets only


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda h: h.record(-1), ValueError, "value"),
        (lambda h: h.record(2**63), ValueError, "value"),
        (lambda h: h.record(-(2**70)), ValueError, "value"),
        (lambda h: h.record(1.0), TypeError, "value"),
        (lambda h: h.record("5"), TypeError, "value"),
        (lambda h: h.record(None), TypeError, "value"),
        (lambda h: h.record(5, -1), ValueError, "count"),
        (lambda h: h.record(5, 2.0), TypeError, "count"),
        (lambda h: h.record_many(np.array([1.0, 2.0])), TypeError, "values"),
        (lambda h: h.record_many(["a"]), TypeError, "values"),
        (lambda h: h.record_many(np.array([True])), TypeError, "values"),
        (lambda h: h.record_many(np.array([5, -1, 7])), ValueError, "values"),
        (lambda h: h.record_many(np.array([2**63], dtype=np.uint64)), ValueError, "values"),
        (lambda h: h.record_corrected(-1, 10), ValueError, "value"),
        (lambda h: h.record_corrected(10, -1), ValueError, "expected_interval"),
        (lambda h: h.record_corrected(10, 1.5), TypeError, "expected_interval"),
        (lambda h: h.percentile(-0.1), ValueError, "percentile"),
        (lambda h: h.percentile(100.01), ValueError, "percentile"),
        (lambda h: h.percentile(float("nan")), ValueError, "percentile"),
        (lambda h: h.percentile("50"), TypeError, "percentile"),
        (lambda h: h.percentile(None), TypeError, "percentile"),
        (lambda h: h.percentiles([50, 101]), ValueError, "percentile"),
        (lambda h: h.percentiles([50, "x"]), TypeError, "percentile"),
        (lambda h: h.record(True), TypeError, "value"),
        (lambda h: h.record(False), TypeError, "value"),
        (lambda h: h.record(5, True), TypeError, "count"),
        (lambda h: h.record_corrected(True, 10), TypeError, "value"),
        (lambda h: h.record_corrected(10, True), TypeError, "expected_interval"),
        (lambda h: h.percentile(True), TypeError, "percentile"),
        (lambda h: h.percentile(False), TypeError, "percentile"),
        (lambda h: h.percentiles([50, True]), TypeError, "percentile"),
    ],
)
def test_bad_input_raises_and_records_nothing(impl, call, error, match):
    h = impl.LatencyHistogram()
    h.record(7)
    before = h.to_bytes()
    with pytest.raises(error, match=match):
        call(h)
    assert h.to_bytes() == before


def test_total_count_overflow_is_refused(impl):
    h = impl.LatencyHistogram()
    h.record(5, 2**63 - 2)
    with pytest.raises(ValueError, match="overflow"):
        h.record(5, 2)
    with pytest.raises(ValueError, match="overflow"):
        h.merge(h)
    assert h.count == 2**63 - 2 and h.percentile(99.9) == 5


def test_integer_like_values_are_accepted(impl):
    h = impl.LatencyHistogram()
    h.record(np.int64(5))
    h.record(np.uint16(6), np.int8(2))
    h.record(HOUR_NS, 1)
    h.percentile(np.float32(50))
    h.percentile(50)
    assert h.count == 4 and h.min == 5 and h.max == HOUR_NS


@pytest.mark.parametrize(
    "args,error",
    [
        ((0, 100, 3), ValueError),
        ((10, 19, 3), ValueError),
        ((1, 2**62 + 1, 3), ValueError),
        ((1, 100, 0), ValueError),
        ((1, 100, 6), ValueError),
        ((2**60, 2**62, 3), ValueError),
        ((1.0, 100, 3), TypeError),
        ((1, "100", 3), TypeError),
        ((1, 100, None), TypeError),
        ((True, 100, 3), TypeError),
        ((1, 100, True), TypeError),
    ],
)
def test_constructor_rejects_bad_layout(impl, args, error):
    with pytest.raises(error):
        impl.LatencyHistogram(*args)


def _v2_blob(text: str) -> bytes:
    return base64.b64decode(text)


def _rewrap(raw_compressed_payload: bytes) -> str:
    header = struct.pack(">II", 0x1C849314, len(raw_compressed_payload))
    return base64.b64encode(header + raw_compressed_payload).decode()


def test_decode_rejects_corrupt_input(impl):
    h = impl.LatencyHistogram()
    h.record_many(_lognormal(2000, 8))
    text = h.encode()
    raw = _v2_blob(text)
    payload = zlib.decompress(raw[8:])
    bad_inputs = [
        "",
        "not base64!!",
        "é",
        base64.b64encode(b"\x00" * 4).decode(),
        base64.b64encode(b"\x12\x34\x56\x78" + raw[4:]).decode(),  # cookie
        base64.b64encode(raw[:4] + struct.pack(">I", len(raw)) + raw[8:]).decode(),  # length
        _rewrap(b"garbage that is not zlib"),
        _rewrap(zlib.compress(payload[:30])),  # header cut short
        _rewrap(zlib.compress(payload[:-3])),  # counts shorter than declared
        _rewrap(zlib.compress(payload + b"\x02")),  # longer than declared
        _rewrap(zlib.compress(b"\x1c\x84\x93\x99" + payload[4:])),  # payload cookie
        _rewrap(zlib.compress(payload[:4] + struct.pack(">I", 1) + payload[8:])),  # declared length
        _rewrap(zlib.compress(payload[:8] + struct.pack(">I", 3) + payload[12:])),  # normalizing offset
        _rewrap(zlib.compress(payload[:12] + struct.pack(">I", 9) + payload[16:])),  # figures
        _rewrap(zlib.compress(payload[:16] + struct.pack(">q", 0) + payload[24:])),  # lowest
        _rewrap(zlib.compress(payload[:24] + struct.pack(">q", 1) + payload[32:])),  # highest
        _rewrap(zlib.compress(payload)[:-2]),  # zlib stream cut
        _rewrap(zlib.compress(payload) + b"xx"),  # trailing bytes
    ]
    body = bytearray(payload[:40])
    body[4:8] = struct.pack(">I", 3)
    bad_inputs.append(_rewrap(zlib.compress(bytes(body) + b"\x81\x80\x80")))  # truncated varint
    body[4:8] = struct.pack(">I", 4)
    bad_inputs.append(_rewrap(zlib.compress(bytes(body) + b"\xff\xff\x04\x02")))  # 40,960 zeros: past the end
    body[4:8] = struct.pack(">I", 9)
    bad_inputs.append(_rewrap(zlib.compress(bytes(body) + b"\xff" * 9)))  # zigzag INT64_MIN run
    body[4:8] = struct.pack(">I", 18)
    huge = b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff"  # count 2**63 - 1
    bad_inputs.append(_rewrap(zlib.compress(bytes(body) + huge + huge)))  # total above int64
    for bad in bad_inputs:
        with pytest.raises(ValueError):
            impl.LatencyHistogram.decode(bad)
    for bad in (None, 5, ["x"]):
        with pytest.raises(TypeError):
            impl.LatencyHistogram.decode(bad)
    for cut in range(len(raw)):  # every truncation of the binary form
        with pytest.raises(ValueError):
            impl.LatencyHistogram.decode(base64.b64encode(raw[:cut]))


def test_from_bytes_rejects_corrupt_input(impl):
    h = impl.LatencyHistogram(1, 10**6, 3)
    h.record_many(np.arange(0, 2_000_000, 997))
    blob = h.to_bytes()
    for cut in range(len(blob)):
        with pytest.raises(ValueError):
            impl.LatencyHistogram.from_bytes(blob[:cut])
    header = bytearray(blob)
    for offset, patch in [(0, b"XXXX"), (4, b"\x02"), (5, b"\x04"), (16, struct.pack("<q", 10**7)),
                          (24, struct.pack("<q", 5)), (32, struct.pack("<q", 7)), (40, struct.pack("<q", 6)),
                          (48, struct.pack("<q", -1))]:
        bad = bytearray(header)
        bad[offset : offset + len(patch)] = patch
        with pytest.raises(ValueError):
            impl.LatencyHistogram.from_bytes(bytes(bad))
    inside = impl.LatencyHistogram()
    inside.record_many(np.array([10, 500, 90_000]))
    for offset, value in [(32, 9), (32, 11), (40, 500), (40, 10**6)]:  # min / max off their buckets
        bad = bytearray(inside.to_bytes())
        bad[offset : offset + 8] = struct.pack("<q", value)
        with pytest.raises(ValueError, match="inconsistent"):
            impl.LatencyHistogram.from_bytes(bytes(bad))
    for bad in (None, "text", 12):
        with pytest.raises(TypeError):
            impl.LatencyHistogram.from_bytes(bad)


@given(data=st.binary(max_size=200), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4))
@HYPOTHESIS
def test_random_corruption_never_crashes(impl, data, flips):
    h = impl.LatencyHistogram(**SMALL)
    h.record_many(np.array([3, 5, 900, 10**6, 20**5], dtype=np.int64))
    for blob, loader in ((h.to_bytes(), impl.LatencyHistogram.from_bytes), (_v2_blob(h.encode()), None)):
        mutated = bytearray(blob)
        for position, xor in flips:
            mutated[position % len(mutated)] ^= xor
        for candidate in (bytes(mutated), data):
            try:
                if loader is None:
                    result = impl.LatencyHistogram.decode(base64.b64encode(candidate))
                else:
                    result = loader(candidate)
            except ValueError:
                continue
            result.percentiles([0, 50, 100])  # whatever decoded is a usable histogram
            assert result.count >= 0


# --------------------------------------------------------------------- hypothesis: arbitrary values
@needs_hdrh
@given(
    values=st.lists(st.integers(0, 2 * 10**7), min_size=1, max_size=400),
    ps=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=6),
)
@HYPOTHESIS
def test_arbitrary_values_exact_extremes_and_precision(backends, values, ps):
    ordered = np.sort(np.array(values, dtype=np.int64))
    results = []
    for impl in backends:
        h = impl.LatencyHistogram(**SMALL)
        for v in values[: len(values) // 2]:
            h.record(v)
        h.record_many(values[len(values) // 2 :])
        assert h.count == len(values)
        assert h.min == min(values) and h.max == max(values)
        assert h.overflow == sum(v > SMALL["highest"] for v in values)
        ref = oracle(**SMALL)  # same layout
        for p in ps:
            got = h.percentile(p)
            exact = rank_value(ordered, p)
            if exact > SMALL["highest"]:
                assert got == h.max
            else:
                bound = ref.get_highest_equivalent_value(exact) if p else ref.get_lowest_equivalent_value(exact)
                assert got == bound
                assert abs(got - exact) <= exact * 2.0**-7  # 2 significant figures: buckets 1/128 wide
        results.append((h.to_bytes(), h.percentiles(ps), h.mean, h.stdev))
    assert results[0] == results[1]  # the two backends agree exactly


# --------------------------------------------------------------------- tracker
STAT_KEYS = {"name", "count", "mean_ns", "median_ns", "std_ns", "min_ns", "max_ns", "p50_ns", "p90_ns",
             "p99_ns", "p999_ns", "p9999_ns", "timer_overhead_ns"}


def test_tracker_warmup_and_statistics(impl):
    t = impl.LatencyTracker("orders", warmup_iterations=3)
    for v in (10**9, 10**9, 10**9):  # warm-up samples are dropped
        t.record(v)
    for v in range(1, 1001):
        t.record(v * 1000)
    stats = t.get_statistics()
    assert set(stats) == STAT_KEYS
    assert stats["name"] == "orders" and stats["count"] == 1000 == t.count
    assert stats["min_ns"] == 1000 and stats["max_ns"] == 1_000_000
    assert stats["median_ns"] == stats["p50_ns"] == t.histogram.percentile(50)
    assert abs(stats["p99_ns"] - 990_000) <= 990_000 / 1024
    assert t.histogram.percentile(99.99) > 1_000_000  # the bucket bound passes the exact max ...
    assert stats["p9999_ns"] == 1_000_000 and stats["p999_ns"] == t.histogram.percentile(99.9)  # capped
    assert stats["mean_ns"] == pytest.approx(500_500, rel=1e-3)
    assert stats["std_ns"] == pytest.approx(np.std(np.arange(1, 1001) * 1000), rel=1e-3)
    assert stats["timer_overhead_ns"] == impl.timer_overhead_ns()
    out = io.StringIO()
    t.print_report(file=out)
    report = out.getvalue()
    assert "orders" in report and "p99.9" in report and "1,000,000" in report
    t.reset()
    assert t.count == 0
    empty = t.get_statistics()
    assert set(empty) == STAT_KEYS and empty["count"] == 0 and empty["p99_ns"] is None
    t.print_report(file=out)


def test_tracker_measure(impl):
    t = impl.LatencyTracker("sleep", warmup_iterations=1)
    for _ in range(4):
        with t.measure():
            sum(range(2000))
    with pytest.raises(KeyError):
        with t.measure():
            raise KeyError("not recorded")
    outer = t.measure()
    with outer:
        with t.measure():
            pass
    assert t.count == 3 + 2
    assert 0 < t.histogram.min <= t.histogram.max < 10**9


def test_tracker_memory_is_constant(impl):
    t = impl.LatencyTracker("x", 0)
    before = t.histogram.nbytes
    data = _lognormal(1_000_000, 9)
    t.histogram.record_many(data)
    for v in data[:1000].tolist():
        t.record(v)
    assert t.histogram.nbytes == before and t.count == 1_001_000


def test_tracker_shares_histogram_and_validates(impl):
    shared = impl.LatencyHistogram(1, 10**9, 2)
    a = impl.LatencyTracker("a", 0, histogram=shared)
    b = impl.LatencyTracker("b", 0, histogram=shared)
    a.record(5)
    b.record(6)
    assert shared.count == 2 and a.histogram is shared
    with pytest.raises(TypeError):
        impl.LatencyTracker(5)
    with pytest.raises(TypeError):
        impl.LatencyTracker("x", 1.5)
    with pytest.raises(ValueError):
        impl.LatencyTracker("x", -1)
    with pytest.raises(TypeError):
        impl.LatencyTracker("x", 0, histogram=object())
    with pytest.raises(TypeError):
        impl.LatencyTracker("x", 0, shared)  # histogram is keyword-only
    with pytest.raises(ValueError, match="latency_ns"):
        a.record(-5)
    with pytest.raises(TypeError, match="latency_ns"):
        a.record(5.0)
    assert "LatencyTracker('a'" in repr(a)


def test_timer_overhead_is_calibrated_once(impl):
    first = impl.timer_overhead_ns()
    assert isinstance(first, int) and 0 <= first < 100_000
    assert impl.timer_overhead_ns() == first


def test_latency_benchmark_decorator(impl):
    calls = []

    @impl.latency_benchmark(warmup=5, iterations=50)
    def work(x, scale=1):
        """Square a number."""
        calls.append(x)
        return x * x * scale

    assert work(3, scale=2) == 18 and work.__name__ == "work" and work.__doc__ == "Square a number."
    assert work.last_statistics is None
    stats = work.benchmark(4)
    assert len(calls) == 1 + 55 and calls[-1] == 4
    assert set(stats) == STAT_KEYS and stats["count"] == 50 and stats["name"].endswith("work")
    assert work.last_statistics is stats
    default = impl.latency_benchmark()
    assert callable(default)
    for args, error in (((-1, 10), ValueError), ((0, 0), ValueError), ((1.5, 10), TypeError), ((1, "x"), TypeError)):
        with pytest.raises(error):
            impl.latency_benchmark(*args)


# --------------------------------------------------------------------- differential: both backends, any input
_ANY_INT = st.one_of(st.integers(-5, 3 * 10**7), st.integers(-(2**70), 2**70), st.just(2**63 - 1))
_ODD = st.sampled_from([1.5, "7", None, float("nan"), np.int64(9), np.uint8(3), True])
_OPS = st.one_of(
    st.tuples(st.just("record"), st.one_of(_ANY_INT, _ODD), st.one_of(st.integers(-2, 5), _ODD)),
    st.tuples(st.just("record_many"), st.lists(st.integers(-3, 3 * 10**7), max_size=30), st.sampled_from(["int64", "uint32", "float64"])),
    st.tuples(st.just("record_corrected"), st.one_of(_ANY_INT, _ODD), st.one_of(st.integers(-5, 10**6), _ODD)),
    st.tuples(st.just("percentile"), st.one_of(st.floats(-10, 110), _ODD), st.none()),
    st.tuples(st.just("percentiles"), st.lists(st.floats(-1, 101), max_size=4), st.none()),
    st.tuples(st.just("merge_copy"), st.none(), st.none()),
    st.tuples(st.just("stats"), st.none(), st.none()),
)


def _apply(h, op):
    name, a, b = op
    try:
        if name == "record":
            return h.record(a, b)
        if name == "record_many":
            return h.record_many(np.array(a, dtype=b) if b != "uint32" or min(a, default=0) >= 0 else np.array(a))
        if name == "record_corrected":
            return h.record_corrected(a, b)
        if name == "percentile":
            return h.percentile(a)
        if name == "percentiles":
            return h.percentiles(a)
        if name == "merge_copy":
            return h.merge(h.copy())
        return (h.count, h.min, h.max, h.overflow, h.mean, h.stdev, h.percentiles([0, 50, 99.9, 100]))
    except (TypeError, ValueError) as exc:
        return type(exc)


@given(ops=st.lists(_OPS, max_size=25))
@HYPOTHESIS
def test_backends_agree_on_any_operation_sequence(backends, ops):
    histograms = [impl.LatencyHistogram(**SMALL) for impl in backends]
    for op in ops:
        results = [_apply(h, op) for h in histograms]
        assert results[0] == results[1], op
    assert histograms[0].to_bytes() == histograms[1].to_bytes()
    assert histograms[0].encode() == histograms[1].encode()


def test_read_only_and_strided_arrays(impl):
    data = _lognormal(10_000, 12)
    data.setflags(write=False)
    a, b = impl.LatencyHistogram(), impl.LatencyHistogram()
    a.record_many(data)
    a.record_many(data[::3])
    b.record_many(data.astype(">i8"))
    b.record_many(data[::3].copy())
    assert a.to_bytes() == b.to_bytes()


_HISTOGRAM_CALLS = {
    "record": lambda h: h.record(5),
    "record_many": lambda h: h.record_many(np.arange(3)),
    "record_corrected": lambda h: h.record_corrected(10, 3),
    "percentile": lambda h: h.percentile(50),
    "percentiles": lambda h: h.percentiles([50]),
    "merge into": lambda h: h.merge(type(h)()),
    "merge from": lambda h: type(h)().merge(h),
    "reset": lambda h: h.reset(),
    "copy": lambda h: h.copy(),
    "encode": lambda h: h.encode(),
    "to_bytes": lambda h: h.to_bytes(),
    "pickle": pickle.dumps,
    **{name: (lambda h, name=name: getattr(h, name)) for name in (
        "count", "overflow", "min", "max", "mean", "stdev", "lowest", "highest", "significant_figures", "nbytes"
    )},
}
_TRACKER_CALLS = {
    "record": lambda t: t.record(5),
    "reset": lambda t: t.reset(),
    "get_statistics": lambda t: t.get_statistics(),
    "print_report": lambda t: t.print_report(io.StringIO()),
    "measure": lambda t: [m.__enter__() or m.__exit__(None, None, None) for m in [t.measure()]],
    **{name: (lambda t, name=name: getattr(t, name)) for name in ("name", "warmup_iterations", "histogram", "count")},
}


@pytest.mark.parametrize("cls, calls", [("LatencyHistogram", _HISTOGRAM_CALLS), ("LatencyTracker", _TRACKER_CALLS)])
def test_uninitialised_objects_raise_value_error(impl, cls, calls):
    """An object made by ``__new__`` alone: every call raises the same ValueError in both backends."""
    kind = getattr(impl, cls)
    for what, call in calls.items():
        with pytest.raises(ValueError, match=f"{cls} is not initialised"):
            call(kind.__new__(kind))
    assert repr(kind.__new__(kind)) == f"<uninitialised {cls}>"


def test_measurement_made_by_new_raises_value_error(impl):
    orphan = type(impl.LatencyTracker("x").measure())
    with pytest.raises(ValueError, match="measure"):
        with orphan.__new__(orphan):
            pass


def test_record_many_reads_the_memory_not_a_lying_dtype(impl):
    """An ndarray subclass whose ``dtype``/``flags`` properties lie is read as what it holds."""
    lying_int = type("LyingInt", (np.ndarray,), {"dtype": property(lambda self: np.dtype("i8"))})
    h = impl.LatencyHistogram()
    with pytest.raises(TypeError, match="values"):
        h.record_many(np.array([1.5, 2.5]).view(lying_int))  # floats that claim to be int64
    assert h.count == 0
    h.record_many(np.arange(16, dtype="i1").view(lying_int))  # 16 one-byte ints, not 16 int64s
    assert (h.count, h.min, h.max) == (16, 0, 15)
    lying_flags = type("LyingFlags", (np.ndarray,), {"flags": property(lambda self: None)})
    h.record_many(np.arange(8, dtype="i8")[::2].view(lying_flags))  # strided, whatever .flags says
    assert (h.count, h.max) == (20, 15)
    assert h.percentiles([0, 100]) == {0: 0, 100: 15}


def test_from_bytes_and_decode_read_the_bytes_not_the_wrapper(impl):
    h = impl.LatencyHistogram()
    h.record_many(np.arange(1, 1000))
    blob, text = h.to_bytes(), h.encode()

    class LyingBytes(bytes):
        def __len__(self):
            return 10**9

        def __getitem__(self, index):
            raise AssertionError("read through the wrapper")

    class LyingView(bytearray):
        def __len__(self):
            return 3

    for data in (LyingBytes(blob), LyingView(blob), memoryview(blob), memoryview(bytearray(blob))):
        assert impl.LatencyHistogram.from_bytes(data).to_bytes() == blob
    assert impl.LatencyHistogram.decode(LyingBytes(text.encode())).to_bytes() == impl.LatencyHistogram.decode(text).to_bytes()
    with pytest.raises(ValueError):
        impl.LatencyHistogram.from_bytes(memoryview(blob)[: len(blob) // 2])


def test_public_package_exports_the_live_backend():
    import lowlat

    for name in HIST_NAMES:
        assert name in lowlat.__all__
    h = lowlat.LatencyHistogram()
    assert type(h).__module__ == ("lowlat.hist._c" if lowlat.BACKEND == "cython" else "lowlat.hist._py")


@needs_hdrh
def test_decode_accepts_java_style_single_zeros(impl):
    # HdrHistogram (Java) writes a lone empty bucket as the count 0; hdrh writes it as a run (-1).
    def zigzag(values):
        out = bytearray()
        for v in values:
            z = ((v << 1) ^ (v >> 63)) & 0xFFFFFFFFFFFFFFFF
            while z >= 0x80:
                out.append((z & 0x7F) | 0x80)
                z >>= 7
            out.append(z)
        return bytes(out)

    counts = zigzag([0, 2, -3, 1, 0, 4])  # indices 0..7: 0, 2, 0, 0, 0, 1, 0, 4
    header = struct.pack(">IIIIqqd", 0x1C849313, len(counts), 0, 3, 1, HOUR_NS, 1.0)
    h = impl.LatencyHistogram.decode(_rewrap(zlib.compress(header + counts)))
    assert (h.count, h.min, h.max) == (7, 1, 7)
    assert h.percentiles([0, 30, 50, 100]) == {0: 1, 30: 1, 50: 7, 100: 7}
    ref = hdrh_with([1, 1, 5, 7, 7, 7, 7])
    assert h.encode() == ref.encode().decode()


@pytest.mark.parametrize("lowest,figures", [(1, 1), (1, 2), (1, 3), (3, 3), (1000, 4), (1, 5)])
def test_stated_precision(impl, lowest, figures):
    relative = {1: 1 / 16, 2: 1 / 128, 3: 1 / 1024, 4: 1 / 16384, 5: 1 / 131072}[figures]
    unit = 1 << (lowest.bit_length() - 1)
    h = impl.LatencyHistogram(lowest, 10**12, figures)
    rng = np.random.default_rng(figures)
    values = [*rng.integers(0, 10**figures * lowest, 50).tolist(), *np.unique(rng.lognormal(12, 4, 200).astype(np.int64) % 10**12).tolist()]
    for v in values:
        h.reset()
        h.record(v)
        low, high = h.percentile(0), h.percentile(100)
        assert low <= v <= high
        if v < 10**figures * lowest:
            assert high - low + 1 == unit, v
        else:
            assert high - low + 1 <= max(unit, v * relative), v


@given(body=st.binary(max_size=80), highest=st.sampled_from([10**4, HOUR_NS]))
@HYPOTHESIS
def test_backends_agree_on_arbitrary_v2_counts(backends, body, highest):
    # A valid header and zlib stream around arbitrary varint bytes: reaches the counts decoder.
    header = struct.pack(">IIIIqqd", 0x1C849313, len(body), 0, 3, 1, highest, 1.0)
    text = _rewrap(zlib.compress(header + body))
    outcomes = []
    for impl in backends:
        try:
            h = impl.LatencyHistogram.decode(text)
        except ValueError:
            outcomes.append(ValueError)
            continue
        outcomes.append((h.count, h.min, h.max, h.percentiles([0, 50, 100]), h.mean, h.to_bytes()))
        assert impl.LatencyHistogram.from_bytes(h.to_bytes()).encode() == h.encode()
    assert outcomes[0] == outcomes[1]
