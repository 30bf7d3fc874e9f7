"""Experiment 3, memory access patterns (seed section 3, In [5]): row-major, column-major, strided
and random access, and the cache staircase of the machine the benchmark runs on.

The seed summed a 10,000 x 10,000 matrix element by element from Python, both ways. Here the same
cell (on a smaller matrix), then the patterns with the interpreter out of the way (numpy does
the loop): rows against columns of a matrix larger than the last-level cache, strides, and a
gather by working-set size from L1-sized to far beyond the last-level cache, in ns per element.
The random gather's steps sit at this machine's cache sizes (the report marks them).
"""

from __future__ import annotations

import numpy as np

from ._harness import Measure, Progress, Row, time_loop

TITLE = "Memory access patterns and the cache staircase"
SEED = "section 3, In [5] benchmark_memory_access_patterns"
SEED_SAYS = ("The seed's Python loops took 12.6 s row-major and 11.5 s column-major (column-major 1.1x faster) "
             "and numpy's sum 642x less, yet it concluded cache-friendly code can be 10-100x faster.")
STEPS = 4
STAIRCASE = "cache staircase: gather, ns per element by working-set size"
STRIDES = "strided sum over a large array, ns per element touched"


def python_rows(matrix):
    def loop(_n):
        total = 0.0
        rows, cols = matrix.shape
        for i in range(rows):
            for j in range(cols):
                total += matrix[i, j]
        return total

    return loop


def python_columns(matrix):
    def loop(_n):
        total = 0.0
        rows, cols = matrix.shape
        for j in range(cols):
            for i in range(rows):
                total += matrix[i, j]
        return total

    return loop


def numpy_row_slices(matrix):
    return lambda _n: sum(row.sum() for row in matrix)


def numpy_column_slices(matrix):
    return lambda _n: sum(matrix[:, j].sum() for j in range(matrix.shape[1]))


def numpy_whole(matrix):
    return lambda _n: matrix.sum()


def gather(array, index, out):
    def loop(n):
        for _ in range(n):
            np.take(array, index, out=out)

    return loop


def _per_element(loop, elements, repeats, count=1):
    ns = time_loop(loop, count, repeats=repeats)
    return Measure(ns / (elements * count), ns.spread / (elements * count))


def _seed_cell(rows, quick, repeats):
    side = 300 if quick else 1000
    matrix = np.random.default_rng(1).standard_normal((side, side))
    group = f"the seed's cell: sum a {side} x {side} matrix from Python loops, ns per element"
    for label, make in (("row-major Python loops", python_rows), ("column-major Python loops", python_columns),
                        ("numpy sum()", numpy_whole)):
        rows.append(Row(group, label, _per_element(make(matrix), side * side, repeats), "ns"))


def _numpy_patterns(rows, quick, repeats):
    side = 2048 if quick else 4096
    matrix = np.random.default_rng(2).standard_normal((side, side))
    group = f"{side} x {side} float64 matrix ({matrix.nbytes >> 20} MiB) by numpy, ns per element"
    for label, make in (("row by row (contiguous slices)", numpy_row_slices),
                        ("column by column (strided slices)", numpy_column_slices), ("whole sum()", numpy_whole)):
        rows.append(Row(group, label, _per_element(make(matrix), matrix.size, repeats), "ns"))


def _strides(rows, quick, repeats):
    array = np.ones((1 << (22 if quick else 25)), dtype=np.int64)  # 32 MiB / 256 MiB
    for stride in (1, 2, 4, 8, 16, 32, 64):
        view = array[::stride]
        rows.append(Row(STRIDES, f"every {stride} x 8 bytes", _per_element(lambda _n, v=view: v.sum(), view.size,
                                                                           repeats), "ns",
                        extra={"x": stride * 8, "x_label": "stride, bytes", "series": "strided sum"}))


def _staircase(rows, quick, repeats):
    repeats = 2 if quick else repeats  # the largest arrays dominate the quick run
    rng = np.random.default_rng(3)
    top = 23 if quick else 25  # 64 MiB / 256 MiB: 2x and 8x a 32 MiB last-level cache
    for power in range(11, top + 1):
        size = 1 << power
        array = np.arange(size, dtype=np.int64)
        out = np.empty(size, dtype=np.int64)
        count = max(1, (1 << 21) // size)
        for pattern, make_index in (("sequential", np.arange), ("random", rng.permutation)):
            index = make_index(size)
            rows.append(Row(STAIRCASE, f"{pattern} {_size_text(array.nbytes)}",
                            _per_element(gather(array, index, out), size, repeats, count), "ns",
                            extra={"x": array.nbytes, "x_label": "working set, bytes", "series": f"{pattern} gather",
                                   "bytes_axis": True}))
            del index  # one index array alive at a time: the largest is 256 MiB


def _size_text(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def run(quick: bool, progress: Progress) -> list[Row]:
    """Run the section; return its rows."""
    repeats = 3 if quick else 5
    rows: list[Row] = []
    progress.step("memory: the seed's cell")
    _seed_cell(rows, quick, repeats)
    progress.step("memory: rows and columns")
    _numpy_patterns(rows, quick, repeats)
    progress.step("memory: strides")
    _strides(rows, quick, repeats)
    progress.step("memory: cache staircase")
    _staircase(rows, quick, repeats)
    return rows


def conclude(rows: list[Row]) -> str:
    """Say what this run shows against the seed's conclusion."""
    seed = {r.label: r.value for r in rows if r.group.startswith("the seed's cell")}
    numpy_rows = {r.label: r.value for r in rows if "by numpy" in r.group}
    stair = [r for r in rows if r.group == STAIRCASE and r.extra.get("series") == "random gather"]
    low, high = (stair[0].value, stair[-1].value) if stair else (0.0, 0.0)
    by_col, by_row = seed.get("column-major Python loops", 0.0), seed.get("row-major Python loops", 0.0)
    col = numpy_rows.get("column by column (strided slices)", 0.0)
    row = numpy_rows.get("row by row (contiguous slices)", 0.0)
    whole = seed.get("numpy sum()", 0.0)
    ratio = by_col / by_row if by_row else 0.0
    python = (f"From Python loops the order {'barely matters' if 0.8 < ratio < 1.25 else 'matters'} "
              f"({by_col:,.0f} ns per element by columns, {by_row:,.0f} by rows, {whole:,.2f} for numpy's sum): "
              "the interpreter, not the cache, is most of what the seed timed.")
    cache = (f"a random gather climbs from {low:,.2f} ns per element in L1 to {high:,.1f} ns beyond the "
             "last-level cache" if stair else "")
    real = high > 3 * low if stair else False
    return (f"{python} With numpy doing the loop, columns cost {col / row if row else 0:,.1f}x rows and {cache}: "
            + ("the cache effect the seed described is real, visible once the interpreter is out of the loop."
               if real else "on this run the staircase is flatter than the seed's 10-100x claim."))
