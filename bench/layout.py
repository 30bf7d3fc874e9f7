"""Experiment 4, struct of arrays vs array of structs (seed section 3, In [6]).

Orders held three ways — a list of dataclass objects (the seed's AoS), a numpy structured array
(AoS in one buffer) and separate numpy arrays (SoA) — for the two accesses a trading system has:
one field over all records (the seed's total buy value) and all fields of one record (what a risk
check or an order update touches). Whole loops, median of repeats, ns per record.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ._harness import Case, Progress, Row, compare

TITLE = "Struct of arrays vs array of structs"
SEED = "section 3, In [6] benchmark_struct_of_arrays_vs_array_of_structs"
SEED_SAYS = ("The seed measured the total buy value over 100,000 orders 4.3x faster with separate numpy arrays "
             "than with a list of objects, and recommended SoA.")
STEPS = 2

DTYPE = np.dtype([("order_id", "i8"), ("price", "f8"), ("quantity", "i8"), ("side", "i8")])


@dataclass
class Order:
    """The seed's order record."""

    order_id: int
    price: float
    quantity: int
    side: int


def make_orders(n: int):
    """Return the same ``n`` orders as (list of objects, structured array, dict of arrays)."""
    rng = random.Random(4)
    objects = [Order(i, 100.0 + rng.random(), rng.randint(1, 1000), rng.randint(0, 1)) for i in range(n)]
    structured = np.array([(o.order_id, o.price, o.quantity, o.side) for o in objects], dtype=DTYPE)
    names = DTYPE.names
    assert names is not None  # DTYPE is a structured dtype: its field names are always there
    columns = {name: np.ascontiguousarray(structured[name]) for name in names}
    return objects, structured, columns


def buy_value_objects(objects):
    return lambda _n: sum(o.price * o.quantity for o in objects if o.side == 0)


def buy_value_structured(table):
    def loop(_n):
        mask = table["side"] == 0
        return float(np.sum(table["price"][mask] * table["quantity"][mask]))

    return loop


def buy_value_columns(columns):
    price, quantity, side = columns["price"], columns["quantity"], columns["side"]

    def loop(_n):
        mask = side == 0
        return float(np.sum(price[mask] * quantity[mask]))

    return loop


def one_record_objects(objects, picks):
    def loop(_n):
        for i in picks:
            o = objects[i]
            o.order_id, o.price, o.quantity, o.side

    return loop


def one_record_structured(table, picks):
    def loop(_n):
        for i in picks:
            table[i].item()

    return loop


def one_record_columns(columns, picks):
    ids, price, quantity, side = (columns[k] for k in DTYPE.names)

    def loop(_n):
        for i in picks:
            ids[i], price[i], quantity[i], side[i]

    return loop


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    n = 20_000 if quick else 100_000
    repeats = 3 if quick else 9
    objects, table, columns = make_orders(n)
    rows: list[Row] = []
    progress.step("layout: one field over all records")
    cases = [Case("list of objects (seed's AoS)", buy_value_objects(objects), 1, ops=n),
             Case("numpy structured array (AoS in one buffer)", buy_value_structured(table), 1, ops=n),
             Case("separate numpy arrays (seed's SoA)", buy_value_columns(columns), 1, ops=n)]
    for case, ns in zip(cases, compare(cases, repeats=repeats)):
        rows.append(Row(f"total buy value over {n:,} orders (one field of every record), ns per record", case.label,
                        ns, "ns"))
    progress.step("layout: all fields of one record")
    picks = random.Random(5).sample(range(n), min(n, 10_000))
    cases = [Case("list of objects (seed's AoS)", one_record_objects(objects, picks), 1, ops=len(picks)),
             Case("numpy structured array: table[i].item()", one_record_structured(table, picks), 1, ops=len(picks)),
             Case("separate numpy arrays: four scalar reads", one_record_columns(columns, picks), 1, ops=len(picks))]
    for case, ns in zip(cases, compare(cases, repeats=repeats)):
        rows.append(Row("all four fields of one random record, ns per record", case.label, ns, "ns"))
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows against the seed's conclusion."""
    field = {r.label: r.value for r in rows if "one field" in r.group}
    record = {r.label: r.value for r in rows if "one random record" in r.group}
    aos, soa = field.get("list of objects (seed's AoS)", 0.0), field.get("separate numpy arrays (seed's SoA)", 0.0)
    r_aos = record.get("list of objects (seed's AoS)", 0.0)
    r_soa = record.get("separate numpy arrays: four scalar reads", 0.0)
    first = (f"holds: SoA is {aos / soa:,.1f}x faster here (the seed saw 4.3x)" if soa and aos > soa else
             f"does not hold on this run (SoA {soa:,.1f} ns vs objects {aos:,.1f} ns per record)")
    second = ("objects win" if r_aos < r_soa else "separate arrays still win, by less")
    return (f"For one field over every record the seed's conclusion {first}. For all fields of one record {second}: "
            f"the list of objects takes {r_aos:,.0f} ns and four numpy scalar reads {r_soa:,.0f} ns, because from "
            "Python each numpy scalar read is a call. The layout should follow the access; per-record paths "
            "belong in compiled code.")
