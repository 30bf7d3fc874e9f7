"""The two-process layout's hop: what the ``hop`` row measures, and the note that says so.

Real processes, a real exchange simulator on 127.0.0.1, small feeds. No speed claims here (those
are in the benchmark): only that every record's publish stamp is real and the run says which hop
it measured, the transfer or queueing.
"""

from __future__ import annotations

import pytest

from lowlat.pipeline import ImbalanceStrategy, budget_table
from lowlat.pipeline.twoproc import run_two_process

from test_pipeline import book_message_count as book_updates
from test_pipeline import exchange, path_name  # noqa: F401  (fixtures: every backend; a simulator)


def hop_note(figures) -> str:
    (note,) = [note for note in figures.notes if note.startswith("hop: ")]
    return note


@pytest.mark.parametrize("rate", [None, 20_000.0], ids=["as-fast-as-possible", "paced"])
def test_every_record_carries_a_real_publish_stamp_and_the_run_names_its_hop(path_name, exchange, rate):
    figures = run_two_process(path_name, ImbalanceStrategy(0.6), exchange=exchange.address, messages=4000,
                              rate=rate, capacity=256)
    counts = figures.counts
    assert figures.stopped_by == ""
    assert counts["published"] == counts["received"] == book_updates(4000)
    assert counts.get("dropped", 0) == 0
    hop = figures.histograms["hop"]
    assert hop.count == counts["received"]
    # A record published without its stamp would read as the whole uptime of the clock; a stamp
    # taken after the read would be clipped to 1 ns everywhere.
    assert hop.max < figures.elapsed_s * 1e9 + 1e9
    assert hop.percentile(99.0) > 1
    assert 1 <= counts["ring_reads"] <= counts["received"]
    note = hop_note(figures)
    if rate is None:
        assert note.startswith("hop: feed as fast as possible;")
    else:
        assert note.startswith("hop: feed paced at 20,000 msg/s;")
    per_read = counts["received"] / counts["ring_reads"]
    assert f"{per_read:.2f} updates per ring read" in note
    if per_read < 1.1:
        assert "the transfer itself" in note
    else:
        assert "queueing" in note
    assert note in budget_table(figures)
    assert note in figures.as_dict()["notes"]


def test_a_burst_larger_than_the_ring_is_named_queueing_and_loses_nothing(exchange):
    import time

    def slow_start(book, instrument, inner=ImbalanceStrategy(0.6), state={"calls": 0}):
        state["calls"] += 1
        if state["calls"] == 1:
            time.sleep(0.3)  # the feed handler fills the ring meanwhile and must wait
        return inner(book, instrument)

    figures = run_two_process("python", slow_start, exchange=exchange.address, messages=3000, capacity=64)
    counts = figures.counts
    assert counts["back_pressure_waits"] > 0 and counts.get("dropped", 0) == 0
    assert counts["published"] == counts["received"] == book_updates(3000)
    assert counts["ring_reads"] < counts["received"]  # the backlog came out in batches
    assert "queueing behind earlier records" in hop_note(figures)


@pytest.mark.parametrize("rate, received, reads, busy_ns, elapsed_s, says", [
    (5000.0, 1000, 1000, 1_000_000, 0.2, "the transfer itself"),
    (None, 1000, 100, 1_000_000, 0.0011, "the strategy process is the slower end"),
    (20000.0, 1000, 400, 1_000_000, 0.05, "queueing behind earlier records that arrived together"),
])
def test_the_hop_note_tells_transfer_from_queueing(rate, received, reads, busy_ns, elapsed_s, says):
    from lowlat.pipeline.twoproc import _hop_note

    note = _hop_note(rate, received, reads, busy_ns, elapsed_s)
    assert says in note
    assert f"{received / reads:.2f} updates per ring read" in note
    assert f"handles up to {received / (busy_ns / 1e9):,.0f}/s" in note
    assert "waited for a CPU" not in note
    assert "it waited for a CPU 50% of the run" in _hop_note(rate, received, reads, busy_ns, elapsed_s,
                                                             int(elapsed_s * 0.5e9))


def test_the_strategy_process_keeps_the_order_path_warm_and_sends_the_same_orders(exchange):
    """The warm-up in the strategy process changes none of the orders the exchange receives."""
    from lowlat.net import soupbintcp as soup

    def bodies():
        return [received.event.payload[15:] for received in list(exchange.received)
                if isinstance(received.event, soup.UnsequencedData) and received.event.payload[:1] == b"O"]

    runs = []
    for warm_every in (0, 1):
        before = len(bodies())
        figures = run_two_process("python", ImbalanceStrategy(0.6), exchange=exchange.address, messages=3000,
                                  warm_every=warm_every)
        assert figures.stopped_by == ""
        runs.append((figures.counts, bodies()[before:]))
    (cold, cold_orders), (warm, warm_orders) = runs
    assert cold.get("warm_ups", 0) == 0 and warm["warm_ups"] > 0
    assert cold["sent"] == warm["sent"] > 0 and cold["acknowledged"] == warm["acknowledged"] == cold["sent"]
    assert warm_orders == cold_orders
