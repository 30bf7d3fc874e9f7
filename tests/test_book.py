"""lowlat.book on both backends against a plain model (dicts and sorted levels) on generated feeds."""

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import load_backend
from lowlat._backend import BACKENDS
from lowlat.itch import framing, generator

FEED_MESSAGES = 1_000_000
TOP_CHECK_MESSAGES = 150_000
BUSIEST = (1, 2, 3)  # the generator's instruments are Zipf-weighted: locates 1, 2, 3 are the busiest


class Model:
    """The plainest L3 book: orders by reference, a dict of price -> [refs] per side."""

    def __init__(self):
        self.orders = {}
        self.sides = {}
        self.unknown = self.over = self.duplicate = self.invalid = 0

    def add(self, locate, ref, side, price, shares):
        if ref in self.orders:
            self.duplicate += 1
            return False
        if shares == 0 or side not in "BS":
            self.invalid += 1
            return False
        self.orders[ref] = [locate, side, price, shares]
        self.sides.setdefault((locate, side), {}).setdefault(price, []).append(ref)
        return True

    def _remove(self, ref):
        locate, side, price, _ = self.orders.pop(ref)
        level = self.sides[(locate, side)][price]
        level.remove(ref)
        if not level:
            del self.sides[(locate, side)][price]

    def reduce(self, ref, shares):
        if ref not in self.orders:
            self.unknown += 1
            return 0
        order = self.orders[ref]
        if shares >= order[3]:
            if shares > order[3]:
                self.over += 1
            done = order[3]
            self._remove(ref)
            return done
        order[3] -= shares
        return shares

    def delete(self, ref):
        if ref not in self.orders:
            self.unknown += 1
            return False
        self._remove(ref)
        return True

    def replace(self, ref, new_ref, shares, price):
        if ref not in self.orders:
            self.unknown += 1
            return False
        locate, side = self.orders[ref][:2]
        self._remove(ref)
        return self.add(locate, new_ref, side, price, shares)

    def apply_raw(self, raw):
        t = chr(raw[0])
        if t in "AF":
            locate, ref, side, shares, price = struct.unpack_from(">xH8xQcI8xI", raw)
            self.add(locate, ref, side.decode(), price, shares)
        elif t in "ECX":
            ref, shares = struct.unpack_from(">11xQI", raw)
            self.reduce(ref, shares)
        elif t == "D":
            self.delete(struct.unpack_from(">11xQ", raw)[0])
        elif t == "U":
            self.replace(*struct.unpack_from(">11xQQII", raw))

    def levels(self, locate, side):
        """[(price, shares, orders)] best first."""
        levels = self.sides.get((locate, side), {})
        prices = sorted(levels, reverse=(side == "B"))
        return [(p, sum(self.orders[r][3] for r in levels[p]), len(levels[p])) for p in prices]

    def best(self, locate, side):
        levels = self.sides.get((locate, side))
        if not levels:
            return None
        p = max(levels) if side == "B" else min(levels)
        return (p, sum(self.orders[r][3] for r in levels[p]), len(levels[p]))


@pytest.fixture(scope="module")
def book_module(backend_name):
    return load_backend(backend_name, "lowlat.book")


@pytest.fixture(scope="module")
def book_backends():
    return [load_backend(name, "lowlat.book") for name in BACKENDS]


@pytest.fixture(scope="session")
def feed_messages():
    return generator.generate_messages(FEED_MESSAGES, seed=21, instruments=100)


@pytest.fixture(scope="session")
def final_model(feed_messages):
    model = Model()
    for raw in feed_messages:
        model.apply_raw(raw)
    return model


