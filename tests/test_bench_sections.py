"""Each fast bench section runs end to end (``quick``), reports every progress step, and says what it found.

The shared-memory section (two processes) and the memory section (arrays beyond the last-level
cache) run in ``test_cli.py`` / ``make bench`` only; their contract is checked in
``test_bench_harness.py``.
"""

import importlib
import io

import pytest

from lowlat._backend import BACKENDS
from lowlat.bench import SECTIONS
from lowlat.bench._harness import Progress, backends
from lowlat.bench._seed import SeedListTracker, SeedMessageQueue, SeedObjectPool, SeedPriorityQueue, SeedRingBuffer

FAST = ("timers", "tracker", "layout", "queues", "pools", "msgqueues", "histogram")
LIVE = [name for name, _ in backends()]


@pytest.fixture(scope="module")
def results():
    found = {}
    for name in FAST:
        module = importlib.import_module(SECTIONS[name])
        progress = Progress(module.STEPS, stream=io.StringIO())
        rows = module.run(True, progress)
        found[name] = (module, progress, rows)
    return found


@pytest.mark.parametrize("name", FAST)
def test_section_reports_every_step_and_concludes(results, name):
    module, progress, rows = results[name]
    assert progress.done == module.STEPS
    assert rows and all(r.group and r.label and r.unit for r in rows)
    assert module.conclude(rows)
    for row in rows:
        assert row.backend in ("", *BACKENDS)


def test_every_backend_is_a_contender(results):
    for name in ("queues", "pools", "msgqueues", "histogram", "tracker"):
        rows = results[name][2]
        assert {r.backend for r in rows if r.backend} == set(LIVE), name


def test_histogram_section_compares_with_hdrhistogram_and_judges_targets(results):
    pytest.importorskip("hdrh")
    rows = results["histogram"][2]
    labels = {r.label for r in rows}
    assert {"hdrhistogram record_value", "hdrhistogram get_value_at_percentile"} <= labels
    judged = {r.label for r in rows if r.met is not None}
    if "cython" in LIVE:
        assert {"LatencyHistogram.record (cython)", "record_many (cython)",
                "LatencyHistogram.percentile (cython)"} <= judged


def test_tracker_section_reports_the_same_percentiles(results):
    rows = results["tracker"][2]
    checks = [r for r in rows if r.target]
    assert len(checks) == 4 * len(LIVE) and all(r.met for r in checks)
    memory = {r.label: r.value for r in rows if r.unit == "B"}
    seed_big = next(v for k, v in memory.items() if k.startswith("seed list tracker") and "10,000" not in k)
    assert seed_big > 10 * memory["seed list tracker, 10,000 samples"]  # the list grows with the samples
    assert len({v for k, v in memory.items() if k.startswith("LatencyTracker")}) == 1


def test_timers_section_measures_every_clock_three_ways(results):
    rows = results["timers"][2]
    groups = {}
    for row in rows:
        groups.setdefault(row.group, set()).add(row.label)
    clocks = [g for g in groups.values() if "time.perf_counter_ns()" in g]
    assert len(clocks) == 3 and all(g == clocks[0] for g in clocks)
    assert {"time.process_time_ns()", "time.thread_time_ns()", "time.time_ns()"} <= clocks[0]
    if "cython" in LIVE:
        stamps = [g for name, g in groups.items() if "stamp clock" in name]
        assert stamps and "CLOCK_MONOTONIC stamps (LOWLAT_NO_TSC=1)" in stamps[0]


def test_seed_tracker_skips_its_warm_up_and_sorts():
    seed = SeedListTracker("s", 2)
    for v in (5, 5, 1, 2, 3):
        seed.record(v)
    stats = seed.get_statistics()
    assert stats["count"] == 3 and stats["max_ns"] == 3 and stats["min_ns"] == 1 and stats["p50_ns"] == 2


def test_seed_baselines_behave_as_the_seed_wrote_them():
    ring = SeedRingBuffer(3)  # rounded up to 4, one slot kept empty
    assert [ring.push(i) for i in range(4)] == [True, True, True, False] and len(ring) == 3
    assert [ring.pop() for _ in range(4)] == [0, 1, 2, None]
    queue = SeedMessageQueue(2)
    assert queue.enqueue("a", 0) and not queue.enqueue("b") and queue.stats["drops"] == 1
    seq, message, waited = queue.dequeue()
    assert (seq, message) == (0, "a") and waited > 0 and queue.dequeue() is None
    prio = SeedPriorityQueue()
    prio.enqueue(5, "late")
    prio.enqueue(1, "first")
    assert [prio.dequeue()[1], prio.dequeue()[1], prio.dequeue()] == ["first", "late", None]
    pool = SeedObjectPool(list, 1)
    with pool.borrow() as first:
        assert pool.acquire() is not first and pool.allocated == 1
    assert pool.acquire() is first
