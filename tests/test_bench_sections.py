"""Each fast bench section runs end to end (``quick``), reports every progress step, and says what it found.

The shared-memory section (two processes) and the memory section (arrays beyond the last-level
cache) run in ``test_cli.py`` / ``make bench`` only; their contract is checked in
``test_bench_harness.py``. The connection-pooling section runs here at a smaller size.
"""

import asyncio
import glob
import importlib
import importlib.util
import io
import os
import threading
import time

import pytest

from lowlat._backend import BACKENDS
from lowlat.bench import SECTIONS
from lowlat.bench._harness import Progress, backends
from lowlat.bench._seed import SeedListTracker, SeedMessageQueue, SeedObjectPool, SeedPriorityQueue, SeedRingBuffer

FAST = ("timers", "tracker", "layout", "queues", "pools", "async", "msgqueues", "batching", "adaptive", "itch", "orders",
        "fix", "histogram")
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
    for name in ("queues", "pools", "msgqueues", "histogram", "tracker", "adaptive", "itch", "orders", "fix"):
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


def test_orders_and_fix_judge_their_targets(results):
    orders = [r for r in results["orders"][2] if r.met is not None]
    assert {r.backend for r in orders} == set(LIVE) and all(r.target.startswith("p50 <=") for r in orders)
    if "cython" in LIVE and "simplefix" in {r.label.split()[0] for r in results["fix"][2]}:
        ratios = {r.label for r in results["fix"][2] if r.met is not None}
        assert ratios == {"encode", "parse"}


def test_itch_section_judges_its_targets_and_says_its_figures(results):
    module, _, rows = results["itch"]
    judged = {r.label: r for r in rows if r.met is not None}
    if "cython" in LIVE:
        assert {"lowlat.itch.decode (cython)", "Message.parse p50 (cython)", "Book.apply_batch (cython)",
                "lowlat.itch.read (cython), less the largest decoded batch"} <= set(judged)
        parse = judged["Message.parse p50 (cython)"]
        assert parse.met == (parse.value <= module.PARSE_TARGET_NS)
    ours = "cython" if "cython" in LIVE else "python"
    decode = next(r for r in rows if r.label == f"lowlat.itch.decode ({ours})")
    assert decode.value > 0 and f"{decode.value:,.1f} M msg/s" in module.conclude(rows)
    assert f"{module.QUICK.count:,}-message feed" in decode.group
    peers = {r.label.split()[0] for r in rows if not r.backend}
    assert "floor:" in peers
    if importlib.util.find_spec("sortedcontainers"):
        assert "sortedcontainers.SortedDict" in peers
    if "itchfeed" in peers:
        assert judged["lowlat.itch.decode (python)"].target == "> itchfeed"
    labels = {r.label for r in rows}
    for backend in LIVE:
        assert f"lowlat.itch.decode ({backend})" in labels and f"Book.apply_batch ({backend})" in labels
    assert all(r.value >= 0 for r in rows)
    skipped = [r for r in rows if "not installed, skipped" in r.label]
    assert all(r.value == 0.0 for r in skipped)
    assert skipped or "itchcpp MessageParser.parse_stream (C++)" in labels


def test_batching_sections_cover_every_batch_size_and_both_loads(results):
    batching = results["batching"][2]
    sizes = {r.label.split(":")[0] for r in batching if r.unit == "us"}
    assert sizes == {"batch of 1", "batch of 10", "batch of 100", "batch of 1,000", "batch of 10,000"}
    assert all(r.distribution for r in batching if r.unit == "us")
    adaptive = results["adaptive"][2]
    for load in ("bursty", "quiet"):
        latency = [r for r in adaptive if r.group.startswith(f"adaptive batching, {load} load (")]
        assert latency[0].label.startswith("seed AdaptiveBatcher") and len(latency) >= 1 + len(LIVE)
        assert all(r.extra["percentiles_ns"]["count"] > 0 for r in latency)


def test_async_section_runs_every_experiment(results):
    rows = results["async"][2]
    groups = {r.group.split(":")[0].split(",")[0] for r in rows}
    assert {"async vs sync", "when does async pay off"} <= groups
    real = [r for r in rows if "real I/O" in r.group]
    assert {r.extra["delay_ns"] for r in real} == {0, 200_000} and all(r.value > 0 for r in real)


# ------------------------------------------------------------------ async: the runner and the UDP fan-out


def test_bench_runs_coroutines_inside_a_running_event_loop():
    from lowlat.bench import async_sync as bench

    async def job():
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert bench.run_coroutine(job) == threading.current_thread().name  # from a script: this thread

    async def notebook_cell():  # what the seed's cell did: measure while a loop is running
        assert bench.running_loop() is not None
        return bench.run_coroutine(job)

    assert asyncio.run(notebook_cell()) == "lowlat-bench-async"

    async def fails():
        raise KeyError("inside")

    async def cell_that_fails():
        return bench.run_coroutine(fails)

    with pytest.raises(KeyError):
        asyncio.run(cell_that_fails())


