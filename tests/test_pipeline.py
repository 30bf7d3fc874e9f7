"""lowlat.pipeline: the tick-to-trade path end to end, on each backend and the seed's baseline.

Real components only: the exchange simulator on 127.0.0.1 (in a thread here, so a test can make it
misbehave and read what it received), real TCP, real UDP from a replayer process, a real feed-handler
process and shared-memory ring. Feeds are small; every run is bounded in time.
"""

import json
import os
import sys
from collections import Counter

import pytest

from lowlat.exchange import ExchangeSimulator
from lowlat.exchange.ouch_book import OuchExchange
from lowlat.itch import generate, generate_messages
from lowlat.net import soupbintcp as soup
from lowlat.pipeline import (STAGES, Figures, ImbalanceStrategy, Order, Pipeline, StrategyError, budget_table,
                             file_feed, read_hlog, start_replayer, synthetic_feed, UdpFeed)
from lowlat.pipeline.backends import PIPELINE_BACKENDS, path_backend
from lowlat.pipeline.cli import main
from lowlat.pipeline.gateway import WARM_GAP_NS
from lowlat.pipeline.seed import SeedBook, SeedLatencyTracker, SeedMessage, SeedMessageQueue, seed_encode_enter_order
from lowlat.pipeline.twoproc import run_two_process

from conftest import load_backend

BOOK_TYPES = set("AFECXDU")
ORDER_STAGES = ("risk", "encode", "send", "tick_to_trade", "ack")


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.c_extension) if name == "cython" else name
                        for name in PIPELINE_BACKENDS])
def path_name(request):
    """Each pipeline backend: compiled, pure, and the seed's plain-Python classes."""
    if request.param == "cython":
        if request.config.getoption("--no-c-extensions"):
            pytest.skip("--no-c-extensions")
        for concept in ("lowlat", "lowlat.itch", "lowlat.book", "lowlat.risk", "lowlat.ouch"):
            load_backend("cython", concept)
    return request.param


@pytest.fixture
def exchange():
    with ExchangeSimulator(application=OuchExchange()) as simulator:
        yield simulator


class Recording:
    """Wrap a strategy: remember every order it emits (and optionally fail or act at a call)."""

    def __init__(self, inner=None, *, raise_at=None, error=RuntimeError("strategy blew up"), on_order=None):
        self.inner = inner if inner is not None else ImbalanceStrategy(0.6)
        self.emitted = []
        self.calls = 0
        self.raise_at = raise_at
        self.error = error
        self.on_order = on_order

    def __call__(self, book, instrument):
        self.calls += 1
        if self.raise_at is not None and self.calls == self.raise_at:
            raise self.error
        order = self.inner(book, instrument)
        if order is not None:
            self.emitted.append(order)
            if self.on_order is not None:
                self.on_order(len(self.emitted))
        return order


def entered_tokens(simulator):
    """Order tokens of every Enter Order the simulator received, in arrival order."""
    tokens = []
    for received in list(simulator.received):
        event = received.event
        if isinstance(event, soup.UnsequencedData) and event.payload[:1] == b"O":
            tokens.append(event.payload[1:15].decode("ascii").strip())
    return tokens


def book_message_count(count, seed=1):
    return sum(1 for message in generate_messages(count, seed=seed) if chr(message[0]) in BOOK_TYPES)


def check_counts_add_up(figures, emitted):
    counts, histograms = figures.counts, figures.histograms
    assert histograms["decode"].count == counts["messages"]
    assert histograms["book"].count == counts["book_updates"] == histograms["signal"].count
    assert counts.get("orders", 0) == len(emitted)
    checked = len(emitted) - counts.get("unknown_instrument", 0)
    assert histograms["risk"].count == checked
    attempted = checked - counts.get("risk_rejected", 0)
    assert counts["sent"] + counts["send_failed"] == attempted
    assert histograms["encode"].count == histograms["software"].count == attempted
    for name in ("send", "tick_to_trade"):
        assert histograms[name].count == counts["sent"], name
    # A failed send stays pending: its bytes may have left, so it is never assumed lost nor resent.
    assert counts["acknowledged"] + counts["unacknowledged"] == attempted


