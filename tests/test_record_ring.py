"""RecordRing: records of a numpy dtype, single and batched, bad input, threaded stress."""

import time

import numpy as np
import pytest

from conftest import run_producer_consumer

QUOTE = np.dtype([("ts", "i8"), ("px", "f8"), ("qty", "i4")])


def test_scalar_dtype_push_pop(impl):
    ring = impl.RecordRing("i8", 3)
    assert ring.capacity == 4 and ring.dtype == np.dtype("i8")
    assert all(ring.push(v) for v in [10, 20, 30, 40])
    assert not ring.push(50)
    values = [ring.pop() for _ in range(4)]
    assert values == [10, 20, 30, 40]
    assert all(isinstance(v, np.int64) for v in values)
    assert ring.pop() is None and ring.pop(-1) == -1


def test_structured_pop_is_a_copy(impl):
    ring = impl.RecordRing(QUOTE, 2)
    ring.push((1, 100.5, 7))
    first = ring.pop()
    assert isinstance(first, np.void)
    ring.push((2, 200.25, 8))
    ring.push((3, 300.0, 9))  # reuses the first record's slot
    assert tuple(first) == (1, 100.5, 7)
    assert tuple(ring.pop()) == (2, 200.25, 8)
    assert first["px"] == 100.5


def test_push_bad_record_leaves_ring_unchanged(impl):
    ring = impl.RecordRing(QUOTE, 4)
    with pytest.raises((ValueError, TypeError)):
        ring.push((1, 2.0))  # too few fields
    with pytest.raises((ValueError, TypeError)):
        ring.push("not a record")
    assert len(ring) == 0


def test_write_read_batches_wrap(impl):
    ring = impl.RecordRing(QUOTE, 8)
    data = np.zeros(30, dtype=QUOTE)
    data["ts"] = np.arange(30)
    data["px"] = np.arange(30) * 0.5
    assert ring.write(data[:5]) == 5
    assert ring.read(3)["ts"].tolist() == [0, 1, 2]
    assert ring.write(data[5:]) == 6  # 2 left + 6 = 8, wraps
    out = ring.read()
    assert out["ts"].tolist() == [3, 4, 5, 6, 7, 8, 9, 10]
    assert out.dtype == QUOTE and out.flags.owndata
    assert ring.read().shape == (0,)


def test_write_accepts_non_contiguous(impl):
    ring = impl.RecordRing("i8", 16)
    data = np.arange(20, dtype="i8")[::2]
    assert ring.write(data) == 10
    assert ring.read().tolist() == list(range(0, 20, 2))


def test_read_into(impl):
    ring = impl.RecordRing("f8", 4)
    ring.write(np.arange(4, dtype="f8"))
    ring.read(3)
    ring.write(np.arange(10, 13, dtype="f8"))  # wraps
    out = np.full(6, -1.0)
    assert ring.read_into(out) == 4
    assert out.tolist() == [3.0, 10.0, 11.0, 12.0, -1.0, -1.0]
    assert ring.read_into(out) == 0
    ring.write(np.arange(3, dtype="f8"))
    strided = np.full(6, -1.0)[::2]
    assert ring.read_into(strided) == 3
    assert strided.tolist() == [0.0, 1.0, 2.0]


def test_bad_arrays(impl):
    ring = impl.RecordRing(QUOTE, 4)
    with pytest.raises(TypeError, match="array"):
        ring.write(np.zeros(2, dtype="i8"))
    with pytest.raises(TypeError, match="array"):
        ring.write([(1, 2.0, 3)])
    with pytest.raises(ValueError, match="array"):
        ring.write(np.zeros((2, 2), dtype=QUOTE))
    ring.write(np.zeros(2, dtype=QUOTE))
    with pytest.raises(TypeError, match="out"):
        ring.read_into(np.zeros(2, dtype="f8"))
    readonly = np.zeros(2, dtype=QUOTE)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        ring.read_into(readonly)
    with pytest.raises(ValueError, match="max_records"):
        ring.read(-1)
    with pytest.raises(TypeError, match="max_records"):
        ring.read("1")
    assert len(ring) == 2


@pytest.mark.parametrize("bad, error", [("not a dtype", TypeError), (object, TypeError), ("O", TypeError),
                                        ([("a", "O")], TypeError), ("V0", ValueError)])
def test_bad_dtype(impl, bad, error):
    with pytest.raises(error, match="dtype"):
        impl.RecordRing(bad, 4)


def test_bad_capacity(impl):
    with pytest.raises(ValueError, match="capacity"):
        impl.RecordRing("i8", 0)
    with pytest.raises(TypeError, match="capacity"):
        impl.RecordRing("i8", 2.0)


