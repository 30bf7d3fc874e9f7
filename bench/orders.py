"""Experiment: pre-trade risk checks and OUCH 4.2 encode/decode, compiled vs pure.

The seed's latency budget allows a risk check < 2 us and order encoding < 1 us, and measures
neither. Two kinds of figure, side by side in one run: the per-operation cost of a whole loop
(warm-up, gc off, median of repeats, the empty loop's cost subtracted, as in every section), and
p50/p99 of single calls timed from Python with ``perf_counter_ns`` (the cost of a bare pair of
clock reads, measured in the same run, subtracted). The targets: risk check with every check on,
compiled p50 <= 0.3 us and pure within 2 us; OUCH Enter Order encode, compiled <= 0.2 us and pure
within 1 us.
"""

from __future__ import annotations

import gc
import struct
import time

from ._harness import Case, Progress, Row, backend_of, backends, compare, judge

TITLE = "Orders: pre-trade risk check and OUCH 4.2 encode/decode"
SEED = "introduction, Latency Budget Example (the Risk Check and Order Encoding rows)"
SEED_SAYS = "The seed's budget allows < 2 us for a risk check and < 1 us for order encoding; it measured neither."
STEPS = 6

#: Every check on, limits generous enough that the timed orders are accepted (the full path).
RISK_LIMITS = dict(
    max_order_quantity=1_000_000, max_order_notional=10**15, price_collar_bps=1_000, max_position=2**31 - 1,
    max_gross_exposure=2**62, throttle_rate=100_000_000, throttle_burst=1_000_000,
    instrument_throttle_rate=100_000_000, instrument_throttle_burst=1_000_000, duplicate_window_ns=1_000_000,
)
INSTRUMENTS = 64
PRICE = 1_000_000  # $100.0000
RISK_SINGLE = "Risk check from Python, single calls (clock pair subtracted)"
ENCODE_SINGLE = "OUCH Enter Order encode from Python, single calls"
EXECUTED = (34_200_000_000_000, "ORD00000000001", 100, 1_234_500, "A", 987_654_321)
#: p50 target in ns of a single call, compiled and pure.
RISK_TARGET_NS = {"cython": 300, "python": 2_000}
ENCODE_TARGET_NS = {"cython": 200, "python": 1_000}


def _risk_engine(module):
    engine = module.RiskEngine(**RISK_LIMITS)
    for instrument in range(INSTRUMENTS):
        engine.add_instrument(instrument, PRICE)
    return engine


def _quantities(count: int) -> list[int]:
    """Quantities that never repeat within the duplicate memory, so every timed order passes."""
    return [1 + (k * 7) % 997 for k in range(count)]


def _risk_loop(check, quantities):
    def loop(n):
        for quantity in quantities[:n]:
            check(5, 1, quantity, PRICE)

    return loop


# The loops spell every argument out: a call with ``*args`` goes through CPython's slow generic path.

def _enter_loop(encode, buf):
    def loop(n):
        for _ in range(n):
            encode(buf, 0, "ORD00000000001", "B", 100, "AAPL", 1_234_500, 0, "FIRM", "Y", "A", "N", 0, "N", " ")

    return loop


def _struct_loop(buf):
    pack_into = struct.Struct(">c14scI8sII4scccIcc").pack_into

    def loop(n):
        for _ in range(n):
            pack_into(buf, 0, b"O", b"ORD00000000001", b"B", 100, b"AAPL    ", 1_234_500, 0, b"FIRM", b"Y", b"A", b"N",
                      0, b"N", b" ")

    return loop


def _decode_loop(decode, buf):
    def loop(n):
        for _ in range(n):
            decode(buf, 0)

    return loop


def _unpack_loop(buf):
    unpack_from = struct.Struct(">cQ14sIIcQ").unpack_from

    def loop(n):
        for _ in range(n):
            unpack_from(buf, 0)

    return loop


