"""Experiment: ITCH 5.0 decoding and order-book replay, compiled vs pure vs ``itchfeed`` and optional peers.

Rows, all on one synthetic feed from :mod:`lowlat.itch.generator` (1M messages, 100 instruments;
100k in quick mode): batch decoding in M msg/s for the compiled and pure decoders, ``itchfeed``
(pure Python, one object per message), the optional peers ``itchcpp`` and ``itch-book`` when
installed, and a bare Python loop that only walks the length prefixes (the floor of anything
written in Python); one message at a time from Python (p50/p99 ns per ``Message.parse``, the
timer's own cost subtracted); book replay in M msg/s from a decoded batch and per message, next
to a ``sortedcontainers.SortedDict`` book and the optional ``order-book`` (C) peer; top-of-book
query cost; and the peak memory of streaming a file twice the chunk size. Peers that are not
installed are skipped, never faked. The targets: compiled batch decode >= 50 M msg/s, one
compiled ``Message.parse`` p50 well under 1 us, compiled book replay >= 20 M msg/s, and
``read()`` holding <= 2x its chunk beyond the batch it hands out.
"""

from __future__ import annotations

import gc
import importlib
import os
import statistics
import struct
import tempfile
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from lowlat.itch.framing import frame

from ._harness import Progress, Row, backends, judge, loop_overhead_ns, time_loop

TITLE = "ITCH 5.0: decoding and the L3 order book"
SEED = "introduction, Latency Budget Example (the Market Data Parsing row)"
SEED_SAYS = "The seed's budget allows < 1 us for market data parsing; it measured no decoder and no book."
STEPS = 7

DECODE_TARGET = 50.0  # M msg/s, compiled batch decode
PARSE_TARGET_NS = 500  # compiled Message.parse p50: well under the budget's 1 us
REPLAY_TARGET = 20.0  # M msg/s, compiled Book.apply_batch
MEMORY_TARGET = 2.0  # x chunk, read() less the batch it hands out
BOOK_TYPES = "AFECXDU"  # the order-flow messages a book applies


@dataclass
class Sizes:
    """How much each step measures: ``count`` messages for compiled code, ``slow_count`` for pure Python."""

    count: int
    slow_count: int
    sample: int  # messages parsed one at a time (from the 1,000th on)
    queries: int  # best_bid calls per timed loop
    adds: int  # Book.add calls while the book grows
    repeats: int = 3


QUICK = Sizes(count=100_000, slow_count=20_000, sample=2_000, queries=20_000, adds=200_000)
FULL = Sizes(count=1_000_000, slow_count=200_000, sample=20_000, queries=200_000, adds=2_000_000)


@dataclass
class Feed:
    """One synthetic feed, framed whole (for compiled code) and its first ``slow_count`` messages."""

    sizes: Sizes
    messages: list
    framed: bytes
    slow_framed: bytes


@dataclass
class Replay:
    """What the book steps replay: the decoded feed and slow prefix, and that prefix's raw order-flow messages."""

    batch: dict
    slow_batch: dict
    slow_raw: list
    sorted_dict: object  # sortedcontainers.SortedDict, or None when it is not installed


def _make_feed(sizes: Sizes) -> Feed:
    from lowlat.itch import generator

    messages = generator.generate_messages(sizes.count, seed=2026, instruments=100)
    return Feed(sizes, messages, frame(messages), frame(messages[:sizes.slow_count]))


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except Exception:  # a peer that is missing or fails to import is skipped
        return None


def _rate(seconds_ns: float, count: int) -> float:
    return count / (seconds_ns / 1e9) / 1e6 if seconds_ns > 0 else 0.0


def _walk_prefixes(buffer: bytes) -> int:
    off = 0
    n = len(buffer)
    count = 0
    while off < n:
        off += 2 + (buffer[off] << 8 | buffer[off + 1])
        count += 1
    return count