def test_bench_udp_fanout_gets_every_reply_sync_threaded_and_async():
    from concurrent.futures import ThreadPoolExecutor

    from lowlat.bench import async_sync as bench

    responder = bench._Responder()
    try:
        address = responder.address
        assert bench._sync_udp_ns(address, 3, 100_000, 1) >= 3 * 100_000  # one after another
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert bench._threaded_udp_ns(address, 4, 0, 1, pool) > 0
        overlapped = bench.run_coroutine(lambda: bench._async_udp_ns(address, 8, 100_000, 1))
        assert 100_000 <= overlapped < 1_000_000_000  # every reply arrived (else wait_for raises)
    finally:
        responder.close()
    assert not responder.process.is_alive()


def test_seed_batcher_baseline_holds_a_burst_remainder_until_the_next_add():
    from lowlat.bench.adaptive import SeedAdaptiveBatcher

    out = []
    b = SeedAdaptiveBatcher(min_batch_size=1, max_batch_size=4, max_wait_us=50_000, processor=out.append)
    for i in range(6):
        b.add(i)
    assert out == [[0, 1, 2, 3]]
    time.sleep(0.06)  # past its 50 ms limit: nothing looks at the clock between adds
    assert b.buffer == [4, 5] and len(out) == 1
    b.add(6)
    assert out == [[0, 1, 2, 3], [4, 5, 6]]


# ------------------------------------------------------------------ connection pooling over loopback TCP


def _children():
    """Live child processes of this one (Linux /proc; [] elsewhere)."""
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.append(stat)
    return children


def test_connpool_runs_every_contender_concludes_and_stops_its_processes():
    from lowlat.bench import connpool

    progress = Progress(connpool.STEPS, stream=io.StringIO())
    before = set(_children())  # earlier tests may have left helpers of their own (multiprocessing's tracker)
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    rows = connpool.measure(progress, 50, 5)
    assert progress.done == connpool.STEPS
    assert set(_children()) - before == set(), "a helper process outlived the bench"
    if affinity is not None:
        assert os.sched_getaffinity(0) == affinity, "the bench left this thread pinned"
    labels = {(row.group, row.label) for row in rows}
    for group, label in ((connpool.OUCH_P50, connpool.ECHO), (connpool.OUCH_P50, connpool.POOLED),
                         (connpool.OUCH_P50, connpool.FRESH), (connpool.OUCH_P50, connpool.SOUP_ECHO),
                         (connpool.SPIN_P50, connpool.SPIN_ECHO), (connpool.SPIN_P50, connpool.SPIN_POOLED),
                         (connpool.FIX_P50, connpool.ECHO), (connpool.FIX_P50, connpool.FIX_POOLED),
                         (connpool.FIX_P50, connpool.FIX_FRESH)):
        assert (group, label) in labels and (group.replace("p50", "p99"), label) in labels
    assert all(row.value > 0 and row.unit == "us" for row in rows)
    assert {row.extra["count"] for row in rows} == {50, 5}
    # each pooled row is judged against the echo that waits the same way, and only against that one
    judged = {(r.group, r.label) for r in rows if r.met is not None}
    assert judged == {(connpool.OUCH_P50, connpool.POOLED), (connpool.SPIN_P50, connpool.SPIN_POOLED)}
    pooled = next(r for r in rows if r.met is not None and r.group == connpool.OUCH_P50)
    assert f"p50 {pooled.value:,.0f} us" in connpool.conclude(rows)
    if os.path.exists(f"/proc/{os.getpid()}/task"):  # both ends' CPU per round trip, where schedstat exists
        assert pooled.extra["client_cpu_us"] > 0 and pooled.extra["server_cpu_us"] > 0
        assert "CPU per round trip: client" in pooled.note
    spinning = [r for r in rows if r.group == connpool.SPIN_P50]
    assert all(r.extra["client_cpu_us"] == 0 for r in spinning)  # a spinner's CPU time is its wall time


def test_connpool_interleaves_its_contenders_in_blocks():
    from lowlat.bench import connpool

    calls = []

    def contender(name, count):
        def setup():
            return (lambda n, hist: calls.append((name, n, hist is not None))), (lambda: calls.append((name, "closed")))
        return connpool._Contender(name, count, setup)

    connpool.interleave([contender("A", 200), contender("B", 200), contender("C", 20)], 200, 20)
    timed = [(name, n) for name, n, *recorded in calls if n != "closed" and recorded == [True]]
    assert [name for name, _ in timed] == ["A", "B", "C", "C", "B", "A", "A", "B", "C", "C", "B", "A"]
    assert sum(n for name, n in timed if name == "A") == 200 and sum(n for name, n in timed if name == "C") == 20
    assert calls[-3:] == [("A", "closed"), ("B", "closed"), ("C", "closed")]