def test_one_process_every_order_reaches_the_exchange_once_and_is_acknowledged(path_name, exchange):
    strategy = Recording()
    pipeline = Pipeline(path_name, strategy, exchange=exchange.address)
    figures = pipeline.run(synthetic_feed(6000, seed=1))
    assert figures.stopped_by == ""
    assert figures.counts["messages"] == 6000
    assert figures.counts["book_updates"] == book_message_count(6000)
    assert strategy.emitted, "the example strategy sent nothing on 6,000 messages"
    check_counts_add_up(figures, strategy.emitted)
    assert figures.counts["unacknowledged"] == 0
    assert figures.counts["acknowledged"] == figures.counts["sent"] == len(strategy.emitted)
    assert figures.histograms["ack"].count == figures.counts["sent"]
    tokens = entered_tokens(exchange)
    assert len(tokens) == len(set(tokens)) == figures.counts["sent"]
    assert sorted(tokens) == sorted(pipeline.gateway.acknowledged_tokens)
    assert figures.counts["duplicate_answers"] == 0
    # The IOC orders met an empty book at the exchange: accepted, then canceled ("I").
    assert figures.counts["accepted"] == figures.counts["sent"]
    table = budget_table(figures)
    for stage in STAGES:
        if stage.name != "hop":
            assert stage.label in table


def _order_bodies(simulator):
    """Every Enter Order the simulator received, without its token (runs name their tokens apart)."""
    return [received.event.payload[15:] for received in list(simulator.received)
            if isinstance(received.event, soup.UnsequencedData) and received.event.payload[:1] == b"O"]


def test_keeping_the_order_path_warm_changes_nothing_but_the_caches(path_name):
    """warm_every=1 runs the risk preview and the encoder after every message: the orders sent and
    the risk rejections must be those of a run that never warms (a preview that counted an order,
    or an encode left in the packet, would show)."""
    # $20,000 an order: the dearer instruments are refused; $5M open at once: more than every order
    # of the run together (~160 of them), however late the exchange's cancels come back, but a
    # preview that counted its order open would exceed it within a few hundred messages
    limits = {"max_order_notional": 200_000_000, "max_gross_exposure": 50_000_000_000}
    results = []
    for warm_every in (0, 1):
        with ExchangeSimulator(application=OuchExchange()) as simulator:
            strategy = Recording()
            pipeline = Pipeline(path_name, strategy, exchange=simulator.address, risk_limits=limits,
                                warm_every=warm_every)
            warmed = []
            preview = pipeline._risk_preview
            pipeline._risk_preview = lambda *args: warmed.append(args) or preview(*args)
            figures = pipeline.run(synthetic_feed(5000, seed=4))
            counts = {k: figures.counts.get(k, 0) for k in ("orders", "sent", "risk_rejected", "acknowledged")}
            heartbeats = sum(isinstance(received.event, soup.ClientHeartbeat) for received in list(simulator.received))
            results.append((counts, _order_bodies(simulator), len(warmed), pipeline.gateway.warm_sends, heartbeats))
    (cold_counts, cold_orders, cold_warmed, cold_beats, cold_heard), (warm_counts, warm_orders, warm_warmed,
                                                                      warm_beats, warm_heard) = results
    # The kernel's half: heartbeats on the session, each one received whole by the exchange (a torn
    # packet would have ended the session), at most one per WARM_GAP_NS however often the path warms
    # (fewer here: this simulator sleeps, so each costs a wake-up and the gap backs off to 10 ms).
    assert cold_beats == cold_heard == 0
    assert 5 <= warm_beats == warm_heard <= 1 + figures.elapsed_s * 1e9 / WARM_GAP_NS
    assert cold_counts["risk_rejected"] > 0 and cold_counts["sent"] > 0, cold_counts
    assert warm_counts == cold_counts
    assert warm_orders == cold_orders
    assert cold_warmed == 0
    assert warm_warmed > 1000 if path_name != "seed" else warm_warmed > 0


