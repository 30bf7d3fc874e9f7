"""The benchmark harness and the section registry (``lowlat.bench``), without timing anything slow."""

import ast
import io
import importlib
import inspect
from pathlib import Path

import pytest

import lowlat._benchkit as benchkit
from lowlat._backend import BACKENDS
from lowlat.bench import ALIASES, SECTIONS, _harness
from lowlat.bench._harness import Case, Measure, Row, compare, format_table, judge, per_op_ns
from lowlat.bench._runner import json_rows, resolve


def test_old_benchkit_names_are_the_harness_names():
    for name in ("Row", "Progress", "Case", "compare", "time_loop", "per_op_ns", "loop_overhead_ns", "format_table",
                 "backends", "BACKEND_MODULES"):
        assert getattr(benchkit, name) is getattr(_harness, name)


def test_backends_follow_the_one_list():
    names = [name for name, _ in _harness.backends()]
    assert names == [b for b in BACKENDS if b in names] and "python" in names
    assert list(_harness.BACKEND_MODULES) == list(BACKENDS)


def _group(*rows):
    return [Row("g", label, value, "ns", reference=ref) for label, value, ref in rows]


def test_ratio_base_is_the_marked_reference_not_the_first_row():
    rows = _group(("first", 10.0, False), ("marked", 40.0, True), ("third", 20.0, False))
    data = {r["contender"]: r for r in json_rows(rows)}
    assert data["marked"]["reference"] and not data["first"]["reference"]
    assert data["first"]["ratio"] == pytest.approx(0.25) and data["third"]["ratio"] == pytest.approx(0.5)
    table = format_table(rows)
    marked = [line for line in table.splitlines() if line.lstrip().startswith("*")]
    assert len(marked) == 1 and "marked" in marked[0] and "1.00x" in marked[0]


def test_first_row_is_the_reference_when_none_is_marked():
    rows = _group(("a", 10.0, False), ("b", 30.0, False))
    data = json_rows(rows)
    assert [r["reference"] for r in data] == [True, False] and data[1]["ratio"] == pytest.approx(3.0)


def test_higher_is_better_rows_are_flagged_per_row():
    rows = [Row("g", "rate", 5.0, "MB/s", higher_is_better=True), Row("g", "time", 2.0, "ns")]
    lines = format_table(rows).splitlines()
    assert "^" in next(line for line in lines if "rate" in line)[:6]
    assert "^" not in next(line for line in lines if "time" in line)[:6]


def test_targets_are_judged_not_only_printed():
    met = judge(Row("g", "fast", 1.0, "ns"), "<= 2 ns", True)
    missed = judge(Row("g", "slow", 3.0, "ns"), "<= 2 ns", False)
    table = format_table([met, missed])
    assert "MET <= 2 ns" in table and "MISSED <= 2 ns" in table
    assert [r["met"] for r in json_rows([met, missed])] == [True, False]


def test_measure_spread_reaches_the_row_and_table():
    row = Row("g", "x", Measure(10.0, 2.5), "ns")
    assert row.spread == 2.5 and type(row.value) is float
    assert "±2.50" in format_table([row])


def test_compare_and_per_op_ns_report_the_spread_of_their_repeats():
    def loop(n):
        for _ in range(n):
            sum((1, 2, 3))

    figures = compare([Case("a", loop, 2000), Case("b", loop, 2000, ops=2)], repeats=3)
    assert all(isinstance(f, Measure) and f.spread >= 0 for f in figures)
    single = per_op_ns(loop, 2000, repeats=3)
    assert isinstance(single, Measure) and single.spread >= 0


def test_resolve_keeps_order_and_drops_repeats():
    first, second = list(SECTIONS)[:2]
    assert resolve([second, first, second]) == [second, first]
    assert resolve(None) == list(SECTIONS)
    with pytest.raises(ValueError, match="unknown section"):
        resolve(["nope"])


def test_old_section_names_still_resolve():
    assert resolve(["core", "queues", "hist"]) == ["queues", "pools", "histogram", "tracker"]
    assert all(part in SECTIONS for parts in ALIASES.values() for part in parts)


@pytest.mark.parametrize("name", list(SECTIONS))
def test_every_section_keeps_the_contract(name):
    module = importlib.import_module(SECTIONS[name])
    # TITLE, SEED, SEED_SAYS and conclude() are optional: the runner falls back to the section's name.
    assert isinstance(module.STEPS, int) and isinstance(getattr(module, "TITLE", name), str) and callable(module.run)
    assert list(inspect.signature(module.run).parameters) == ["quick", "progress"]
    if getattr(module, "SKIP", ""):
        assert module.STEPS == 0 and module.run(True, None) == []
        assert "waits for" in module.SKIP


def test_every_seed_experiment_names_its_cell():
    for name in ("timers", "tracker", "memory", "layout", "queues", "pools", "async", "msgqueues", "connpool", "batching",
                 "adaptive", "budget"):
        module = importlib.import_module(SECTIONS[name])
        assert module.SEED and module.SEED_SAYS, name


def test_no_bench_function_is_over_60_lines():
    folder = Path(inspect.getfile(_harness)).parent
    long = []
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.name}")
    assert not long


def test_sections_live_in_bench_only():
    package = Path(inspect.getfile(_harness)).parent.parent
    assert not list(package.glob("_bench_*.py"))  # the old home of sections: every one moved to bench/
    assert all(module.startswith("lowlat.bench.") for module in SECTIONS.values())


def test_a_section_that_cannot_run_yet_is_reported_skipped_not_faked(monkeypatch):
    """The runner's SKIP path (every real section runs today): no rows, the reason kept."""
    import sys
    import types

    from lowlat.bench import _runner

    waiting = types.ModuleType("lowlat.bench._waiting_section")
    waiting.TITLE, waiting.SEED, waiting.SEED_SAYS = "Waiting", "cell", "the seed says"
    waiting.SKIP, waiting.STEPS = "waits for its contenders", 0
    waiting.run = lambda quick, progress: [_harness.Row("g", "must not run", 1.0, "ns")]
    monkeypatch.setitem(sys.modules, waiting.__name__, waiting)
    monkeypatch.setitem(_runner.SECTIONS, "waiting", waiting.__name__)
    (result,) = _runner.run_sections(["waiting"], quick=True, progress=_harness.Progress(0, io.StringIO()))
    assert result.skipped == "waits for its contenders" and result.rows == []
    (summary,) = _runner.summary([result])
    assert summary["skipped"] == "waits for its contenders" and summary["measured"] == ""
