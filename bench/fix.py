"""Experiment: FIX 4.4 NewOrderSingle encode and validated parse, against simplefix (and quickfix).

Rows: encoding one NewOrderSingle (compiled, pure, ``simplefix``; ``quickfix`` when it is
installed -- it is never installed for you), and parsing one (feed the bytes, take the message,
read ClOrdID and Price): lowlat validates BodyLength, CheckSum, field syntax, repeated and
required tags; ``simplefix`` checks none of them; ``quickfix`` is asked to validate against its
FIX 4.4 data dictionary. Then the reader fed 100 messages at a time, and the two ratios the
issue sets targets for. Every figure is a whole loop timed round-robin (warm-up, gc off, median of
repeats, empty-loop cost subtracted).
"""

from __future__ import annotations

from typing import Any, Callable

from ._harness import Case, Progress, Row, backend_of, backends, compare, judge, loop_overhead_ns

TITLE = "FIX 4.4: NewOrderSingle encode and validated parse"
SEED = "introduction, Latency Budget Example (the Order Encoding row)"
SEED_SAYS = "The seed's budget allows < 1 us for order encoding; it measured no FIX encoder or parser."
STEPS = 3
ENCODE_GROUP = "FIX 4.4 NewOrderSingle encode (one message)"
PARSE_GROUP = "FIX 4.4 parse one NewOrderSingle, read 2 fields"
RATIO_GROUP = "FIX: compiled lowlat vs simplefix (times faster)"

SENDING_TIME_NS = 1_764_151_200_123_456_789
ENCODE_TARGET = 25.0  # x simplefix, from the issue
PARSE_TARGET = 50.0


def _encode_loop(module: Any) -> Callable[[int], None]:
    encoder = module.FixEncoder("LOWLAT", "EXCHANGE", "FIX.4.4")
    buffer = bytearray(1024)
    write = encoder.new_order_single

    def loop(n: int) -> None:
        for i in range(n):
            write(buffer, 0, i + 1, SENDING_TIME_NS, "ORD12345", "AAPL", "1", 100, "2", 1_234_500)

    return loop


def _simplefix_encode_loop(simplefix: Any) -> Callable[[int], None]:
    def loop(n: int) -> None:
        for i in range(n):
            m = simplefix.FixMessage()
            m.append_pair(8, "FIX.4.4")
            m.append_pair(35, "D")
            m.append_pair(49, "LOWLAT")
            m.append_pair(56, "EXCHANGE")
            m.append_pair(34, i + 1)
            m.append_utc_timestamp(52, precision=3)
            m.append_pair(11, "ORD12345")
            m.append_pair(55, "AAPL")
            m.append_pair(54, "1")
            m.append_utc_timestamp(60, precision=3)
            m.append_pair(38, 100)
            m.append_pair(40, "2")
            m.append_pair(44, "123.45")
            m.encode()

    return loop


def _parse_loop(module: Any, message: bytes) -> Callable[[int], None]:
    reader = module.FixReader()
    feed, take = reader.feed, reader.next_event

    def loop(n: int) -> None:
        for _ in range(n):
            feed(message)
            view = take()
            view.get_bytes(11)
            view.get_price(44, 4)

    return loop


def _batch_parse_loop(module: Any, message: bytes, batch: int) -> Callable[[int], None]:
    reader = module.FixReader()
    data = message * batch

    def loop(n: int) -> None:
        for _ in range(n):
            reader.feed(data)
            for view in reader:
                view.get_bytes(11)
                view.get_price(44, 4)

    return loop


def _simplefix_parse_loop(simplefix: Any, message: bytes) -> Callable[[int], None]:
    parser = simplefix.FixParser()
    feed, take = parser.append_buffer, parser.get_message

    def loop(n: int) -> None:
        for _ in range(n):
            feed(message)
            m = take()
            m.get(11)
            m.get(44)

    return loop


def _quickfix_parse(quickfix: Any, message: bytes) -> Callable[[int], None]:
    import os

    spec_dir = os.path.join(os.path.dirname(quickfix.__file__), "spec")
    dictionary = quickfix.DataDictionary(os.path.join(spec_dir, "FIX44.xml"))
    text = message.decode("ascii")

    def parse(count: int) -> None:
        for _ in range(count):
            m = quickfix.Message(text, dictionary, True)
            m.getField(11)
            m.getField(44)

    return parse


def _quickfix_encode(quickfix: Any) -> Callable[[int], None]:
    def encode(count: int) -> None:
        for i in range(count):
            m = quickfix.Message()
            header = m.getHeader()
            header.setField(quickfix.BeginString("FIX.4.4"))
            header.setField(quickfix.MsgType("D"))
            header.setField(quickfix.SenderCompID("LOWLAT"))
            header.setField(quickfix.TargetCompID("EXCHANGE"))
            header.setField(quickfix.MsgSeqNum(i + 1))
            header.setField(quickfix.SendingTime())
            m.setField(quickfix.ClOrdID("ORD12345"))
            m.setField(quickfix.Symbol("AAPL"))
            m.setField(quickfix.Side("1"))
            m.setField(quickfix.TransactTime())
            m.setField(quickfix.OrderQty(100))
            m.setField(quickfix.OrdType("2"))
            m.setField(quickfix.Price(123.45))
            m.toString()

    return encode


def _quickfix_cases(message: bytes, n: int) -> list[Case]:
    """quickfix rows when the package is installed (it is never installed by lowlat)."""
    try:
        import quickfix  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        parse, encode = _quickfix_parse(quickfix, message), _quickfix_encode(quickfix)
        parse(10)
        encode(10)
    except Exception:  # noqa: BLE001 - a quickfix install we cannot drive is reported as absent
        return []
    return [Case("quickfix encode", encode, n), Case("quickfix parse (validated by its FIX44 dictionary)", parse, n)]