def test_top_of_book_after_every_message(book_module, feed_messages):
    """Best bid and ask of the busiest instruments equal the model's after every message."""
    book = book_module.Book()
    model = Model()
    checked = 0
    for raw in feed_messages[:TOP_CHECK_MESSAGES]:
        applied = book.apply(raw)
        model.apply_raw(raw)
        assert applied == (chr(raw[0]) in "AFECXDU")
        locate = raw[1] << 8 | raw[2]
        if applied and locate in BUSIEST:
            assert book.best_bid(locate) == model.best(locate, "B")
            assert book.best_ask(locate) == model.best(locate, "S")
            checked += 1
    assert checked > TOP_CHECK_MESSAGES // 4
    assert len(book) == len(model.orders)


def test_final_books_equal_for_every_instrument(book_module, feed_messages, final_model):
    """The whole 1M feed decoded and applied in one batch: every level of every instrument."""
    itch = load_backend("cython", "lowlat.itch")
    batch = itch.decode(framing.frame(feed_messages))
    book = book_module.Book()
    applied = book.apply_batch(batch)
    assert applied == sum(len(batch[t]) for t in "AFECXDU") == book.messages
    model = final_model
    assert len(book) == len(model.orders)
    assert (book.unknown_references, book.over_executions, book.duplicate_references, book.invalid_messages) == (
        model.unknown, model.over, model.duplicate, model.invalid)
    locates = sorted({loc for (loc, _side), levels in model.sides.items() if levels})
    assert book.instruments() == locates and len(locates) == 100
    for locate in locates:
        for side in "BS":
            want = model.levels(locate, side)
            got = book.depth(locate, side, len(want) + 5)
            assert [tuple(int(x) for x in row) for row in got] == want, (locate, side)
            assert book.level_count(locate, side) == len(want)
        bid_orders, bid_shares, ask_orders, ask_shares = book.totals(locate)
        assert bid_orders == sum(r[2] for r in model.levels(locate, "B"))
        assert ask_shares == sum(r[1] for r in model.levels(locate, "S"))
    # Orders at a level, in time priority, for the busiest instrument's top levels.
    for side in "BS":
        for price, _, _ in model.levels(1, side)[:20]:
            refs = model.sides[(1, side)][price]
            assert book.orders_at(1, side, price) == [(r, model.orders[r][3]) for r in refs]
    for ref in list(model.orders)[:1000]:
        locate, side, price, shares = model.orders[ref]
        assert book.order(ref) == (locate, side, price, shares) and ref in book


def test_gaps_are_counted_never_raised(book_module):
    book = book_module.Book()
    assert book.add(7, 100, "B", 1_000_000, 300)
    assert book.execute(999, 10) == 0 and book.unknown_references == 1
    assert not book.delete(998) and book.unknown_references == 2
    assert not book.replace(997, 5, 1, 1) and book.unknown_references == 3
    assert book.cancel(100, 100) == 100
    assert book.execute(100, 500) == 200 and book.over_executions == 1
    assert len(book) == 0 and book.best_bid(7) is None and book.level_count(7, "B") == 0
    assert book.add(7, 1, "S", 1_000_100, 10)
    assert not book.add(7, 1, "S", 1_000_200, 10) and book.duplicate_references == 1
    assert not book.add(7, 2, "S", 1_000_100, 0) and book.invalid_messages == 1
    assert book.best_ask(7) == (1_000_100, 10, 1)
    assert book.messages == 9
    with pytest.raises(ValueError, match="side"):
        book.add(7, 3, "X", 1, 1)
    with pytest.raises(OverflowError):
        book.add(7, -1, "B", 1, 1)
    with pytest.raises(OverflowError):
        book.add(70_000, 3, "B", 1, 1)
    with pytest.raises(TypeError):
        book.delete("1")