@pytest.mark.parametrize("costly", [False, True])
def test_warm_up_heartbeats_keep_their_gap_and_back_off_when_they_cost_a_wake_up(exchange, monkeypatch, costly):
    """Called without pause for 60 ms: a heartbeat per WARM_GAP_NS at most when none counts as costly
    (the threshold set out of reach); when every one does (set to 0 ns: as a send that woke a sleeping
    peer), the gap doubles each time up to WARM_GAP_MAX_NS, so a handful go out. (This simulator sleeps
    in its selector: with the real threshold its wake-ups back the heartbeats off too.) Every one
    reaches the exchange whole."""
    from lowlat.pipeline import gateway as gateway_module

    monkeypatch.setattr(gateway_module, "WARM_COSTLY_NS", 0 if costly else 10**12)
    backend = path_backend("python")
    gateway = gateway_module.OrderGateway(exchange.address, backend.ouch, backend.make_recorder("ack"),
                                          backend.now_ns, username="WARMUP")
    gateway.connect()
    try:
        start = backend.now_ns()
        while backend.now_ns() - start < 60_000_000:
            gateway.warm()
        elapsed = backend.now_ns() - start
        gateway.poll()
    finally:
        gateway.close()
    heard = sum(isinstance(received.event, soup.ClientHeartbeat) for received in list(exchange.received))
    assert heard == gateway.warm_sends
    if costly:  # gaps 0.1, 0.2, 0.4 ... 6.4 ms, then 10 ms: 8 in the first 12.7 ms, one per 10 ms after
        assert 8 <= gateway.warm_sends <= 8 + elapsed // gateway_module.WARM_GAP_MAX_NS
    else:
        assert 50 < gateway.warm_sends <= 1 + elapsed // gateway_module.WARM_GAP_NS


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_warm_every_is_checked(value, error):
    with pytest.raises(error, match="warm_every"):
        Pipeline("python", exchange=("127.0.0.1", 9), warm_every=value)


def test_the_backends_agree_on_what_the_strategy_sees(exchange):
    """Same feed, same strategy: the same orders on every backend that is built."""
    emitted = {}
    for name in PIPELINE_BACKENDS:
        try:
            path_backend(name)
        except ImportError:
            continue
        strategy = Recording()
        Pipeline(name, strategy, exchange=exchange.address).run(synthetic_feed(4000, seed=3))
        emitted[name] = strategy.emitted
    first = next(iter(emitted.values()))
    assert first
    for name, orders in emitted.items():
        assert orders == first, name


def test_two_process_layout_loses_nothing_under_a_burst_larger_than_the_ring(path_name, exchange):
    import time

    def slow_start(book, instrument, inner=ImbalanceStrategy(0.6), state={"calls": 0}):
        state["calls"] += 1
        if state["calls"] == 1:
            time.sleep(0.3)  # the feed handler fills the 64-record ring meanwhile and must wait
        return inner(book, instrument)

    strategy = Recording(slow_start)
    figures = run_two_process(path_name, strategy, exchange=exchange.address, messages=3000, capacity=64)
    counts = figures.counts
    assert figures.stopped_by == ""
    assert counts["messages"] == 3000
    assert counts["published"] == counts["received"] == counts["book_updates"] == book_message_count(3000)
    assert counts.get("dropped", 0) == 0
    assert counts["back_pressure_waits"] > 0
    assert figures.histograms["hop"].count == counts["received"]
    check_counts_add_up(figures, strategy.emitted)
    assert counts["unacknowledged"] == 0
    tokens = entered_tokens(exchange)
    assert len(tokens) == len(set(tokens)) == counts["sent"] == len(strategy.emitted)


