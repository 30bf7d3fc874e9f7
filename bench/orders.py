"""``lowlat bench`` section "orders": pre-trade risk checks and OUCH 4.2 encode/decode, compiled vs pure.

Two kinds of figure, side by side in one run: the per-operation cost of a whole loop (warm-up,
gc off, median of repeats, the empty loop's cost subtracted, as in every section), and p50/p99 of
single calls timed from Python with ``perf_counter_ns`` (the cost of a bare pair of clock reads,
measured in the same run, subtracted). The issue's targets: risk check with every check on,
compiled p50 <= 0.3 us and pure within 2 us; OUCH Enter Order encode, compiled <= 0.2 us and
pure within 1 us.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import struct
import time

from ._benchkit import Case, Progress, Row, compare

STEPS = 6

#: Every check on, limits generous enough that the timed orders are accepted (the full path).
RISK_LIMITS = dict(
    max_order_quantity=1_000_000, max_order_notional=10**15, price_collar_bps=1_000, max_position=2**31 - 1,
    max_gross_exposure=2**62, throttle_rate=100_000_000, throttle_burst=1_000_000,
    instrument_throttle_rate=100_000_000, instrument_throttle_burst=1_000_000, duplicate_window_ns=1_000_000,
)
INSTRUMENTS = 64
PRICE = 1_000_000  # $100.0000


def _modules(concept: str) -> list[tuple[str, object]]:
    found = []
    for label, suffix in (("cython", "_c"), ("python", "_py")):
        try:
            found.append((label, importlib.import_module(f"{concept}.{suffix}")))
        except ImportError:
            pass
    return found


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


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    n = 30_000 if quick else 200_000
    repeats = 3 if quick else 9
    samples = 20_000 if quick else 200_000
    risk_modules = _modules("lowlat.risk")
    ouch_modules = _modules("lowlat.ouch")
    rows: list[Row] = []

    def group(title: str, cases: list[Case]) -> None:
        for case, ns in zip(cases, compare(cases, repeats=repeats)):
            rows.append(Row(title, case.label, ns, "ns/op", note=case.note))

    quantities = _quantities(max(n, samples))

    progress.step("orders: risk check loop")
    cases = []
    for label, module in risk_modules:
        engine = _risk_engine(module)
        cases.append(Case(f"{label} RiskEngine.check", _risk_loop(engine.check, quantities), n // (1 if label == "cython" else 10)))
    group("Risk check, every check on, order accepted (loop, per check)", cases)

    progress.step("orders: risk check p50/p99")
    for label, module in risk_modules:
        engine = _risk_engine(module)
        check = engine.check
        count = samples // (1 if label == "cython" else 5)
        it = iter(quantities)
        p50, p99 = _percentiles(lambda: check(5, 1, next(it), PRICE), count)
        note = "target <= 300 ns" if label == "cython" else "target <= 2,000 ns"
        title = "Risk check from Python, single calls (clock pair subtracted)"
        rows.append(Row(title, f"{label} p50", p50, "ns", note=note))
        rows.append(Row(title, f"{label} p99", p99, "ns"))

    progress.step("orders: OUCH Enter Order encode loop")
    cases = []
    for label, module in ouch_modules:
        buf = bytearray(64)
        cases.append(Case(f"{label} encode_enter_order (15 fields, checked)", _enter_loop(module.encode_enter_order, buf),
                          n // (1 if label == "cython" else 5)))
    cases.append(Case("struct.Struct.pack_into, pre-encoded bytes, no checks", _struct_loop(bytearray(64)), n // 2))
    group("OUCH Enter Order encode into a preallocated buffer (loop, per message)", cases)

    progress.step("orders: OUCH Enter Order encode p50/p99")
    for label, module in ouch_modules:
        buf = bytearray(64)
        encode = module.encode_enter_order

        def call(encode=encode, buf=buf):
            encode(buf, 0, "ORD00000000001", "B", 100, "AAPL", 1_234_500, 0, "FIRM", "Y", "A", "N", 0, "N", " ")

        p50, p99 = _percentiles(call, samples // (1 if label == "cython" else 5))
        note = "target <= 200 ns" if label == "cython" else "target <= 1,000 ns"
        rows.append(Row("OUCH Enter Order encode from Python, single calls", f"{label} p50", p50, "ns", note=note))
        rows.append(Row("OUCH Enter Order encode from Python, single calls", f"{label} p99", p99, "ns"))

    progress.step("orders: OUCH decode")
    cases = []
    executed = (34_200_000_000_000, "ORD00000000001", 100, 1_234_500, "A", 987_654_321)
    for label, module in ouch_modules:
        buf = bytearray(40)
        module.encode(buf, 0, "executed", executed)
        record = module.ExchangeMessage()
        cases.append(Case(f"{label} ExchangeMessage.decode (Executed, 40 bytes)", _decode_loop(record.decode, buf),
                          n // (1 if label == "cython" else 5)))
    if ouch_modules:
        buf = bytearray(40)
        ouch_modules[-1][1].encode(buf, 0, "executed", executed)
        cases.append(Case("struct.Struct.unpack_from to a tuple, no checks", _unpack_loop(buf), n // 2))
    group("OUCH decode one message into a reusable record (loop, per message)", cases)

    progress.step("orders: OUCH decode_batch")
    if ouch_modules:
        from .ouch import spec

        count = 20_000 if quick else 200_000
        one = bytearray(40)
        ouch_modules[-1][1].encode(one, 0, "executed", executed)
        accepted = bytearray(66)
        ouch_modules[-1][1].encode(accepted, 0, "accepted", (1, "T", "B", 100, "AAPL", 1, 0, "FIRM", "Y", 5, "A", "N", 0, "N", "L", " "))
        blob = spec.frame([bytes(one) if k % 3 else bytes(accepted) for k in range(count)])
        cases = [Case(f"{label} decode_batch", (lambda m: lambda reps: [m.decode_batch(blob) for _ in range(reps)])(module),
                      1, ops=count) for label, module in ouch_modules]
        for case, ns in zip(cases, compare(cases, repeats=3 if quick else 5)):
            rows.append(Row(f"OUCH decode_batch of {count:,} framed messages to numpy (per message)", case.label, ns, "ns/msg"))
    return rows
