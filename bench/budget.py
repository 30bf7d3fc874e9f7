"""``lowlat bench`` section "pipeline": tick to trade against the seed's latency budget, side by side.

The whole path of :mod:`lowlat.pipeline` -- synthetic ITCH feed, decode, L3 book, the example
imbalance strategy, risk, OUCH encoding, a SoupBinTCP send to the exchange simulator (its own
process, on the other CPU) and the acknowledgement -- run once per backend: compiled, pure Python,
and the seed's plain-Python classes. Each stage's p50 and p99 come from its own histogram; the
note says the seed's target and whether p99 is within it (the hop: p50, the issue's target).

Then the two-process layout (feed-handler process -> ``ShmRecordRing`` -> strategy process) at a
paced rate, for the added hop; and the sustained rate: the highest paced feed rate the compiled
one-process path follows without falling behind its schedule (at the end of the run, behind by
less than 1% of its length, or 5 ms).
"""

from __future__ import annotations

import gc
import os

from ._harness import Progress, Row

TITLE = "Tick to trade: the seed's latency budget end to end"
SEED = "introduction, Latency Budget Example (Typical HFT System)"
SEED_SAYS = ("The seed's budget -- parsing < 1 us, signal < 5 us, risk < 2 us, encoding < 1 us, network < 10 us, "
             "tick to trade < 20 us -- is a table it never measures a system against.")
STEPS = 6

_ROWS_PER_STAGE = ("hop", "decode", "book", "signal", "risk", "encode", "software", "send", "tick_to_trade", "ack")


def _stage_rows(group: str, prefix: str, figures) -> list[Row]:
    from lowlat.pipeline.budget import STAGES

    rows = []
    targets = {stage.name: stage for stage in STAGES}
    for row in figures.rows():
        if row["stage"] not in _ROWS_PER_STAGE:
            continue
        stage = targets[row["stage"]]
        judged = "p50" if stage.name == "hop" else "p99"
        if row["within"] is None:
            note = f"{row['count']:,} samples; no target"
        else:
            note = f"{row['count']:,} samples; {judged} {'within' if row['within'] else 'OVER'} {stage.target_label}"
        for quantile, key in (("p50", "p50_ns"), ("p99", "p99_ns")):
            rows.append(Row(group, f"{prefix}{stage.label} {quantile}", row[key] / 1000, "us", note=note,
                            extra={k: row[k] for k in ("p50_ns", "p99_ns", "p99_9_ns", "count")}))
    rows.append(Row(group, f"{prefix}throughput", figures.throughput, "msg/s", higher_is_better=True,
                    note=f"{figures.counts.get('messages', 0):,} messages, {figures.counts.get('sent', 0):,} orders"))
    return rows


def _pinned(exchange):
    from lowlat.pipeline.exchange import split_cpus

    cpus = split_cpus()
    if cpus is None:
        return None
    exchange.pin(cpus[1])
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus[0])
    return before, cpus


def _lag_after(pipeline_factory, messages: int, rate: float) -> float:
    """Run the compiled one-process path on a feed paced at ``rate``; return how late (s) it ended."""
    from lowlat.pipeline.feeds import synthetic_feed

    feed = synthetic_feed(messages, seed=7, rate=rate)
    figures = pipeline_factory().run(feed)  # elapsed_s: the feed loop alone (after login, before the drain)
    return figures.elapsed_s - messages / rate


def run(quick: bool, progress: Progress) -> list[Row]:
    """Return the stage rows of each backend, the two-process hop and the sustained rate."""
    return measure(quick, progress, messages=None)


def measure(quick: bool, progress: Progress, *, messages: int | None = None) -> list[Row]:
    """``run`` with the feed's length chosen (the tests use a short one)."""
    from lowlat.pipeline import ExchangeProcess, Pipeline, path_backend, synthetic_feed
    from lowlat.pipeline.twoproc import run_two_process

    messages = messages or (60_000 if quick else 1_000_000)
    slow_messages = messages // 3 if quick else messages // 4  # the pure and seed paths take longer
    rows: list[Row] = []
    was_enabled = gc.isenabled()
    with ExchangeProcess() as exchange:
        pinned = _pinned(exchange)
        try:
            gc.disable()
            figures_by_backend = {}
            for name in ("cython", "python", "seed"):
                progress.step(f"pipeline: one process, {name}")
                try:
                    path_backend(name)
                except ImportError:
                    rows.append(Row("tick to trade, one process", f"{name}: not built", 0.0, "us", note="skipped"))
                    continue
                count = messages if name == "cython" else slow_messages
                figures = Pipeline(name, exchange=exchange.address).run(synthetic_feed(count, seed=1))
                figures_by_backend[name] = figures
                rows += _stage_rows(f"tick to trade, one process, synthetic feed as fast as possible ({name})",
                                    "", figures)
            progress.step("pipeline: two processes, shared-memory hop")
            rate = 20_000.0  # well under what the strategy process sustains: the hop, not queueing
            figures = run_two_process("cython" if "cython" in figures_by_backend else "python",
                                      exchange=exchange.address, messages=20_000 if quick else 100_000, rate=rate,
                                      feed_cpus=None if pinned is None else pinned[1][1])
            rows += _stage_rows(f"tick to trade, two processes, feed paced at {rate:,.0f} msg/s", "", figures)
            progress.step("pipeline: sustained rate")
            backend = "cython" if "cython" in figures_by_backend else "python"
            ceiling = figures_by_backend[backend].throughput if backend in figures_by_backend else 100_000.0
            sustained, tried = 0.0, []
            for fraction in (0.25, 0.5, 0.7, 0.85, 1.0):
                candidate = round(ceiling * fraction, -3)
                count = int(min(messages, candidate * (0.4 if quick else 2.0)))
                lag = _lag_after(lambda: Pipeline(backend, exchange=exchange.address), count, candidate)
                tried.append(f"{candidate:,.0f}/s lag {lag * 1000:.1f} ms")
                # Kept up: behind its schedule at the end by under 1% of the run (at least 5 ms: one
                # preemption by another process on a shared machine is a fixed lag, not growth).
                if lag < max(0.005, 0.01 * count / candidate):
                    sustained = candidate
                else:
                    break
            progress.step("pipeline: done")
            rows.append(Row("sustained feed rate, one process", f"{backend}: highest paced rate kept up with",
                            sustained, "msg/s", higher_is_better=True, note="; ".join(tried)))
        finally:
            if was_enabled:
                gc.enable()
            if pinned is not None:
                os.sched_setaffinity(0, pinned[0])
    return rows