def test_replace_loses_priority_keeps_side_and_instrument(book_module):
    book = book_module.Book()
    for ref in (1, 2, 3):
        book.add(5, ref, b"B", 500_000, 100 * ref)
    assert book.orders_at(5, "B", 500_000) == [(1, 100), (2, 200), (3, 300)]
    assert book.replace(1, 10, 150, 500_000)
    assert book.orders_at(5, "B", 500_000) == [(2, 200), (3, 300), (10, 150)]
    assert book.order(10) == (5, "B", 500_000, 150) and book.order(1) is None
    assert book.replace(2, 11, 50, 500_100)
    assert book.best_bid(5) == (500_100, 50, 1)
    depth = book.depth(5, "B", 5)
    assert depth.dtype.names == ("price", "shares", "orders")
    assert depth.tolist() == [(500_100, 50, 1), (500_000, 450, 2)]
    assert book.totals(5) == (3, 500, 0, 0)
    # A replace onto a live reference removes the original and counts the duplicate.
    assert not book.replace(3, 10, 1, 1) and book.duplicate_references == 1
    assert book.orders_at(5, "B", 500_000) == [(10, 150)]


def test_apply_takes_raw_messages_and_records(book_module, backend_name):
    itch = load_backend(backend_name, "lowlat.itch")
    raw = struct.pack(">cHHHIQcI8sI", b"A", 3, 0, 0, 5, 42, b"S", 100, b"ABCD    ", 1_000_000)
    book = book_module.Book()
    record = itch.Message()
    record.parse(raw)
    assert book.apply(record)
    assert book.best_ask(3) == (1_000_000, 100, 1)
    assert not book.apply(b"S" + bytes(11))  # a system event: not a book message
    assert book.apply(b"xx" + struct.pack(">cHHHIQ", b"D", 3, 0, 0, 5, 42), 2)
    assert len(book) == 0
    with pytest.raises(ValueError, match="truncated message at byte offset 0"):
        book.apply(raw[:-1])
    with pytest.raises(ValueError, match="offset"):
        book.apply(raw, 36)


def test_no_preset_limits(book_module):
    """Every locate, a wide price range and many orders: everything grows, nothing is lost."""
    book = book_module.Book()
    rng = np.random.default_rng(3)
    n = 60_000
    locates = rng.integers(0, 65536, n)
    prices = rng.integers(1, 2**32 - 1, n, dtype=np.uint64)
    for i in range(n):
        book.add(int(locates[i]), 2**64 - 1 - i, "B" if i % 2 else "S", int(prices[i]), 1 + i % 7)
    assert len(book) == n
    assert book.best_bid(65535) is not None or book.best_ask(65535) is not None or 65535 not in set(locates.tolist())
    for i in range(0, n, 2):
        assert book.delete(2**64 - 1 - i)
    assert len(book) == n // 2 and book.unknown_references == 0


