"""``lowlat bench`` section "itch": ITCH 5.0 decoding and order-book replay side by side.

Rows, all on one synthetic feed from :mod:`lowlat.itch.generator` (1M messages, 100 instruments;
100k in quick mode): batch decoding in M msg/s for the compiled and pure decoders, ``itchfeed``
(pure Python, one object per message), the optional peers ``itchcpp`` and ``itch-book`` when
installed, and a bare Python loop that only walks the length prefixes (the floor of anything
written in Python); one message at a time from Python (p50/p99 ns per ``Message.parse``, the
timer's own cost subtracted); book replay in M msg/s from a decoded batch and per message, next
to a ``sortedcontainers.SortedDict`` book and the optional ``order-book`` (C) peer; top-of-book
query cost; and the peak memory of streaming a file twice the chunk size. Peers that are not
installed are skipped, never faked.
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

import numpy as np

from ._backend import BACKENDS, load
from ._benchkit import Progress, Row, loop_overhead_ns, time_loop

STEPS = 7


def _backends(concept: str) -> list[tuple[str, object]]:
    found = []
    for name in BACKENDS:
        try:
            found.append((name, load(concept, name)))
        except ImportError:
            pass
    return found


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


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; ``quick`` keeps it under ~10 s."""
    from .itch import generator
    from .itch.framing import frame

    count = 100_000 if quick else 1_000_000
    slow_count = 20_000 if quick else 200_000
    repeats = 3
    messages = generator.generate_messages(count, seed=2026, instruments=100)
    feed = frame(messages)
    slow_feed = frame(messages[:slow_count])
    rows: list[Row] = []
    itch_backends = _backends("lowlat.itch")
    book_backends = _backends("lowlat.book")

    progress.step("itch: batch decode")
    group = f"itch: batch decode of a {count:,}-message feed, M msg/s"
    for label, impl in itch_backends:
        data, n = (feed, count) if label == "cython" else (slow_feed, slow_count)
        ns = time_loop(lambda _n, impl=impl, data=data: impl.decode(data), 1, repeats=repeats)
        rows.append(Row(group, f"lowlat.itch.decode ({label})", _rate(ns, n), "M msg/s", higher_is_better=True,
                        note="target: >= 50 M msg/s, >= 4x the fastest peer" if label == "cython" else "target: > itchfeed"))
    os.environ.setdefault("ITCH_NO_CPP", "1")  # itchfeed's own pure decoder, not itchcpp behind it
    itchfeed = _optional("itch.parser")
    if itchfeed is not None:
        parser = itchfeed.MessageParser()
        small = frame(messages[: slow_count // 4])
        ns = time_loop(lambda _n: sum(1 for _ in parser.parse_stream(small)), 1, repeats=repeats)
        rows.append(Row(group, "itchfeed MessageParser.parse_stream (pure Python)", _rate(ns, slow_count // 4), "M msg/s",
                        higher_is_better=True))
    itchcpp = _optional("itchcpp.parser")
    if itchcpp is not None:
        parser = itchcpp.MessageParser()
        ns = time_loop(lambda _n: sum(1 for _ in parser.parse_stream(feed)), 1, repeats=repeats)
        rows.append(Row(group, "itchcpp MessageParser.parse_stream (C++)", _rate(ns, count), "M msg/s", higher_is_better=True))
    else:
        rows.append(Row(group, "itchcpp (C++): not installed, skipped", 0.0, "M msg/s", higher_is_better=True))
    if _optional("itch_book") is None:
        rows.append(Row(group, "itch-book (C++23): not installed, skipped", 0.0, "M msg/s", higher_is_better=True))
    ns = time_loop(lambda _n: _walk_prefixes(slow_feed), 1, repeats=repeats)
    rows.append(Row(group, "floor: bare Python loop walking the length prefixes", _rate(ns, slow_count), "M msg/s",
                    higher_is_better=True))

    progress.step("itch: one message at a time")
    group = "itch: one message decoded into a reusable record from Python, ns"
    sample = messages[1000:1000 + (2_000 if quick else 20_000)]
    for label, impl in itch_backends:
        record = impl.Message()
        p50, p99 = _percentiles(record.parse, sample)
        rows.append(Row(group, f"Message.parse p50 ({label})", p50, "ns", note="target: well under 1,000 ns" if label == "cython" else ""))
        rows.append(Row(group, f"Message.parse p99 ({label})", p99, "ns"))
    if itchfeed is not None:
        registry = importlib.import_module("itch.messages").messages
        p50, p99 = _percentiles(lambda raw: registry[raw[0:1]](raw), sample)
        rows.append(Row(group, "itchfeed message class from bytes p50", p50, "ns"))
        rows.append(Row(group, "itchfeed message class from bytes p99", p99, "ns"))

    progress.step("book: batch replay")
    itch_impl = itch_backends[0][1]
    batch = itch_impl.decode(feed)
    slow_batch = itch_impl.decode(slow_feed)
    group = f"book: replay of the decoded {count:,}-message feed (100 instruments), M msg/s"
    book_messages = sum(len(batch[t]) for t in "AFECXDU")
    slow_book_messages = sum(len(slow_batch[t]) for t in "AFECXDU")
    for label, impl in book_backends:
        b, n = (batch, book_messages) if label == "cython" else (slow_batch, slow_book_messages)
        ns = time_loop(lambda _n, impl=impl, b=b: impl.Book().apply_batch(b), 1, repeats=repeats)
        rows.append(Row(group, f"Book.apply_batch ({label})", _rate(ns, n), "M msg/s", higher_is_better=True,
                        note="target: >= 20 M msg/s, >= 2x itchcpp's book" if label == "cython" else ""))
    sorted_dict = getattr(_optional("sortedcontainers"), "SortedDict", None)
    slow_raw = [m for m in messages[:slow_count] if m[0] in b"AFECXDU"]
    if sorted_dict is not None:
        ns = time_loop(lambda _n: _replay_sorted(SortedDictBook(sorted_dict), slow_raw), 1, repeats=repeats)
        rows.append(Row(group, "sortedcontainers.SortedDict book, one message at a time", _rate(ns, len(slow_raw)), "M msg/s",
                        higher_is_better=True))
    if _optional("order_book") is None:
        rows.append(Row(group, "order-book (C): not installed, skipped", 0.0, "M msg/s", higher_is_better=True))

    progress.step("book: one message at a time")
    group = "book: one raw message applied from Python, ns per message"
    for label, impl in book_backends:
        book = impl.Book()
        apply = book.apply
        ns = time_loop(lambda _n, apply=apply: [apply(m) for m in slow_raw], 1, repeats=1, warmup=0)
        rows.append(Row(group, f"Book.apply(raw) ({label})", ns / len(slow_raw), "ns",
                        note="target: >= 2x order-book per operation" if label == "cython" else ""))
    if sorted_dict is not None:
        ns = time_loop(lambda _n: _replay_sorted(SortedDictBook(sorted_dict), slow_raw), 1, repeats=1, warmup=0)
        rows.append(Row(group, "sortedcontainers.SortedDict book (struct.unpack_from + dict/SortedDict)", ns / len(slow_raw), "ns"))

    progress.step("book: top of book")
    group = "book: best bid query on the busiest instrument, ns per call"
    loops = 20_000 if quick else 200_000

    def query_loop(query):
        def loop(n):
            for _ in range(n):
                query(1)  # results dropped at once, as a trading loop would: no list of tuples kept alive
        return loop

    empty = loop_overhead_ns(loops, repeats=repeats)
    for label, impl in book_backends:
        book = impl.Book()
        book.apply_batch(slow_batch)
        ns = time_loop(query_loop(book.best_bid), loops, repeats=repeats) / loops
        rows.append(Row(group, f"Book.best_bid ({label})", max(ns - empty, 0.0), "ns"))
    if sorted_dict is not None:
        ref = SortedDictBook(sorted_dict)
        _replay_sorted(ref, slow_raw)
        ns = time_loop(query_loop(ref.best_bid), loops, repeats=repeats) / loops
        rows.append(Row(group, "SortedDict book best bid (peekitem + level sum)", max(ns - empty, 0.0), "ns"))
    rows.append(Row(group, "empty `for _ in range(n)` iteration (subtracted above)", empty, "ns"))

    progress.step("book: add latency while the book grows")
    group = "book: Book.add of ever new orders from empty (every growth included), ns per call"
    adds = 200_000 if quick else 2_000_000
    for label, impl in book_backends:
        if label != "cython":
            continue
        book = impl.Book()
        add = book.add
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
        empty = np.empty(10_000, dtype=np.int64)
        for i in range(10_000):
            t0 = clock()
            empty[i] = clock() - t0
        base = float(np.median(empty))
        for name, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9)):
            rows.append(Row(group, f"Book.add {name} ({label})", max(float(np.percentile(samples, q)) - base, 0.0), "ns",
                            note="target: a few us at p99.9 while growing" if name == "p99.9" else ""))
        rows.append(Row(group, f"Book.add max ({label}; includes scheduler preemption)", float(samples.max()) - base, "ns"))

    progress.step("itch: streaming memory")
    group = "itch: read() of a file twice the chunk size, peak traced memory / chunk size"
    chunk = 1 << 20
    cut = 0
    while cut < len(feed) and cut + 2 + (feed[cut] << 8 | feed[cut + 1]) <= 2 * chunk:
        cut += 2 + (feed[cut] << 8 | feed[cut + 1])  # the last whole message within 2 chunks
    for label, impl in itch_backends:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "feed.itch")
            with open(path, "wb") as f:
                f.write(feed[:cut])
            largest = 0
            tracemalloc.start()
            try:
                for batch in impl.read(path, chunk_size=chunk, progress=False):
                    largest = max(largest, sum(a.nbytes for a in batch.values()))
                    del batch
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        rows.append(Row(group, f"lowlat.itch.read ({label}), decoded batches included", peak / chunk, "x chunk"))
        rows.append(Row(group, f"lowlat.itch.read ({label}), less the largest decoded batch", (peak - largest) / chunk, "x chunk",
                        note="target: <= 2x the chunk" if label == "cython" else ""))
    return rows