def _percentiles(call, count: int) -> tuple[float, float]:
    """Return (p50, p99) in ns of ``call()`` timed one by one, the bare clock pair's p50 subtracted."""
    clock = time.perf_counter_ns
    bare = []
    samples = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(min(count, 20_000)):
            t0 = clock()
            t1 = clock()
            bare.append(t1 - t0)
        for _ in range(count):
            t0 = clock()
            call()
            t1 = clock()
            samples.append(t1 - t0)
    finally:
        if was_enabled:
            gc.enable()
    bare.sort()
    samples.sort()
    floor = bare[len(bare) // 2]
    return (max(samples[len(samples) // 2] - floor, 0.0), max(samples[int(len(samples) * 0.99)] - floor, 0.0))


def _share(label: str) -> int:
    """Divide the compiled backend's count by this for the (slower) others: the same wall time each."""
    return 1 if label == "cython" else 5


def _timed_group(title: str, cases: list[Case], repeats: int) -> list[Row]:
    return [Row(title, case.label, ns, "ns/op", note=case.note, backend=backend_of(case.label))
            for case, ns in zip(cases, compare(cases, repeats=repeats))]


def _risk_loop_rows(n: int, repeats: int, quantities: list[int]) -> list[Row]:
    cases = [Case(f"{label} RiskEngine.check", _risk_loop(_risk_engine(module).check, quantities),
                  n // (1 if label == "cython" else 10)) for label, module in backends("lowlat.risk")]
    return _timed_group("Risk check, every check on, order accepted (loop, per check)", cases, repeats)


def _single_rows(title: str, label: str, call, count: int, target_ns: int) -> list[Row]:
    p50, p99 = _percentiles(call, count)
    first = judge(Row(title, f"{label} p50", p50, "ns", backend=label), f"p50 <= {target_ns:,} ns", p50 <= target_ns)
    return [first, Row(title, f"{label} p99", p99, "ns", backend=label)]


def _risk_single_rows(samples: int, quantities: list[int]) -> list[Row]:
    rows = []
    for label, module in backends("lowlat.risk"):
        check = _risk_engine(module).check
        it = iter(quantities)
        rows += _single_rows(RISK_SINGLE, label, lambda: check(5, 1, next(it), PRICE), samples // _share(label),
                             RISK_TARGET_NS.get(label, RISK_TARGET_NS["python"]))
    return rows


def _encode_loop_rows(n: int, repeats: int) -> list[Row]:
    cases = [Case(f"{label} encode_enter_order (15 fields, checked)", _enter_loop(module.encode_enter_order,
                                                                                   bytearray(64)), n // _share(label))
             for label, module in backends("lowlat.ouch")]
    cases.append(Case("struct.Struct.pack_into, pre-encoded bytes, no checks", _struct_loop(bytearray(64)), n // 2))
    return _timed_group("OUCH Enter Order encode into a preallocated buffer (loop, per message)", cases, repeats)


def _encode_single_rows(samples: int) -> list[Row]:
    rows = []
    for label, module in backends("lowlat.ouch"):
        buf, encode = bytearray(64), module.encode_enter_order

        def call(encode=encode, buf=buf):
            encode(buf, 0, "ORD00000000001", "B", 100, "AAPL", 1_234_500, 0, "FIRM", "Y", "A", "N", 0, "N", " ")

        rows += _single_rows(ENCODE_SINGLE, label, call, samples // _share(label),
                             ENCODE_TARGET_NS.get(label, ENCODE_TARGET_NS["python"]))
    return rows


def _decode_rows(n: int, repeats: int) -> list[Row]:
    modules = backends("lowlat.ouch")
    cases = []
    for label, module in modules:
        buf = bytearray(40)
        module.encode(buf, 0, "executed", EXECUTED)
        cases.append(Case(f"{label} ExchangeMessage.decode (Executed, 40 bytes)",
                          _decode_loop(module.ExchangeMessage().decode, buf), n // _share(label)))
    buf = bytearray(40)
    modules[-1][1].encode(buf, 0, "executed", EXECUTED)
    cases.append(Case("struct.Struct.unpack_from to a tuple, no checks", _unpack_loop(buf), n // 2))
    return _timed_group("OUCH decode one message into a reusable record (loop, per message)", cases, repeats)


def _framed_blob(module, count: int) -> bytes:
    from lowlat.ouch import spec

    one = bytearray(40)
    module.encode(one, 0, "executed", EXECUTED)
    accepted = bytearray(66)
    module.encode(accepted, 0, "accepted", (1, "T", "B", 100, "AAPL", 1, 0, "FIRM", "Y", 5, "A", "N", 0, "N", "L", " "))
    return spec.frame([bytes(one) if k % 3 else bytes(accepted) for k in range(count)])


def _decode_batch_rows(quick: bool) -> list[Row]:
    modules = backends("lowlat.ouch")
    count = 20_000 if quick else 200_000
    blob = _framed_blob(modules[-1][1], count)
    cases = [Case(f"{label} decode_batch", (lambda m: lambda reps: [m.decode_batch(blob) for _ in range(reps)])(module),
                  1, ops=count) for label, module in modules]
    return [Row(f"OUCH decode_batch of {count:,} framed messages to numpy (per message)", case.label, ns, "ns/msg",
                backend=backend_of(case.label))
            for case, ns in zip(cases, compare(cases, repeats=3 if quick else 5))]


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    n = 30_000 if quick else 200_000
    repeats = 3 if quick else 9
    samples = 20_000 if quick else 200_000
    quantities = _quantities(max(n, samples))
    progress.step("orders: risk check loop")
    rows = _risk_loop_rows(n, repeats, quantities)
    progress.step("orders: risk check p50/p99")
    rows += _risk_single_rows(samples, quantities)
    progress.step("orders: OUCH Enter Order encode loop")
    rows += _encode_loop_rows(n, repeats)
    progress.step("orders: OUCH Enter Order encode p50/p99")
    rows += _encode_single_rows(samples)
    progress.step("orders: OUCH decode")
    rows += _decode_rows(n, repeats)
    progress.step("orders: OUCH decode_batch")
    rows += _decode_batch_rows(quick)
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows: single-call p50s against the budget."""
    def p50(group: str, backend: str) -> str:
        row = next((r for r in rows if r.group == group and r.label == f"{backend} p50"), None)
        return f"{row.value:,.0f} ns ({'met' if row.met else 'missed'} {row.target})" if row else "not run"

    parts = [f"{b}: risk check {p50(RISK_SINGLE, b)}, Enter Order encode {p50(ENCODE_SINGLE, b)}"
             for b in ("cython", "python") if any(r.backend == b for r in rows)]
    return ("Single calls from Python, p50 with the clock pair subtracted -- " + "; ".join(parts)
            + ". The seed's budget allows 2,000 ns for the check and 1,000 ns for the encoding.")