# --- differential: both backends and the model, random operation sequences --------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 30), st.sampled_from("BS"), st.integers(0, 6), st.integers(0, 3)),
        st.tuples(st.just("execute"), st.integers(0, 30), st.integers(0, 5)),
        st.tuples(st.just("cancel"), st.integers(0, 30), st.integers(0, 5)),
        st.tuples(st.just("delete"), st.integers(0, 30)),
        st.tuples(st.just("replace"), st.integers(0, 30), st.integers(0, 30), st.integers(0, 4), st.integers(0, 6)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_differential_against_the_model(ops):
    books = [load_backend(name, "lowlat.book").Book() for name in BACKENDS]
    model = Model()
    for op in ops:
        name, args = op[0], op[1:]
        if name == "add":
            locate, ref, side, price, shares = args
            results = [b.add(locate, ref, side, price, shares) for b in books]
            expected = model.add(locate, ref, side, price, shares)
        elif name in ("execute", "cancel"):
            results = [getattr(b, name)(*args) for b in books]
            expected = model.reduce(*args)
        elif name == "delete":
            results = [b.delete(*args) for b in books]
            expected = model.delete(*args)
        else:
            results = [b.replace(*args) for b in books]
            expected = model.replace(*args)
        assert results == [expected] * len(books), op
        for locate in range(4):
            for b in books:
                assert b.best_bid(locate) == model.best(locate, "B")
                assert b.best_ask(locate) == model.best(locate, "S")
    for b in books:
        assert len(b) == len(model.orders)
        assert (b.unknown_references, b.over_executions, b.duplicate_references, b.invalid_messages) == (
            model.unknown, model.over, model.duplicate, model.invalid)
        for locate in range(4):
            for side in "BS":
                assert [tuple(map(int, r)) for r in b.depth(locate, side, 100)] == model.levels(locate, side)


def test_backends_have_the_same_interface(book_backends):
    import inspect

    compiled, pure = book_backends
    assert compiled.__all__ == pure.__all__ == ["Book"]
    public = sorted(n for n in dir(pure.Book) if not n.startswith("_"))
    assert sorted(n for n in dir(compiled.Book) if not n.startswith("_")) == public
    for name in public:
        a, b = getattr(compiled.Book, name), getattr(pure.Book, name)
        doc_a = (a.__doc__ or "").split("\n--\n\n", 1)[-1]
        assert inspect.cleandoc(doc_a) == inspect.cleandoc(b.__doc__ or ""), name
    assert inspect.cleandoc(compiled.Book.__doc__.split("\n--\n\n", 1)[-1]) == inspect.cleandoc(pure.Book.__doc__)


def test_default_backend_is_compiled():
    import os
    import subprocess
    import sys

    if not os.environ.get("LOWLAT_REQUIRE_EXTENSIONS"):
        pytest.skip("the compiled half is optional here")
    out = subprocess.run(
        [sys.executable, "-c", "import lowlat.book as b; print(b.BACKEND)"],
        capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if k != "LOWLAT_PURE_PYTHON"},
    )
    assert out.stdout.split() == ["cython"]


def test_stubs_name_the_public_api(book_backends):
    import ast
    from pathlib import Path

    import lowlat.book

    stub = Path(lowlat.book.__file__).with_name("_c.pyi")
    tree = ast.parse(stub.read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for backend in book_backends:
        assert set(backend.__all__) == set(classes)
        for item in classes["Book"].body:
            if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                assert hasattr(backend.Book, item.name), item.name
        public = {n for n in dir(backend.Book) if not n.startswith("_")}
        stubbed = {i.name for i in classes["Book"].body if isinstance(i, ast.FunctionDef)}
        assert public <= stubbed


def test_growth_keeps_every_order_findable(book_module):
    """Adds, deletes and lookups interleaved across several growths of the reference map."""
    import random

    rng = random.Random(17)
    book = book_module.Book()
    live = {}
    refs = []
    next_ref = 1
    for step in range(120_000):
        if not refs or rng.random() < 0.6:
            ref = next_ref if rng.random() < 0.9 else rng.getrandbits(64)
            next_ref += rng.randrange(1, 5)
            if ref in live:
                continue
            assert book.add(ref % 50, ref, "B" if ref % 2 else "S", 10_000 + ref % 97, 100)
            live[ref] = ref % 50
            refs.append(ref)
        else:
            i = rng.randrange(len(refs))
            ref = refs[i]
            refs[i] = refs[-1]
            refs.pop()
            assert book.delete(ref)
            del live[ref]
        if step % 997 == 0:
            probe = rng.sample(refs, min(50, len(refs)))
            assert all(ref in book for ref in probe)
            assert book.order(next_ref + 10_000) is None
    assert len(book) == len(live)
    for ref, locate in live.items():
        assert book.order(ref)[0] == locate
    for ref in list(live):
        assert book.delete(ref)
    assert len(book) == 0 and book.unknown_references == 0 and book.instruments() == []


def test_depth_rows_are_aligned_for_the_compiled_stores():
    """Every field of a depth row sits at a multiple of its size (UBSan flagged the packed layout)."""
    from lowlat.book import DEPTH_DTYPE

    for name in DEPTH_DTYPE.names:
        dtype, offset = DEPTH_DTYPE.fields[name][:2]
        assert offset % dtype.itemsize == 0, name