def test_a_raising_strategy_stops_the_run_with_its_traceback_and_the_figures(path_name, exchange):
    strategy = Recording(raise_at=500, error=ZeroDivisionError("signal divided by zero"))
    pipeline = Pipeline(path_name, strategy, exchange=exchange.address)
    with pytest.raises(StrategyError) as caught:
        pipeline.run(synthetic_feed(5000))
    error = caught.value
    assert "ZeroDivisionError: signal divided by zero" in error.traceback_text
    figures = error.figures
    assert figures.stopped_by == "strategy error"
    assert figures.histograms["signal"].count == 499
    assert 500 <= figures.counts["messages"] < 5000
    assert not pipeline.gateway.alive  # the session was closed, nothing left running


def test_two_process_strategy_error_stops_both_processes(exchange):
    strategy = Recording(raise_at=200)
    with pytest.raises(StrategyError) as caught:
        run_two_process("python", strategy, exchange=exchange.address, messages=20000, capacity=128)
    figures = caught.value.figures
    assert figures.stopped_by == "strategy error"
    assert figures.counts["received"] == 200
    # The feed handler saw the stop and reported back (it may have run ahead by up to a ring's worth).
    assert 200 <= figures.counts["published"] <= 200 + 128 + 4096
    assert not any("feed handler" in note for note in figures.notes), figures.notes


def test_ctrl_c_ends_the_run_with_the_figures_so_far(exchange):
    strategy = Recording(raise_at=300, error=KeyboardInterrupt())
    figures = Pipeline("python", strategy, exchange=exchange.address).run(synthetic_feed(5000))
    assert figures.stopped_by == "interrupt"
    assert figures.histograms["signal"].count == 299
    assert "stopped early: interrupt" in budget_table(figures)


def test_the_exchange_dropping_the_session_ends_the_run_with_the_unacknowledged_orders(path_name, exchange):
    pipeline = None

    def drop(emitted):
        if emitted == 2:
            exchange.misbehave(ack_delay=5.0)  # answers held: the orders after this stay unacknowledged
        if emitted == 4:
            exchange.disconnect(pipeline.gateway.connection.client.username)

    strategy = Recording(ImbalanceStrategy(0.5), on_order=drop)
    pipeline = Pipeline(path_name, strategy, exchange=exchange.address)
    figures = pipeline.run(synthetic_feed(20000), drain_timeout=0.5)
    counts = figures.counts
    assert figures.stopped_by.startswith("connection lost"), figures.stopped_by
    assert counts["messages"] < 20000
    assert counts["unacknowledged"] >= 1
    assert counts["acknowledged"] + counts["unacknowledged"] == counts["sent"] + counts["send_failed"]
    check_counts_add_up(figures, strategy.emitted)
    assert any("never acknowledged" in note for note in figures.notes)
    assert len(set(entered_tokens(exchange))) == len(entered_tokens(exchange))


def test_a_send_that_fails_is_counted_in_every_stage_before_it(path_name, exchange):
    """The order whose send raises still went through risk and encoding: their histograms count it."""
    import socket

    pipeline = None

    def break_the_socket(emitted):
        if emitted == 3:  # before the third order's send: its send fails with EPIPE
            pipeline.gateway.connection.transport.sock.shutdown(socket.SHUT_WR)

    strategy = Recording(ImbalanceStrategy(0.5), on_order=break_the_socket)
    pipeline = Pipeline(path_name, strategy, exchange=exchange.address)
    figures = pipeline.run(synthetic_feed(20000), drain_timeout=0.5)
    assert figures.stopped_by.startswith("connection lost"), figures.stopped_by
    assert figures.counts["send_failed"] == 1 and figures.counts["sent"] == 2
    check_counts_add_up(figures, strategy.emitted)


