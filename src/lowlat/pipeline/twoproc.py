"""The two-process layout: a feed-handler process, a ``ShmRecordRing``, the strategy process.

As trading firms split it: the **feed handler** (a child process) decodes the feed and keeps the
L3 book; after each book update it publishes the instrument's top of book as one fixed-size
record (:data:`UPDATE_DTYPE`: the message's arrival stamp, the publish stamp, a sequence number,
the instrument, its symbol, best bid and offer) into a shared-memory ring. The **strategy
process** (this one) reads the records, calls the strategy with a :class:`TopOfBook` view (the
levels the feed handler published: L1, not the full book), and holds the order session: risk,
encode, send and acknowledgements are the one-process path's own code (:class:`Pipeline`).

**Back pressure, never drops.** When the ring is full the feed handler spins until the strategy
process frees space (``back_pressure_waits`` counts the pushes that had to wait); nothing is
dropped, so a burst larger than the ring costs latency, which the ``hop`` histogram shows. The
strategy process checks the sequence numbers anyway: a hole would be counted in ``dropped``.
The ``hop`` stage is publish stamp -> record read by the strategy process (both stamps on
CLOCK_MONOTONIC, which the two processes share); tick to trade still starts at the message's
arrival in the feed handler.

**What the hop measures.** The ring writes the publish stamp (``push(update, "published")``) as
its last write before the release store, so the tuple's conversion into a record is not in it.
The hop ends when the strategy process has the record: for the first record of a ``read_into``
the moment the read returned, for the later ones of the same read the moment their turn came
after the earlier ones were handled (they waited that long too). Idle, the strategy process
waits inside ``read_into(batch, timeout)`` -- a spin in C for the compiled ring -- and does its
upkeep between spins, so a record is not left waiting for a Python loop's turn. Fed faster than
the strategy process handles updates, records queue and the hop is mostly that queueing; paced
below its capacity, it is the transfer. The run says which in a note (``hop: ...``): the feed's
pace, the updates offered and the strategy process's measured capacity per second, and the mean
number of updates per ring read (1: each record was read alone; ``counts["ring_reads"]`` counts
the reads).
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from typing import Any, Callable

import numpy as np

from .._backend import load
from .backends import path_backend
from .budget import Figures
from .core import _NEVER, WARM_EVERY, Pipeline, RunEnding, StrategyError
from .exchange import pin_process

__all__ = ["UPDATE_DTYPE", "TopOfBook", "run_two_process"]

#: One book update as the feed handler publishes it. Prices are ITCH integers; 0 shares: no level.
UPDATE_DTYPE = np.dtype([("arrival", "i8"), ("published", "i8"), ("sequence", "i8"), ("instrument", "i4"),
                         ("stock", "S8"), ("bid_price", "i8"), ("bid_shares", "i8"), ("ask_price", "i8"),
                         ("ask_shares", "i8")])
_END = -1  # the sequence of the last record: the feed has ended
_IDLE_SPIN_S = 200e-6  # one idle read_into spins this long for the next record before the upkeep runs


class TopOfBook:
    """The book as the strategy process sees it: the last published best bid and offer per instrument.

    ``best_bid(instrument)`` / ``best_ask(instrument)`` return ``(price, shares, 0)`` or None (the
    order count is not published), like :class:`lowlat.book.Book`'s.
    """

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids: dict[int, tuple | None] = {}
        self.asks: dict[int, tuple | None] = {}

    def best_bid(self, instrument: int):
        return self.bids.get(instrument)

    def best_ask(self, instrument: int):
        return self.asks.get(instrument)


def _ring_backend(backend: str) -> str:
    return "python" if backend == "seed" else backend


def _feed_handler(ring_name: str, backend: str, feed: str, messages: int, seed: int, rate: float | None,
                  stop: Any, results: Any) -> None:
    """The feed-handler process: decode, book, publish; then send back its histograms and counts."""
    from . import feeds

    stages = path_backend(backend)
    now_ns = stages.now_ns
    ring = load("lowlat", _ring_backend(backend)).ShmRecordRing.attach(ring_name, "producer")
    record = stages.make_record()
    parse = record.parse
    book = stages.make_book()
    apply = book.apply
    best_bid, best_ask = book.best_bid, book.best_ask
    decode_hist, book_hist = stages.make_recorder("decode"), stages.make_recorder("book")
    counts = {"messages": 0, "book_updates": 0, "corrupt": 0, "back_pressure_waits": 0}
    directory: dict[int, bytes] = {}
    push = ring.push
    sequence = 0
    error = ""
    stopped = False
    chunks = None
    try:
        # udp: this process is the receiver (its retransmission counts land in counts), and starts the replayer
        chunks = feeds.open_feed(feed, messages=messages, seed=seed, rate=rate, now_ns=now_ns, counts=counts)
        for data, offset, end, arrival in chunks:
            while offset < end and not stopped:
                length = (data[offset] << 8) | data[offset + 1] if end - offset >= 2 else 0
                body = offset + 2
                offset = body + length
                if length == 0 or offset > end:
                    counts["corrupt"] += 1
                    break
                t0 = now_ns()
                try:
                    size = parse(data, body)
                except ValueError:
                    counts["corrupt"] += 1
                    break
                if size != length:
                    counts["corrupt"] += 1
                    break
                t1 = now_ns()
                decode_hist.record(t1 - t0 if t1 > t0 else 1)
                counts["messages"] += 1
                if apply(data, body):
                    t2 = now_ns()
                    book_hist.record(t2 - t1 if t2 > t1 else 1)
                    counts["book_updates"] += 1
                    instrument = record.stock_locate
                    bid = best_bid(instrument)
                    ask = best_ask(instrument)
                    sequence += 1
                    # "published" is filled in by the ring: the last write before the record is
                    # published, after this tuple's conversion (see the module docstring).
                    update = (t0 if arrival is None else arrival, 0, sequence, instrument,
                              directory.get(instrument, b""),
                              bid[0] if bid else 0, bid[1] if bid else 0, ask[0] if ask else 0, ask[1] if ask else 0)
                    if not push(update, "published"):
                        counts["back_pressure_waits"] += 1
                        while not push(update, "published"):  # back pressure: wait for the strategy process
                            if stop.is_set():
                                stopped = True
                                break
                elif data[body] == 82:  # R: Stock Directory
                    directory[record.stock_locate] = record.stock
                if not counts["messages"] & 4095 and stop.is_set():
                    stopped = True
            if stopped:
                break
    except KeyboardInterrupt:
        error = "interrupted"
    except BaseException:  # reported to the strategy process, which prints it
        error = traceback.format_exc()
    finally:
        if chunks is not None:
            chunks.close()  # udp: stops the replayer
        counts["published"] = sequence
        end_record = (0, 0, _END, 0, b"", 0, 0, 0, 0)
        deadline = time.monotonic() + 5
        while not push(end_record, "published") and time.monotonic() < deadline and not stop.is_set():
            pass
        results.send({"counts": counts, "decode": stages.to_histogram(decode_hist).to_bytes(),
                      "book": stages.to_histogram(book_hist).to_bytes(), "error": error})
        results.close()
        ring.close()


def _cpu_wait_ns() -> int | None:
    """How long this process has waited, runnable, for a CPU (Linux ``/proc/self/schedstat``); None elsewhere."""
    try:
        with open("/proc/self/schedstat", "rb") as source:
            return int(source.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _hop_note(rate: float | None, received: int, reads: int, busy_ns: int, elapsed_s: float,
              cpu_wait_ns: int | None = None) -> str:
    """Say which hop the run measured: the transfer itself, or queueing behind earlier records."""
    per_read = received / reads if reads else 0.0
    capacity = received / (busy_ns / 1e9) if busy_ns > 0 else 0.0
    offered = received / elapsed_s if elapsed_s > 0 else 0.0
    pace = "as fast as possible" if rate is None else f"paced at {rate:,.0f} msg/s"
    if per_read < 1.1:
        what = "the transfer itself (a record is read alone)"
    elif offered >= 0.8 * capacity:
        what = ("queueing behind earlier records, not the transfer: the strategy process is the slower end; "
                "pace the feed (--rate) below its capacity to measure the transfer")
    else:
        what = ("the transfer plus queueing behind earlier records that arrived together (the feed's bursts) "
                "or while the strategy process was off its CPU (other load)")
    waited = ""
    if cpu_wait_ns is not None and elapsed_s > 0:
        waited = f"; it waited for a CPU {cpu_wait_ns / 1e9 / elapsed_s:.0%} of the run"
    return (f"hop: feed {pace}; {offered:,.0f} updates/s offered, the strategy process handles up to "
            f"{capacity:,.0f}/s{waited}; {per_read:.2f} updates per ring read: the hop row is {what}")


def run_two_process(backend: str, strategy: Callable | None = None, *, exchange: tuple[str, int],
                    messages: int = 100_000, feed: str = "synthetic", seed: int = 1, rate: float | None = None,
                    capacity: int = 4096, duration: float | None = None, reconnect: bool = False,
                    risk_limits: dict | None = None, progress: Callable[[Figures], None] | None = None,
                    feed_cpus: set[int] | None = None, warm_every: int = WARM_EVERY) -> Figures:
    """Run the two-process layout (see the module docstring) and return the merged figures.

    ``feed_cpus``: keep the feed handler on these CPUs (not the order session's; see
    :func:`lowlat.pipeline.exchange.split_cpus`). ``warm_every``: book updates between two
    warm-ups of the order path while no order is in flight, as in one process (0: never); the
    strategy process also warms it whenever it has waited idle for an update.
    A strategy exception stops both processes and is re-raised as :class:`StrategyError` with the
    figures so far; Ctrl-C and a lost session end the run with the figures so far.
    """
    pipeline = Pipeline(backend, strategy, exchange=exchange, risk_limits=risk_limits, reconnect=reconnect,
                        progress=progress, layout="two", feed_name=feed, warm_every=warm_every)
    warm_every = warm_every or _NEVER
    since_warm = 0
    stages = pipeline.stages
    figures = pipeline.figures
    counts = figures.counts
    hop = stages.make_recorder("hop")
    ring = load("lowlat", _ring_backend(stages.name)).ShmRecordRing.create(UPDATE_DTYPE, capacity, role="consumer")
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_feed_handler, name="lowlat-feed-handler",
                            args=(ring.name, stages.name, feed, messages, seed, rate, stop, sender), daemon=True)
    pipeline.gateway.connect()
    child.start()
    sender.close()
    if feed_cpus and child.pid is not None:
        pin_process(child.pid, feed_cpus)
    view = TopOfBook()
    bids, asks = view.bids, view.asks
    directory = pipeline.directory
    now_ns = stages.now_ns
    signal_record = pipeline.recorders["signal"].record
    hop_record = hop.record
    gateway = pipeline.gateway
    batch = np.zeros(256, dtype=UPDATE_DTYPE)
    read_into = ring.read_into
    expected = 1
    received = 0
    reads = 0  # reads that brought records: received / reads is the mean batch (1: nothing queued)
    busy_ns = 0  # from each read to its last record handled: what the strategy process can sustain
    ending = RunEnding(figures)
    deadline = None if duration is None else time.monotonic() + duration
    started = time.perf_counter()
    cpu_wait_before = _cpu_wait_ns()
    idle_since = None
    try:
        with ending:
            finished = False
            while not finished:
                # Idle, the wait for the next record is a spin inside read_into (in C for the compiled
                # ring), not a Python loop whose turn the record would wait out; the upkeep below runs
                # between spins. With an order in flight the session is polled between plain reads.
                pending = gateway.pending
                count = read_into(batch, None if pending else _IDLE_SPIN_S)
                if not count:
                    if pending:
                        pipeline._poll()
                    elif warm_every != _NEVER:  # idle: the warm-up costs no update anything
                        pipeline._warm()
                    if idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > 0.05:
                        if not child.is_alive() and not len(ring):
                            figures.notes.append("the feed handler exited without its end record")
                            break
                        counts["received"] = received
                        pipeline._upkeep()
                        idle_since = time.monotonic()
                        if deadline is not None and time.monotonic() >= deadline:
                            figures.stopped_by = "duration"
                            break
                    continue
                taken = read_at = now_ns()
                idle_since = None
                reads += 1
                for arrival, published, sequence, instrument, stock, bid_price, bid_shares, ask_price, ask_shares in \
                        batch[:count].tolist():
                    if sequence == _END:
                        finished = True
                        break
                    t2 = now_ns()
                    reached = read_at or t2  # the first record of a read: the read; the others: their turn
                    read_at = 0
                    hop_record(reached - published if reached > published else 1)
                    received += 1
                    if sequence != expected:
                        counts["dropped"] = counts.get("dropped", 0) + sequence - expected
                    expected = sequence + 1
                    if instrument not in directory and stock:
                        directory[instrument] = stock.decode("ascii").rstrip()
                    bids[instrument] = (bid_price, bid_shares, 0) if bid_shares else None
                    asks[instrument] = (ask_price, ask_shares, 0) if ask_shares else None
                    try:
                        order = pipeline.strategy(view, instrument)
                    except Exception as error:
                        raise StrategyError(f"the strategy raised {error!r}", traceback.format_exc()) from error
                    t3 = now_ns()
                    signal_record(t3 - t2 if t3 > t2 else 1)
                    if order is not None:
                        pipeline._send(order, arrival, t3)
                    if gateway.pending:
                        pipeline._poll()
                busy_ns += now_ns() - taken
                if not gateway.pending:  # after the read's records, so none of them waits for it
                    since_warm += count
                    if since_warm >= warm_every:
                        since_warm = 0
                        pipeline._warm()
                if received & ~4095 != (received - count) & ~4095:
                    counts["received"] = received
                    pipeline._upkeep()
                    if deadline is not None and time.monotonic() >= deadline:
                        figures.stopped_by = "duration"
                        break
    finally:
        figures.elapsed_s = time.perf_counter() - started
        cpu_wait_after = _cpu_wait_ns()
        stop.set()
        while True:  # let a feed handler waiting on a full ring see the stop and finish
            try:
                if not read_into(batch):
                    break
            except KeyboardInterrupt:
                break
        report = receiver.recv() if receiver.poll(10) else None
        child.join(10)
        if child.is_alive():
            child.terminate()
            child.join(5)
        receiver.close()
        ring.close()
        ring.unlink()
    pipeline.finish()
    histogram_class = stages.histogram_class
    figures.histograms["hop"] = stages.to_histogram(hop)
    if report is not None:
        figures.histograms["decode"] = histogram_class.from_bytes(report["decode"])
        figures.histograms["book"] = histogram_class.from_bytes(report["book"])
        for key, value in report["counts"].items():
            counts[key] = value
        if report["error"] and report["error"] != "interrupted":
            figures.notes.append("the feed handler failed:\n" + report["error"])
    else:
        figures.notes.append("the feed handler sent no figures")
    counts["received"] = received
    counts["ring_reads"] = reads
    if received:
        cpu_wait = None if cpu_wait_before is None or cpu_wait_after is None else cpu_wait_after - cpu_wait_before
        figures.notes.append(_hop_note(rate, received, reads, busy_ns, figures.elapsed_s, cpu_wait))
    return ending.result()
