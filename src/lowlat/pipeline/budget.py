"""The seed's latency budget, the figures a run collects against it, and how they are shown.

Plain Python: nothing here is on the hot path. A run records each stage into its own recorder
(``lowlat.LatencyHistogram`` for the compiled and pure backends, the seed's list-and-sort tracker
for the seed backend); :class:`Figures` holds them with the run's counters and turns them into the
budget table, a JSON document and an HdrHistogram log.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stage", "STAGES", "STAGE_NAMES", "Figures", "budget_table", "write_hlog", "read_hlog"]


@dataclass(frozen=True)
class Stage:
    """One row of the budget: ``name`` (the recorder's key), what it spans, the seed's target."""

    name: str
    label: str
    target_ns: int | None  # the seed's p99 target; None: the seed gives none (shown, not judged)
    target_label: str = ""


#: The rows of the budget table in path order. The seed's budget (day 4, "Latency Budget Example"):
#: market-data parsing < 1 us, signal < 5 us, risk < 2 us, order encoding < 1 us, network < 10 us,
#: tick to trade < 20 us. The book update, the two-process hop and the exchange's round trip have
#: no line in the seed's table; they are measured and shown without a mark (the hop has the
#: issue's own target, p50 <= 1 us). "software path" is tick to trade without the send call: the
#: process's own work, against the sum of the seed's software lines (1 + 5 + 2 + 1 us).
STAGES: tuple[Stage, ...] = (
    Stage("hop", "feed handler -> strategy (shm ring)", 1_000, "p50 < 1 us"),
    Stage("decode", "market-data parsing (decode)", 1_000, "< 1 us"),
    Stage("book", "book update", None),
    Stage("signal", "signal (strategy callable)", 5_000, "< 5 us"),
    Stage("risk", "risk check", 2_000, "< 2 us"),
    Stage("encode", "order encoding (OUCH)", 1_000, "< 1 us"),
    Stage("software", "software path (arrival -> bytes ready)", 9_000, "< 9 us"),
    Stage("send", "network (SoupBinTCP send)", 10_000, "< 10 us"),
    Stage("tick_to_trade", "tick to trade (arrival -> send returned)", 20_000, "< 20 us"),
    Stage("ack", "exchange acknowledgement round trip", None),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
_PERCENTILES = (50.0, 99.0, 99.9)


def _us(ns: float | None) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1000:.2f}" if ns < 100_000 else f"{ns / 1000:.0f}"


@dataclass
class Figures:
    """What one run measured: per-stage histograms, counters, and the run's description.

    ``histograms`` maps a stage name to a ``LatencyHistogram`` (only stages the layout has);
    ``counts`` holds the run's counters (messages, book updates, orders, acknowledgements, drops,
    gaps, corrupt packets...); ``elapsed_s`` is the wall time of the feed loop.
    """

    backend: str
    layout: str
    feed: str
    histograms: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    started_at: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)
    stopped_by: str = ""  # "" (the feed ended), "interrupt", "strategy error", "connection lost", "duration"

    def count(self, name: str, increment: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + increment

    @property
    def throughput(self) -> float:
        """Feed messages processed per second of the feed loop."""
        messages = self.counts.get("messages", 0)
        return messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def stage_row(self, stage: Stage) -> dict[str, Any] | None:
        """The figures of one stage (None when the run has no such stage or recorded nothing)."""
        histogram = self.histograms.get(stage.name)
        if histogram is None or histogram.count == 0:
            return None
        p50, p99, p999 = (histogram.percentile(p) for p in _PERCENTILES)
        row: dict[str, Any] = {"stage": stage.name, "label": stage.label, "count": histogram.count,
                               "p50_ns": p50, "p99_ns": p99, "p99_9_ns": p999, "max_ns": histogram.max,
                               "target_ns": stage.target_ns, "within": None}
        if stage.target_ns is not None:
            judged = p50 if stage.name == "hop" else p99
            row["within"] = judged <= stage.target_ns
        return row

    def rows(self) -> list[dict[str, Any]]:
        return [row for row in (self.stage_row(stage) for stage in STAGES) if row is not None]

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "layout": self.layout, "feed": self.feed, "elapsed_s": self.elapsed_s,
                "throughput_msg_per_s": self.throughput, "counts": dict(self.counts), "stages": self.rows(),
                "stopped_by": self.stopped_by, "notes": list(self.notes)}

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.as_dict(), out, indent=2)
            out.write("\n")


#: The feed's counts the table shows when nonzero (MoldUDP64 gaps and their recovery, corruption, back pressure).
_FEED_COUNTS = ("corrupt", "gaps", "gap_messages", "requested", "recovered", "lost", "dropped", "duplicates",
                "back_pressure_waits")


def budget_table(figures: Figures) -> str:
    """The budget table as text: each stage's p50/p99/p99.9 against the seed's target, then throughput."""
    out = io.StringIO()
    out.write(f"tick to trade -- backend {figures.backend}, layout {figures.layout}, feed {figures.feed}\n")
    header = f"{'stage':<44} {'count':>9} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'target':>11}  mark"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for row in figures.rows():
        stage = next(s for s in STAGES if s.name == row["stage"])
        if row["within"] is None:
            mark = ""
        else:
            mark = "within" if row["within"] else "OVER"
        out.write(f"{row['label']:<44} {row['count']:>9,} {_us(row['p50_ns']):>8} {_us(row['p99_ns']):>8} "
                  f"{_us(row['p99_9_ns']):>9} {stage.target_label or '-':>11}  {mark}\n")
    counts = figures.counts
    out.write(f"\nthroughput: {figures.throughput:,.0f} messages/s over {figures.elapsed_s:.3f} s "
              f"({counts.get('messages', 0):,} messages, {counts.get('book_updates', 0):,} book updates)\n")
    order_keys = ("orders", "risk_rejected", "sent", "send_failed", "acknowledged", "accepted", "rejected", "unacknowledged")
    out.write("orders: " + ", ".join(f"{key} {counts.get(key, 0):,}" for key in order_keys) + "\n")
    faults = {key: value for key, value in counts.items() if key in _FEED_COUNTS and value}
    if faults:
        out.write("feed: " + ", ".join(f"{key} {value:,}" for key, value in faults.items()) + "\n")
    out.write("targets are the seed's p99 budget (the hop: the issue's p50); rows without one are shown unjudged\n")
    if figures.stopped_by:
        out.write(f"stopped early: {figures.stopped_by}\n")
    for note in figures.notes:
        out.write(note + "\n")
    return out.getvalue()


def write_hlog(path: str, figures: Figures) -> None:
    """Write every stage histogram in HdrHistogram's log format (one interval per stage, tagged).

    ``HistogramLogProcessor`` and the ``hdrhistogram`` package read it: a ``#[StartTime: ...]``
    and ``"StartTimestamp",...`` header, then ``Tag=<stage>,start,length,max,<compressed V2>`` per
    stage, values in nanoseconds (``max`` in the log's unit, milliseconds by its convention).
    """
    start = figures.started_at
    with open(path, "w", encoding="ascii") as out:
        out.write("#[Histogram log format version 1.3]\n")
        out.write(f"#[StartTime: {start:.3f} (seconds since epoch), "
                  f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime(start))}]\n")
        out.write(f"#[BaseTime: {start:.3f} (seconds since epoch)]\n")
        out.write("\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n")
        for stage in STAGES:
            histogram = figures.histograms.get(stage.name)
            if histogram is None or histogram.count == 0:
                continue
            out.write(f"Tag={stage.name},0.000,{figures.elapsed_s:.3f},{histogram.max / 1e6:.3f},{histogram.encode()}\n")


def read_hlog(path: str, histogram_class: Any) -> dict[str, Any]:
    """Read back a log :func:`write_hlog` wrote: ``{tag: histogram}`` (``histogram_class.decode``)."""
    histograms = {}
    with open(path, encoding="ascii") as source:
        for line in source:
            if not line.startswith("Tag="):
                continue
            tag, _, _, _, payload = line.strip().split(",", 4)
            base64.b64decode(payload, validate=True)  # a corrupt line fails here, naming nothing else
            histograms[tag[4:]] = histogram_class.decode(payload)
    return histograms