def test_reconnect_resumes_the_session_and_the_replayed_answers_clear_the_orders(exchange):
    pipeline = None

    def drop(emitted):
        if emitted == 3:
            exchange.disconnect(pipeline.gateway.connection.client.username)

    strategy = Recording(ImbalanceStrategy(0.5), on_order=drop)
    pipeline = Pipeline("python", strategy, exchange=exchange.address, reconnect=True)
    figures = pipeline.run(synthetic_feed(8000))
    counts = figures.counts
    assert figures.stopped_by == ""
    assert counts["reconnects"] >= 1
    assert counts["messages"] == 8000
    tokens = entered_tokens(exchange)
    assert len(tokens) == len(set(tokens))
    # Every order whose bytes reached the exchange was answered exactly once, across the reconnect.
    assert sorted(pipeline.gateway.acknowledged_tokens) == sorted(tokens)
    assert counts["duplicate_answers"] == 0
    check_counts_add_up(figures, strategy.emitted)


def test_udp_feed_recovers_gaps_and_counts_corrupt_packets(exchange):
    pipeline = Pipeline("python", Recording(), exchange=exchange.address, feed_name="udp")
    feed = UdpFeed(counts=pipeline.figures.counts, idle_timeout=5.0)
    replayer = start_replayer(feed.address, 2000, rate=50_000, per_packet=8, drop=(3,), corrupt=(5,), linger=0.2)
    try:
        figures = pipeline.run(feed)
    finally:
        feed.close()
        replayer.wait(20)
    counts = figures.counts
    assert counts["gaps"] >= 1 and counts["gap_messages"] >= 8
    assert counts["recovered"] == counts["gap_messages"] and "lost" not in counts  # requested and answered
    assert counts["corrupt"] == 1
    # Every message arrived and was processed, the dropped packet's after a retransmission request,
    # except the corrupt packet's.
    assert counts["messages"] + 8 == 2000
    assert figures.histograms["decode"].count == counts["messages"]


def test_file_feed_with_a_cut_short_tail_counts_it_and_goes_on(tmp_path, exchange):
    path = tmp_path / "day.itch"
    data = generate(1500, seed=2)
    path.write_bytes(data + data[:30])  # a whole message plus a cut one
    figures = Pipeline("python", exchange=exchange.address).run(file_feed(str(path)))
    assert figures.counts["corrupt"] == 1
    assert figures.counts["messages"] == 1501
    limited = Pipeline("python", exchange=exchange.address).run(file_feed(str(path), messages=700))
    assert limited.counts["messages"] == 700 and "corrupt" not in limited.counts


def test_a_bad_length_prefix_is_counted_with_its_offset_and_skipped(exchange, caplog):
    data = bytearray(generate(200, seed=4))
    length = (data[0] << 8) | data[1]
    second = 2 + length
    data[second : second + 2] = (5).to_bytes(2, "big")  # disagrees with the message's type
    figures = Pipeline("python", exchange=exchange.address).run([(bytes(data), 0, len(data), None)])
    assert figures.counts["corrupt"] == 1
    assert figures.counts["messages"] == 1
    assert f"byte offset {second + 2}" in caplog.text


def test_cli_writes_json_and_an_hdrhistogram_log(tmp_path, capsys):
    json_path, hlog_path = tmp_path / "run.json", tmp_path / "run.hlog"
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    status = main(["--backend", "python", "--messages", "3000", "--json", str(json_path), "--hlog", str(hlog_path)])
    assert status == 0
    if before is not None:
        assert os.sched_getaffinity(0) == before  # the CPU pinning of the run is undone
    out = capsys.readouterr().out
    assert "tick to trade" in out and "throughput" in out
    document = json.loads(json_path.read_text())
    assert document["counts"]["messages"] == 3000
    stages = {row["stage"]: row for row in document["stages"]}
    assert stages["decode"]["count"] == 3000
    assert stages["decode"]["within"] in (True, False)
    histogram_class = path_backend("python").histogram_class
    logged = read_hlog(str(hlog_path), histogram_class)
    assert logged["decode"].count == 3000
    assert logged["tick_to_trade"].count == stages["tick_to_trade"]["count"]
    hdrh_log = pytest.importorskip("hdrh.log")  # HdrHistogram_py's own log reader reads the file
    from hdrh.histogram import HdrHistogram

    reader = hdrh_log.HistogramLogReader(str(hlog_path), HdrHistogram(1, 3_600_000_000_000, 3))
    tags = {}
    interval = reader.get_next_interval_histogram()
    while interval is not None:
        tags[interval.get_tag()] = interval.get_total_count()
        interval = reader.get_next_interval_histogram()
    assert tags["decode"] == 3000 and tags["ack"] == stages["ack"]["count"]