def test_byte_order_is_part_of_the_dtype(impl):
    ring = impl.RecordRing("<i8", 4)
    with pytest.raises(TypeError, match="dtype"):
        ring.write(np.zeros(1, dtype=">i8"))


@pytest.mark.stress
def test_threaded_spsc_stress_one_million_records(impl):
    total, batch = 1_000_000, 1000
    dtype = np.dtype([("seq", "i8"), ("check", "i8")])
    ring = impl.RecordRing(dtype, 4096)
    errors, done = [], []
    deadline = time.monotonic() + 120

    def producer():
        sent = 0
        chunk = np.zeros(batch, dtype=dtype)
        while sent < total:
            if sent % 10_000 == 5_000:  # sprinkle single pushes between batches
                if ring.push((sent, sent * 7 + 1)):
                    sent += 1
                    continue
            else:
                n = min(batch, total - sent)
                chunk["seq"][:n] = np.arange(sent, sent + n)
                chunk["check"][:n] = chunk["seq"][:n] * 7 + 1
                taken = ring.write(chunk[:n])
                sent += taken
                if taken:
                    continue
            if time.monotonic() > deadline:
                errors.append("producer timed out")
                return
            time.sleep(0)

    def consumer():
        expected = 0
        while expected < total:
            if expected % 7_777 == 3:
                record = ring.pop()
                got = np.array([record], dtype=dtype) if record is not None else np.zeros(0, dtype=dtype)
            else:
                got = ring.read(1500)
            if len(got):
                if not (np.array_equal(got["seq"], np.arange(expected, expected + len(got)))
                        and np.array_equal(got["check"], got["seq"] * 7 + 1)):
                    errors.append(f"corrupt batch at {expected}")
                    return
                expected += len(got)
                continue
            if time.monotonic() > deadline:
                errors.append("consumer timed out")
                return
            time.sleep(0)
        done.append(expected)

    run_producer_consumer(producer, consumer)
    assert not errors, errors
    assert done == [total] and len(ring) == 0


MIXED = np.dtype([("a", "i1"), ("b", "u8"), ("c", "f4"), ("d", "f8"), ("e", "i4")])


def _push_outcome(mod, dtype, record):
    import warnings

    ring = mod.RecordRing(dtype, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            accepted = ring.push(record)
        except Exception as exc:  # noqa: BLE001 - compared across backends
            return ("error", type(exc))
    return ("ok", accepted, ring.read().tobytes())


def _field_values():
    from hypothesis import strategies as st

    return st.one_of(
        st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
        st.sampled_from(["1", "x", None, b"2", 1j]), st.integers(-300, 300).map(np.int64),
        st.floats(-1e40, 1e40).map(np.float64),
    )


def test_push_conversion_matches_numpy_exactly(backends):
    """The compiled fast paths (struct packing, scalar copies) must agree with numpy's assignment."""
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=400, deadline=None)
    @given(record=st.one_of(st.tuples(*[_field_values()] * 5), st.tuples(*[_field_values()] * 4),
                            st.lists(_field_values(), min_size=5, max_size=5)))
    def check_structured(record):
        results = [_push_outcome(mod, MIXED, record) for mod in backends]
        assert results[0] == results[1], (record, results)

    @settings(max_examples=300, deadline=None)
    @given(value=_field_values(), dtype=st.sampled_from(["i1", "u2", "i8", "u8", "f4", "f8", "?", ">i8"]))
    def check_scalar(value, dtype):
        results = [_push_outcome(mod, np.dtype(dtype), value) for mod in backends]
        assert results[0] == results[1], (value, dtype, results)

    check_structured()
    check_scalar()


def test_push_numpy_scalars_of_other_dtypes(backends):
    for record in [np.zeros(1, dtype=MIXED)[0], np.zeros(1, dtype=[("a", "i8")])[0], np.float32(2.5), np.int8(-3)]:
        for dtype in [MIXED, np.dtype("f8"), np.dtype("i2")]:
            results = [_push_outcome(mod, dtype, record) for mod in backends]
            assert results[0] == results[1], (record, dtype, results)


def test_empty_and_full(impl):
    ring = impl.RecordRing("i4", 2)
    assert ring.empty() and not ring.full()
    ring.write(np.arange(2, dtype="i4"))
    assert ring.full() and not ring.empty()


@pytest.mark.parametrize("dtype, value", [("M8[ns]", np.datetime64(5, "ns")), ("m8[us]", np.timedelta64(7, "us")),
                                          ([("t", "M8[ns]"), ("x", "i8")], (np.datetime64(1, "ns"), 3))])
def test_dtypes_the_buffer_protocol_cannot_describe(impl, dtype, value):
    ring = impl.RecordRing(dtype, 2)
    assert ring.push(value)
    assert ring.read().tolist() == np.array([value], dtype=ring.dtype).tolist()