def _simplefix() -> Any:
    try:
        import simplefix
    except ImportError:
        return None
    return simplefix


def _sample_message(module: Any) -> bytes:
    buffer = bytearray(1024)
    size = module.FixEncoder("LOWLAT", "EXCHANGE").new_order_single(
        buffer, 0, 1, SENDING_TIME_NS, "ORD12345", "AAPL", "1", 100, "2", 1_234_500)
    return bytes(buffer[:size])


def _rate_rows(group: str, cases: list[Case], repeats: int, figures: dict[str, float], what: str) -> list[Row]:
    rows = []
    for case, ns in zip(cases, compare(cases, repeats=repeats)):
        rows.append(Row(group, case.label, ns, "ns/msg", note=f"{1e9 / ns / 1e3:,.0f} k msg/s" if ns else "",
                        backend=backend_of(case.label)))
        figures[f"{what} " + case.label.split()[0]] = ns
    return rows


def _encode_rows(n, slow, repeats, simplefix, quickfix, figures) -> list[Row]:
    cases = [Case(f"{label} FixEncoder.new_order_single", _encode_loop(mod), n if label == "cython" else slow)
             for label, mod in backends("lowlat.fix")]
    if simplefix is not None:
        cases.append(Case("simplefix FixMessage + encode()", _simplefix_encode_loop(simplefix), slow))
    cases += [c for c in quickfix if "encode" in c.label]
    return _rate_rows(ENCODE_GROUP, cases, repeats, figures, "encode")


def _parse_rows(n, slow, repeats, message, simplefix, quickfix, figures) -> list[Row]:
    cases = [Case(f"{label} FixReader feed + next_event (validated)", _parse_loop(mod, message),
                  n if label == "cython" else slow) for label, mod in backends("lowlat.fix")]
    if simplefix is not None:
        cases.append(Case("simplefix FixParser (no BodyLength/CheckSum check)",
                          _simplefix_parse_loop(simplefix, message), slow))
    cases += [c for c in quickfix if "parse" in c.label]
    return _rate_rows(PARSE_GROUP, cases, repeats, figures, "parse")


def _batch_rows(n, slow, repeats, message) -> list[Row]:
    cases = [Case(f"{label} FixReader, 100 messages per feed", _batch_parse_loop(mod, message, 100),
                  max(n // 100, 20) if label == "cython" else max(slow // 100, 5), ops=100)
             for label, mod in backends("lowlat.fix")]
    return [Row("FIX 4.4 parse, 100 messages per feed (per message)", case.label, ns, "ns/msg",
                note=f"{1e9 / ns / 1e6:,.2f} M msg/s" if ns else "", backend=backend_of(case.label))
            for case, ns in zip(cases, compare(cases, repeats=repeats))]


def _ratio_rows(figures: dict[str, float]) -> list[Row]:
    rows = []
    for what, target in (("encode", ENCODE_TARGET), ("parse", PARSE_TARGET)):
        ours, theirs = figures.get(f"{what} cython"), figures.get(f"{what} simplefix")
        if ours and theirs:
            ratio = theirs / ours
            rows.append(judge(Row(RATIO_GROUP, what, ratio, "x", higher_is_better=True), f">= {target:g}x",
                              ratio >= target))
        quick_fix = figures.get(f"{what} quickfix")
        if ours and quick_fix:
            rows.append(Row(RATIO_GROUP, f"{what} vs quickfix", quick_fix / ours, "x", higher_is_better=True,
                            note="target >= 5x (parse)" if what == "parse" else ""))
    return rows


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    n = 20_000 if quick else 200_000
    slow = max(n // 40, 500)
    repeats = 3 if quick else 7
    simplefix = _simplefix()
    message = _sample_message(backends("lowlat.fix")[0][1])
    quickfix = _quickfix_cases(message, slow)
    figures: dict[str, float] = {}
    rows = [Row("loop overhead", "empty for-loop iteration (subtracted below)", loop_overhead_ns(n, repeats=repeats),
                "ns/iter")]
    progress.step("fix: NewOrderSingle encode")
    rows += _encode_rows(n, slow, repeats, simplefix, quickfix, figures)
    progress.step("fix: parse with validation")
    rows += _parse_rows(n, slow, repeats, message, simplefix, quickfix, figures)
    progress.step("fix: parse in batches")
    rows += _batch_rows(n, slow, repeats, message)
    return rows + _ratio_rows(figures)


def conclude(rows: list[Row]) -> str:
    """Say what this run shows: lowlat's encode and validated parse against simplefix's."""
    def ns(group: str, first_word: str) -> float:
        return next((r.value for r in rows if r.group == group and r.label.split()[0] == first_word), 0.0)

    ours = "cython" if any(r.backend == "cython" for r in rows) else "python"
    enc, parse = ns(ENCODE_GROUP, ours), ns(PARSE_GROUP, ours)
    simple_enc, simple_parse = ns(ENCODE_GROUP, "simplefix"), ns(PARSE_GROUP, "simplefix")
    text = (f"lowlat ({ours}) encodes a NewOrderSingle in {enc:,.0f} ns and parses it, BodyLength, CheckSum and "
            f"fields validated, in {parse:,.0f} ns")
    if simple_enc and simple_parse and enc and parse:
        text += (f"; simplefix takes {simple_enc:,.0f} ns ({simple_enc / enc:,.0f}x) and {simple_parse:,.0f} ns "
                 f"({simple_parse / parse:,.0f}x) while checking none of them")
    return text + ". The seed's budget allows 1,000 ns for encoding an order."