def test_cli_against_a_spinning_simulator_with_the_warm_up_on(tmp_path, capsys):
    json_path = tmp_path / "run.json"
    status = main(["--backend", "python", "--messages", "4000", "--exchange-busy-poll", "--warm-every", "8",
                   "--json", str(json_path)])
    assert status == 0
    counts = json.loads(json_path.read_text())["counts"]
    assert counts["messages"] == 4000
    assert counts["sent"] > 0 and counts["acknowledged"] == counts["sent"] and counts["unacknowledged"] == 0
    capsys.readouterr()


@pytest.mark.parametrize("option, value", [("--warm-every", "-1"), ("--warm-every", "x")])
def test_cli_refuses_a_bad_warm_every(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([option, value])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_cli_refuses_unwritable_outputs_before_any_work(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "dir" / "run.json"
    assert main(["--json", str(missing)]) == 2
    assert "--json" in capsys.readouterr().err
    assert main(["--feed", str(tmp_path / "absent.itch")]) == 2
    assert main(["--hlog", str(tmp_path)]) == 2


def test_cli_strategy_error_exit_status(monkeypatch, capsys):
    import lowlat.pipeline.strategy as strategy_module

    class Broken(strategy_module.ImbalanceStrategy):
        def __call__(self, book, instrument):
            raise ValueError("broken strategy")

    monkeypatch.setattr(strategy_module, "ImbalanceStrategy", Broken)
    assert main(["--backend", "python", "--messages", "2000"]) == 1
    captured = capsys.readouterr()
    assert "ValueError: broken strategy" in captured.err
    assert "stopped early: strategy error" in captured.out


def test_budget_marks_within_and_over():
    histogram_class = path_backend("python").histogram_class
    figures = Figures("python", "one", "synthetic")
    fast, slow = histogram_class(), histogram_class()
    for _ in range(1000):
        fast.record(500)
        slow.record(3000)
    figures.histograms.update(decode=fast, risk=slow, book=fast)
    rows = {row["stage"]: row for row in figures.rows()}
    assert rows["decode"]["within"] is True  # 0.5 us against < 1 us
    assert rows["risk"]["within"] is False  # 3 us against < 2 us
    assert rows["book"]["within"] is None  # the seed gives the book no target
    table = budget_table(figures)
    assert "within" in table and "OVER" in table
    assert "feed:" not in table
    figures.counts.update(gaps=2, gap_messages=5, requested=3, recovered=4, lost=1)
    assert "feed: gaps 2, gap_messages 5, requested 3, recovered 4, lost 1" in budget_table(figures)


def test_seed_baseline_agrees_with_the_project_book_and_decoder():
    book_module = load_backend("python", "lowlat.book")
    itch_module = load_backend("python", "lowlat.itch")
    reference, seed_book = book_module.Book(), SeedBook()
    record, seed_record = itch_module.Message(), SeedMessage()
    touched = set()
    for raw in generate_messages(5000, seed=5):
        seed_record.parse(raw, 0)
        record.parse(raw, 0)
        assert seed_record.fields == record.to_dict()
        if reference.apply(raw):
            assert seed_book.apply(raw, 0)
            touched.add(record.stock_locate)
            locate = record.stock_locate
            assert seed_book.best_bid(locate) == reference.best_bid(locate)
            assert seed_book.best_ask(locate) == reference.best_ask(locate)
    assert len(touched) > 5


def test_seed_classes_behave_as_the_lesson_builds_them():
    queue = SeedMessageQueue(4)  # a power of two with one slot kept empty: holds 3
    assert [queue.enqueue(i) for i in range(5)] == [True, True, True, False, False]
    assert queue.stats["drops"] == 2
    sequence, message, latency = queue.dequeue()
    assert (sequence, message) == (0, 0) and latency >= 0
    tracker = SeedLatencyTracker()
    for value in range(1, 101):
        tracker.record(value)
    assert tracker.percentile(50) == 51 and tracker.percentile(99) == 100
    ouch_module = load_backend("python", "lowlat.ouch")
    packet = seed_encode_enter_order("TOKEN1", "B", 100, "AAPL", 1_234_500)
    expected = bytearray(49)
    ouch_module.encode_enter_order(expected, 0, "TOKEN1", "B", 100, "AAPL", 1_234_500, 0)
    assert packet == b"\x00\x32U" + bytes(expected)


def test_imbalance_strategy_fires_once_per_crossing():
    class Book:
        def __init__(self):
            self.bid, self.ask = (100, 900, 1), (101, 100, 1)

        def best_bid(self, locate):
            return self.bid

        def best_ask(self, locate):
            return self.ask

    book, strategy = Book(), ImbalanceStrategy(0.7, 50)
    assert strategy(book, 1) == Order(1, "B", 50, 101)
    assert strategy(book, 1) is None  # still leaning: not re-armed
    book.bid = (100, 500, 1)
    book.ask = (101, 500, 1)
    assert strategy(book, 1) is None  # back inside: re-armed
    book.ask = (101, 9000, 1)
    assert strategy(book, 1) == Order(1, "S", 50, 100)
    book.ask = None
    assert strategy(book, 2) is None
    with pytest.raises(ValueError, match="threshold"):
        ImbalanceStrategy(1.5)


def test_duration_ends_a_paced_run(capsys):
    assert main(["--backend", "python", "--messages", "100000", "--rate", "20000", "--duration", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "stopped early: duration" in out
    messages = int(out.split(" messages, ")[0].rsplit("(", 1)[1].replace(",", ""))
    assert 4096 <= messages < 100000


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_prints_the_figures_so_far():
    import signal
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from lowlat.pipeline.cli import main; sys.exit(main())",
         "--backend", "python", "--messages", "200000", "--rate", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stderr.readline()  # the first progress line: the feed loop is running
        assert line.startswith("["), line
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "stopped early: interrupt" in out
    assert "tick to trade" in out and "throughput" in out


def test_bench_section_runs_and_leaves_the_cpu_placement_alone():
    import io

    from lowlat.bench import budget
    from lowlat.bench._harness import Progress

    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    rows = budget.measure(True, Progress(budget.STEPS, io.StringIO()), messages=6000)
    if before is not None:
        assert os.sched_getaffinity(0) == before
    groups = Counter(row.group for row in rows)
    # three backends against a spinning simulator, the floor of send, the compiled (or pure) one against a sleeping
    # one, two processes, sustained rate
    assert len(groups) == 7, groups
    judged = [row for row in rows if row.target]
    if any("(cython)" in group for group in groups):  # the compiled run against the spinning simulator
        spinning = [row for row in judged if "(cython)" in row.group]
        assert sorted(row.label.rsplit(" ", 1)[1] for row in spinning) == ["p50", "p99"]
        from lowlat.pipeline.exchange import split_cpus

        how = budget.SPINNING if split_cpus() is not None else budget.SLEEPING  # one CPU: nothing spins
        assert all(how in row.group for row in spinning)
    labels = [row.label for row in rows]
    assert any(label.startswith("feed handler -> strategy") for label in labels)
    assert [row.label for row in judged if "two processes" in row.group] == ["feed handler -> strategy (shm ring) p50"]
    for row in rows:
        assert row.value >= 0, row
    (sustained,) = [row for row in rows if row.group == "sustained feed rate, one process"]
    assert "/s lag" in sustained.note  # the rates it tried, each with its end-of-run lag