def _percentiles(fn, items, repeats: int = 3) -> tuple[float, float]:
    """p50/p99 ns of ``fn(item)`` timed one call at a time, the timer pair's median subtracted."""
    clock = time.perf_counter_ns
    samples = []
    empty = []
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for item in items:
                t0 = clock()
                fn(item)
                samples.append(clock() - t0)
                t0 = clock()
                empty.append(clock() - t0)
    finally:
        if was:
            gc.enable()
    base = statistics.median(empty)
    samples.sort()
    p50 = samples[len(samples) // 2] - base
    p99 = samples[int(len(samples) * 0.99)] - base
    return max(p50, 0.0), max(p99, 0.0)


class SortedDictBook:
    """The usual pure-Python L3 book: a dict of orders and a ``SortedDict`` of levels per side."""

    def __init__(self, sorted_dict):
        self.SortedDict = sorted_dict
        self.orders = {}
        self.sides = {}

    def _levels(self, locate, side):
        key = (locate, side)
        levels = self.sides.get(key)
        if levels is None:
            levels = self.sides[key] = self.SortedDict()
        return levels

    def add(self, locate, ref, side, price, shares):
        self.orders[ref] = [locate, side, price, shares]
        levels = self._levels(locate, side)
        level = levels.get(price)
        if level is None:
            levels[price] = level = {}
        level[ref] = shares

    def reduce(self, ref, shares):
        order = self.orders.get(ref)
        if order is None:
            return
        if shares >= order[3]:
            self.delete(ref)
        else:
            order[3] -= shares
            self.sides[(order[0], order[1])][order[2]][ref] = order[3]

    def delete(self, ref):
        order = self.orders.pop(ref, None)
        if order is None:
            return
        levels = self.sides[(order[0], order[1])]
        level = levels[order[2]]
        del level[ref]
        if not level:
            del levels[order[2]]

    def replace(self, ref, new_ref, shares, price):
        order = self.orders.get(ref)
        if order is None:
            return
        self.delete(ref)
        self.add(order[0], new_ref, order[1], price, shares)

    def best_bid(self, locate):
        levels = self.sides.get((locate, 66))
        if not levels:
            return None
        price, level = levels.peekitem(-1)
        return price, sum(level.values()), len(level)


_ADD = struct.Struct(">xH8xQBI8xI")
_REF_COUNT = struct.Struct(">11xQI")
_REF = struct.Struct(">11xQ")
_REPLACE = struct.Struct(">11xQQII")


def _replay_sorted(book: SortedDictBook, messages: list) -> None:
    for raw in messages:
        t = raw[0]
        if t == 65 or t == 70:
            locate, ref, side, shares, price = _ADD.unpack_from(raw)
            book.add(locate, ref, side, price, shares)
        elif t == 68:
            book.delete(_REF.unpack_from(raw)[0])
        elif t == 69 or t == 67 or t == 88:
            book.reduce(*_REF_COUNT.unpack_from(raw))
        elif t == 85:
            book.replace(*_REPLACE.unpack_from(raw))



def _decode_rows(feed: Feed, itch_backends: list) -> list[Row]:
    """Batch decode: compiled on the whole feed, pure on its slow prefix, then the peers and the floor."""
    sizes = feed.sizes
    group = f"itch: batch decode of a {sizes.count:,}-message feed, M msg/s"
    rows = []
    for label, impl in itch_backends:
        data, n = (feed.framed, sizes.count) if label == "cython" else (feed.slow_framed, sizes.slow_count)
        ns = time_loop(lambda _n: impl.decode(data), 1, repeats=sizes.repeats)
        row = Row(group, f"lowlat.itch.decode ({label})", _rate(ns, n), "M msg/s", higher_is_better=True, backend=label)
        if label == "cython":
            judge(row, f">= {DECODE_TARGET:g} M msg/s", row.value >= DECODE_TARGET)
            row.note = "also targets >= 4x the fastest peer"
        rows.append(row)
    rows += _peer_decode_rows(feed, group)
    itchfeed = next((r for r in rows if r.label.startswith("itchfeed")), None)
    pure = next((r for r in rows if r.label == "lowlat.itch.decode (python)"), None)
    if itchfeed is not None and pure is not None:
        judge(pure, "> itchfeed", pure.value > itchfeed.value)
    return rows


def _peer_decode_rows(feed: Feed, group: str) -> list[Row]:
    """Rows of itchfeed, itchcpp and itch-book (skipped when missing), and the bare Python floor."""
    sizes, rows = feed.sizes, []
    os.environ.setdefault("ITCH_NO_CPP", "1")  # itchfeed's own pure decoder, not itchcpp behind it
    itchfeed = _optional("itch.parser")
    if itchfeed is not None:
        parser = itchfeed.MessageParser()
        small = frame(feed.messages[: sizes.slow_count // 4])
        ns = time_loop(lambda _n: sum(1 for _ in parser.parse_stream(small)), 1, repeats=sizes.repeats)
        rows.append(Row(group, "itchfeed MessageParser.parse_stream (pure Python)", _rate(ns, sizes.slow_count // 4),
                        "M msg/s", higher_is_better=True))
    itchcpp = _optional("itchcpp.parser")
    if itchcpp is not None:
        parser = itchcpp.MessageParser()
        ns = time_loop(lambda _n: sum(1 for _ in parser.parse_stream(feed.framed)), 1, repeats=sizes.repeats)
        rows.append(Row(group, "itchcpp MessageParser.parse_stream (C++)", _rate(ns, sizes.count), "M msg/s",
                        higher_is_better=True))
    else:
        rows.append(Row(group, "itchcpp (C++): not installed, skipped", 0.0, "M msg/s", higher_is_better=True))
    if _optional("itch_book") is None:
        rows.append(Row(group, "itch-book (C++23): not installed, skipped", 0.0, "M msg/s", higher_is_better=True))
    ns = time_loop(lambda _n: _walk_prefixes(feed.slow_framed), 1, repeats=sizes.repeats)
    rows.append(Row(group, "floor: bare Python loop walking the length prefixes", _rate(ns, sizes.slow_count),
                    "M msg/s", higher_is_better=True))
    return rows


def _parse_rows(feed: Feed, itch_backends: list) -> list[Row]:
    """One message at a time from Python: p50/p99 of ``Message.parse`` and of itchfeed's message classes."""
    group = "itch: one message decoded into a reusable record from Python, ns"
    sample = feed.messages[1000:1000 + feed.sizes.sample]
    rows = []
    for label, impl in itch_backends:
        p50, p99 = _percentiles(impl.Message().parse, sample)
        first = Row(group, f"Message.parse p50 ({label})", p50, "ns", backend=label)
        if label == "cython":
            judge(first, f"p50 <= {PARSE_TARGET_NS} ns (well under 1 us)", p50 <= PARSE_TARGET_NS)
        rows += [first, Row(group, f"Message.parse p99 ({label})", p99, "ns", backend=label)]
    if _optional("itch.parser") is not None:
        registry = importlib.import_module("itch.messages").messages
        p50, p99 = _percentiles(lambda raw: registry[raw[0:1]](raw), sample)
        rows.append(Row(group, "itchfeed message class from bytes p50", p50, "ns"))
        rows.append(Row(group, "itchfeed message class from bytes p99", p99, "ns"))
    return rows


def _replay_inputs(feed: Feed, itch_impl) -> Replay:
    return Replay(itch_impl.decode(feed.framed), itch_impl.decode(feed.slow_framed),
                  [m for m in feed.messages[:feed.sizes.slow_count] if m[0] in BOOK_TYPES.encode()],
                  getattr(_optional("sortedcontainers"), "SortedDict", None))


def _replay_rows(feed: Feed, replay: Replay, book_backends: list) -> list[Row]:
    """Book replay from a decoded batch (compiled: the whole feed), next to a SortedDict book."""
    sizes = feed.sizes
    group = f"book: replay of the decoded {sizes.count:,}-message feed (100 instruments), M msg/s"
    rows = []
    for label, impl in book_backends:
        batch = replay.batch if label == "cython" else replay.slow_batch
        n = sum(len(batch[t]) for t in BOOK_TYPES)
        ns = time_loop(lambda _n: impl.Book().apply_batch(batch), 1, repeats=sizes.repeats)
        row = Row(group, f"Book.apply_batch ({label})", _rate(ns, n), "M msg/s", higher_is_better=True, backend=label)
        if label == "cython":
            judge(row, f">= {REPLAY_TARGET:g} M msg/s", row.value >= REPLAY_TARGET)
            row.note = "also targets >= 2x itchcpp's book"
        rows.append(row)
    if replay.sorted_dict is not None:
        ns = time_loop(lambda _n: _replay_sorted(SortedDictBook(replay.sorted_dict), replay.slow_raw), 1,
                       repeats=sizes.repeats)
        rows.append(Row(group, "sortedcontainers.SortedDict book, one message at a time", _rate(ns, len(replay.slow_raw)),
                        "M msg/s", higher_is_better=True))
    if _optional("order_book") is None:
        rows.append(Row(group, "order-book (C): not installed, skipped", 0.0, "M msg/s", higher_is_better=True))
    return rows


def _apply_rows(replay: Replay, book_backends: list) -> list[Row]:
    """One raw message applied at a time from Python, one pass each (a second would replay onto a full book)."""
    group = "book: one raw message applied from Python, ns per message"
    raw = replay.slow_raw
    rows = []
    for label, impl in book_backends:
        apply = impl.Book().apply
        ns = time_loop(lambda _n: [apply(m) for m in raw], 1, repeats=1, warmup=0)
        rows.append(Row(group, f"Book.apply(raw) ({label})", ns / len(raw), "ns", backend=label,
                        note="target: >= 2x order-book per operation" if label == "cython" else ""))
    if replay.sorted_dict is not None:
        ns = time_loop(lambda _n: _replay_sorted(SortedDictBook(replay.sorted_dict), raw), 1, repeats=1, warmup=0)
        rows.append(Row(group, "sortedcontainers.SortedDict book (struct.unpack_from + dict/SortedDict)", ns / len(raw),
                        "ns"))
    return rows


def _query_loop(query):
    def loop(n):
        for _ in range(n):
            query(1)  # results dropped at once, as a trading loop would: no list of tuples kept alive

    return loop


def _top_of_book_rows(replay: Replay, book_backends: list, sizes: Sizes) -> list[Row]:
    """Best bid of the busiest instrument on a book holding the slow prefix, the empty loop subtracted."""
    group = "book: best bid query on the busiest instrument, ns per call"
    loops = sizes.queries
    empty = loop_overhead_ns(loops, repeats=sizes.repeats)
    rows = []
    for label, impl in book_backends:
        book = impl.Book()
        book.apply_batch(replay.slow_batch)
        ns = time_loop(_query_loop(book.best_bid), loops, repeats=sizes.repeats) / loops
        rows.append(Row(group, f"Book.best_bid ({label})", max(ns - empty, 0.0), "ns", backend=label))
    if replay.sorted_dict is not None:
        ref = SortedDictBook(replay.sorted_dict)
        _replay_sorted(ref, replay.slow_raw)
        ns = time_loop(_query_loop(ref.best_bid), loops, repeats=sizes.repeats) / loops
        rows.append(Row(group, "SortedDict book best bid (peekitem + level sum)", max(ns - empty, 0.0), "ns"))
    rows.append(Row(group, "empty `for _ in range(n)` iteration (subtracted above)", empty, "ns"))
    return rows


def _timed_adds(add, adds: int) -> np.ndarray:
    """Return ns per ``add`` of ``adds`` ever new orders (100 instruments, 500 prices a side), gc off."""
    clock = time.perf_counter_ns
    samples = np.empty(adds, dtype=np.int64)
    was = gc.isenabled()
    gc.disable()
    try:
        for i in range(adds):
            t0 = clock()
            add(i % 100, i, 66 if i & 1 else 83, 1_000_000 + (i % 500) * 100, 100)
            samples[i] = clock() - t0
    finally:
        if was:
            gc.enable()
    return samples


def _clock_pair_ns() -> float:
    """Return the median cost of a bare pair of clock reads (10,000 of them)."""
    clock = time.perf_counter_ns
    empty = np.empty(10_000, dtype=np.int64)
    for i in range(10_000):
        t0 = clock()
        empty[i] = clock() - t0
    return float(np.median(empty))


def _add_rows(book_backends: list, adds: int) -> list[Row]:
    """Compiled ``Book.add`` from empty, every growth of its tables included: p50..p99.9 and the max."""
    group = "book: Book.add of ever new orders from empty (every growth included), ns per call"
    rows = []
    for label, impl in book_backends:
        if label != "cython":
            continue
        samples = _timed_adds(impl.Book().add, adds)
        base = _clock_pair_ns()
        for name, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9)):
            rows.append(Row(group, f"Book.add {name} ({label})", max(float(np.percentile(samples, q)) - base, 0.0), "ns",
                            backend=label, note="target: a few us at p99.9 while growing" if name == "p99.9" else ""))
        rows.append(Row(group, f"Book.add max ({label}; includes scheduler preemption)", float(samples.max()) - base,
                        "ns", backend=label))
    return rows


def _two_chunks(framed: bytes, chunk: int) -> int:
    """Return the length of the whole messages that fit in two chunks."""
    cut = 0
    while cut < len(framed) and cut + 2 + (framed[cut] << 8 | framed[cut + 1]) <= 2 * chunk:
        cut += 2 + (framed[cut] << 8 | framed[cut + 1])
    return cut


def _peak_read(impl, data: bytes, chunk: int) -> tuple[int, int]:
    """Return (peak traced bytes, largest decoded batch) of ``impl.read`` streaming a file holding ``data``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "feed.itch")
        with open(path, "wb") as f:
            f.write(data)
        largest = 0
        tracemalloc.start()
        try:
            for batch in impl.read(path, chunk_size=chunk, progress=False):
                largest = max(largest, sum(a.nbytes for a in batch.values()))
                del batch
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peak, largest


def _memory_rows(feed: Feed, itch_backends: list) -> list[Row]:
    group = "itch: read() of a file twice the chunk size, peak traced memory / chunk size"
    chunk = 1 << 20
    data = feed.framed[:_two_chunks(feed.framed, chunk)]
    rows = []
    for label, impl in itch_backends:
        peak, largest = _peak_read(impl, data, chunk)
        rows.append(Row(group, f"lowlat.itch.read ({label}), decoded batches included", peak / chunk, "x chunk",
                        backend=label))
        held = Row(group, f"lowlat.itch.read ({label}), less the largest decoded batch", (peak - largest) / chunk,
                   "x chunk", backend=label)
        if label == "cython":
            judge(held, f"<= {MEMORY_TARGET:g}x the chunk", held.value <= MEMORY_TARGET)
        rows.append(held)
    return rows


def measure(progress: Progress, sizes: Sizes) -> list[Row]:
    """Run every step on a feed of ``sizes``; return the rows."""
    feed = _make_feed(sizes)
    itch_backends, book_backends = backends("lowlat.itch"), backends("lowlat.book")
    progress.step("itch: batch decode")
    rows = _decode_rows(feed, itch_backends)
    progress.step("itch: one message at a time")
    rows += _parse_rows(feed, itch_backends)
    progress.step("book: batch replay")
    replay = _replay_inputs(feed, itch_backends[0][1])
    rows += _replay_rows(feed, replay, book_backends)
    progress.step("book: one message at a time")
    rows += _apply_rows(replay, book_backends)
    progress.step("book: top of book")
    rows += _top_of_book_rows(replay, book_backends, sizes)
    progress.step("book: add latency while the book grows")
    rows += _add_rows(book_backends, sizes.adds)
    progress.step("itch: streaming memory")
    return rows + _memory_rows(feed, itch_backends)


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section on a 100k-message feed (``quick``) or a 1M-message one; return its rows."""
    return measure(progress, QUICK if quick else FULL)


def _said(rows: list[Row], label: str, form: str) -> str:
    """Return the row's value in ``form``, with its verdict when it was judged, or "not measured"."""
    row = next((r for r in rows if r.label == label), None)
    if row is None:
        return "not measured"
    verdict = f" ({'met' if row.met else 'missed'} {row.target})" if row.met is not None else ""
    return form.format(row.value) + verdict


def conclude(rows: list[Row]) -> str:
    """Say what this run shows: decode rate, one-message p50 and book replay rate against the targets and peers."""
    ours = "cython" if any(r.backend == "cython" for r in rows) else "python"
    text = (f"lowlat ({ours}) decodes a batch at {_said(rows, f'lowlat.itch.decode ({ours})', '{:,.1f} M msg/s')}, "
            f"parses one message at p50 in {_said(rows, f'Message.parse p50 ({ours})', '{:,.0f} ns')} and replays "
            f"the book at {_said(rows, f'Book.apply_batch ({ours})', '{:,.1f} M msg/s')}")
    peer = next((r for r in rows if r.label.startswith("itchfeed MessageParser")), None)
    ours_rate = next((r.value for r in rows if r.label == f"lowlat.itch.decode ({ours})"), 0.0)
    if peer is not None and peer.value > 0:
        text += f"; itchfeed decodes {peer.value:,.2f} M msg/s, {ours_rate / peer.value:,.0f}x fewer"
    return text + ". The seed's budget allows 1,000 ns for parsing one market-data message."
