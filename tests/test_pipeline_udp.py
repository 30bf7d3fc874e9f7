"""MoldUDP64 retransmission and the UDP feed in the two-process layout.

Real sockets on 127.0.0.1 only: the test plays the MoldUDP64 server itself where it must control
the order of events exactly (a socket of its own, the feed iterated in a thread), and runs the
replayer process where a gap must happen on the way from one process to another. Every run is
small and bounded in time (socket timeouts, thread joins, process waits).
"""

import json
import socket
import threading

import pytest

from lowlat.itch import generate_messages
from lowlat.itch.framing import (MOLD_END_OF_SESSION, MoldRequest, decode_mold_request, encode_mold,
                                 encode_mold_request)
from lowlat.pipeline import ImbalanceStrategy
from lowlat.pipeline.cli import main
from lowlat.pipeline.feeds import UdpFeed, replayer_counts, start_replayer
from lowlat.pipeline.twoproc import run_two_process

from conftest import load_backend
from test_pipeline import Recording, book_message_count, check_counts_add_up, entered_tokens, exchange  # noqa: F401

SESSION = b"LOWLAT0001"  # the replayer's session


@pytest.fixture(params=[pytest.param("cython", marks=pytest.mark.c_extension), "python"])
def path_name(request):
    """The compiled and the pure pipeline backends."""
    if request.param == "cython":
        if request.config.getoption("--no-c-extensions"):
            pytest.skip("--no-c-extensions")
        for concept in ("lowlat", "lowlat.itch", "lowlat.book", "lowlat.risk", "lowlat.ouch"):
            load_backend("cython", concept)
    return request.param


def blocks(data, start, end):
    """The messages behind the 2-byte lengths of ``data[start:end]``."""
    out = []
    while start < end:
        length = (data[start] << 8) | data[start + 1]
        out.append(bytes(data[start + 2 : start + 2 + length]))
        start += 2 + length
    return out


class Receiving:
    """Iterate ``feed`` in a thread, keeping every delivered message with its chunk's arrival stamp."""

    def __init__(self, feed):
        self.feed = feed
        self.messages = []
        self.arrivals = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for data, start, end, arrival in self.feed:
            for message in blocks(data, start, end):
                self.messages.append(message)
                self.arrivals.append(arrival)

    def join(self, timeout=10):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the feed did not end"


class Server:
    """The test's own MoldUDP64 server: sends to the feed, reads its requests, answers as told."""

    def __init__(self, feed):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.feed_address = feed.address

    def send(self, sequence, messages=(), end_of_session=False):
        self.sock.sendto(encode_mold(SESSION, sequence, messages, end_of_session=end_of_session), self.feed_address)

    def request(self):
        packet, source = self.sock.recvfrom(100)
        assert source == tuple(self.feed_address)  # asked from the socket the feed reads
        return decode_mold_request(packet)

    def close(self):
        self.sock.close()


def numbered(first, last):
    return [b"m%05d" % n for n in range(first, last + 1)]


# -- the Request Packet ---------------------------------------------------------------------------


def test_request_packet_round_trips_and_bad_ones_are_refused():
    packet = encode_mold_request(b"SESSION", 2**40, 65534)
    assert len(packet) == 20
    assert decode_mold_request(packet) == MoldRequest(b"SESSION   ", 2**40, 65534)
    assert decode_mold_request(bytearray(packet)) == decode_mold_request(memoryview(packet))
    for bad, says in ((packet[:19], "20 bytes"), (packet + b"x", "20 bytes"),
                      (encode_mold(SESSION, 0, [b"x"])[:20], "at least 1"),
                      (packet[:18] + b"\x00\x00", "count"), (packet[:18] + b"\xff\xff", "count")):
        with pytest.raises(ValueError, match=says):
            decode_mold_request(bad)
    for session, sequence, count in ((b"ELEVEN_LONG", 1, 1), (SESSION, 0, 1), (SESSION, 1, 0),
                                     (SESSION, 1, MOLD_END_OF_SESSION), (SESSION, 2**64, 1)):
        with pytest.raises(ValueError):
            encode_mold_request(session, sequence, count)


# -- the receiver, against the test's own server ---------------------------------------------------


def test_a_gap_is_requested_held_packets_wait_and_every_message_arrives_once_in_order():
    feed = UdpFeed(idle_timeout=5, request_timeout=2)
    server = Server(feed)
    receiving = Receiving(feed)
    try:
        server.send(1, numbered(1, 4))
        server.send(9, numbered(9, 12))  # 5..8 never came
        assert server.request() == MoldRequest(SESSION, 5, 4)
        server.send(13, numbered(13, 14))  # held too, behind the gap
        server.send(5, numbered(5, 6))  # an answer with only part of the gap: the rest is asked at once
        assert server.request() == MoldRequest(SESSION, 7, 2)
        server.send(7, numbered(7, 8))
        server.send(5, numbered(5, 6))  # a late copy: nothing new
        server.send(15, end_of_session=True)
        receiving.join()
    finally:
        feed.close()
        server.close()
    assert receiving.messages == numbered(1, 14)
    counts = feed.counts
    assert (counts["gaps"], counts["gap_messages"], counts["requested"], counts["recovered"]) == (1, 4, 2, 4)
    assert counts["duplicates"] == 1 and "lost" not in counts
    # Held packets keep the stamps of their own arrival, earlier than the answers that freed them.
    arrivals = dict(zip(receiving.messages, receiving.arrivals))
    assert arrivals[b"m00009"] < arrivals[b"m00005"] < arrivals[b"m00007"]
    assert arrivals[b"m00013"] < arrivals[b"m00007"]


def test_an_unanswered_request_is_retried_then_the_gap_is_reported_lost(caplog):
    feed = UdpFeed(idle_timeout=5, request_timeout=0.05, max_tries=3)
    server = Server(feed)
    receiving = Receiving(feed)
    try:
        server.send(1, numbered(1, 2))
        server.send(4, numbered(4, 5))
        requests = [server.request() for _ in range(3)]
        server.send(6, end_of_session=True)
        receiving.join()
    finally:
        feed.close()
        server.close()
    assert requests == [MoldRequest(SESSION, 3, 1)] * 3
    assert receiving.messages == numbered(1, 2) + numbered(4, 5)
    assert (feed.counts["requested"], feed.counts["lost"], feed.counts.get("recovered", 0)) == (3, 1, 0)
    assert "sequence numbers 3..3 (1 messages) lost after 3 request(s)" in caplog.text


def test_a_full_hold_buffer_gives_the_gap_up_and_a_tail_gap_is_found_at_end_of_session():
    feed = UdpFeed(idle_timeout=5, request_timeout=2, max_pending=2)
    server = Server(feed)
    receiving = Receiving(feed)
    try:
        server.send(1, numbered(1, 1))
        for sequence in (3, 4, 5):  # 2 is missing; the third held packet overflows the buffer of 2
            server.send(sequence, numbered(sequence, sequence))
        assert server.request() == MoldRequest(SESSION, 2, 1)
        server.send(8, end_of_session=True)  # 6 and 7 were lost at the tail: End of Session says so
        assert server.request() == MoldRequest(SESSION, 6, 2)
        server.send(6, numbered(6, 7))
        receiving.join()
    finally:
        feed.close()
        server.close()
    assert receiving.messages == [b"m00001"] + numbered(3, 7)
    counts = feed.counts
    assert (counts["gaps"], counts["gap_messages"], counts["lost"], counts["recovered"]) == (2, 3, 1, 2)


def test_joining_a_session_midway_starts_at_the_first_packet_seen():
    feed = UdpFeed(idle_timeout=5, request_timeout=2, first_sequence=None)
    server = Server(feed)
    receiving = Receiving(feed)
    try:
        server.send(100, numbered(100, 103))  # nothing before 100 is requested
        server.send(106, numbered(106, 107))
        assert server.request() == MoldRequest(SESSION, 104, 2)
        server.send(104, numbered(104, 105))
        server.send(108, end_of_session=True)
        receiving.join()
    finally:
        feed.close()
        server.close()
    assert receiving.messages == numbered(100, 107)
    assert (feed.counts["gaps"], feed.counts["recovered"]) == (1, 2)


# -- the replayer process --------------------------------------------------------------------------


def receive_from_replayer(messages, feed_options=None, **replayer_options):
    feed = UdpFeed(idle_timeout=5, **(feed_options or {}))
    replayer = start_replayer(feed.address, messages, linger=0.3, **replayer_options)
    try:
        receiving = Receiving(feed)
        receiving.join(30)
    finally:
        feed.close()
    return receiving.messages, feed.counts, replayer_counts(replayer)


def test_dropped_packets_are_recovered_from_the_replayer_exactly_once_in_order():
    # Every 5th packet of 8 messages never leaves, the first and the last among them (the last is
    # found missing from the End of Session's sequence number).
    got, counts, served = receive_from_replayer(3000, per_packet=8, drop=(0,), drop_every=5)
    assert got == generate_messages(3000, seed=1)
    assert served["dropped"] == 1 + 375 // 5
    assert counts["gap_messages"] == counts["recovered"] == 8 * served["dropped"]
    assert "lost" not in counts
    assert counts["requested"] == served["requests"] >= counts["gaps"] >= 1
    assert served["retransmitted"] >= counts["recovered"] and served["bad_requests"] == 0


def test_a_lost_request_is_retried_and_answered():
    got, counts, served = receive_from_replayer(1000, {"request_timeout": 0.1}, rate=50_000, drop=(10,),
                                                ignore_requests=1)
    assert got == generate_messages(1000, seed=1)
    assert served["ignored_requests"] == 1 and counts["requested"] >= 2
    assert counts["recovered"] == 8 and "lost" not in counts


def test_a_request_for_history_already_discarded_ends_as_a_reported_loss():
    # The history holds one packet's worth: the gap is seen only once the next packet was sent.
    got, counts, served = receive_from_replayer(1000, {"max_tries": 2}, rate=50_000, drop=(10,), history=8)
    expected = generate_messages(1000, seed=1)
    assert got == expected[:80] + expected[88:]
    assert counts["lost"] == 8 and counts["requested"] == 2 == served["unavailable"]
    assert "recovered" not in counts


def test_without_requests_a_gap_is_reported_lost_at_once():
    got, counts, served = receive_from_replayer(1000, {"max_tries": 0}, rate=50_000, drop=(10,))
    assert len(got) == 992 and counts["lost"] == counts["gap_messages"] == 8
    assert "requested" not in counts and served["requests"] == 0


def test_bad_request_packets_are_counted_and_never_stop_the_replayer():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    replayer = start_replayer(sock.getsockname(), 400, rate=20_000, linger=0.3)
    try:
        packet, request_port = sock.recvfrom(65536)
        assert packet[:10] == SESSION
        good = encode_mold_request(SESSION, 1, 3)
        for bad in (b"", b"short", good + b"!", good[:18] + b"\x00\x00", good[:18] + b"\xff\xff",
                    encode_mold_request(b"OTHER", 1, 3), b"\x00" * 20, bytes(range(256)) * 4):
            sock.sendto(bad, request_port)
        sock.sendto(good, request_port)
        answers = []
        ended = False
        while not (answers and ended):  # End of Session repeats while the replayer lingers
            packet = sock.recv(65536)
            if packet[18:20] == b"\xff\xff":
                ended = True
            elif packet[10:18] == (1).to_bytes(8, "big"):
                answers.append(packet)
    finally:
        sock.close()
    served = replayer_counts(replayer)
    assert replayer.returncode == 0
    assert served["bad_requests"] == 8 and served["requests"] == 1 and served["retransmitted"] == 3
    assert answers and answers[-1] == encode_mold(SESSION, 1, generate_messages(3, seed=1))


# -- the two-process layout ------------------------------------------------------------------------


def test_two_process_layout_reads_the_udp_feed_in_the_feed_handler(path_name, exchange):  # noqa: F811
    strategy = Recording(ImbalanceStrategy(0.6))
    figures = run_two_process(path_name, strategy, exchange=exchange.address, messages=3000, feed="udp")
    counts = figures.counts
    assert figures.stopped_by == ""
    assert [note for note in figures.notes if not note.startswith("hop: ")] == []  # the hop's note says what it measured
    assert figures.feed == "udp"
    assert counts["messages"] == 3000 and counts["packets"] >= 375  # the feed handler's receiver counted
    assert counts["published"] == counts["received"] == counts["book_updates"] == book_message_count(3000)
    assert counts.get("lost", 0) == 0 and counts.get("dropped", 0) == 0
    assert counts.get("recovered", 0) == counts.get("gap_messages", 0)  # loopback may lose packets too
    check_counts_add_up(figures, strategy.emitted)
    assert counts["unacknowledged"] == 0
    tokens = entered_tokens(exchange)
    assert len(tokens) == len(set(tokens)) == counts["sent"] == len(strategy.emitted) > 0


def test_cli_runs_two_processes_on_the_udp_feed(tmp_path, capsys):
    json_path = tmp_path / "run.json"
    status = main(["--layout", "two", "--feed", "udp", "--backend", "python", "--messages", "2000",
                   "--json", str(json_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "layout two, feed udp" in out
    document = json.loads(json_path.read_text())
    assert document["counts"]["messages"] == 2000
    assert document["counts"]["published"] == book_message_count(2000)


@pytest.mark.parametrize("feed", ["udp", "synthetic"])
def test_the_feed_handler_stamps_arrival_at_the_packets_recv(feed):
    # The feed handler run in a thread here, so the test reads its ring itself: with UDP every
    # update of one packet carries that packet's recv stamp; from memory, each message its own.
    import multiprocessing

    import numpy as np

    from lowlat import _backend
    from lowlat.pipeline.twoproc import UPDATE_DTYPE, _feed_handler

    ring = _backend.load("lowlat", "python").ShmRecordRing.create(UPDATE_DTYPE, 4096, role="consumer")
    receiver, sender = multiprocessing.Pipe(duplex=False)
    handler = threading.Thread(target=_feed_handler, daemon=True,
                               args=(ring.name, "python", feed, 2000, 1, None, threading.Event(), sender))
    try:
        handler.start()
        handler.join(30)
        assert not handler.is_alive()
        report = receiver.recv()
        records = np.zeros(4096, dtype=UPDATE_DTYPE)
        count = ring.read_into(records)
    finally:
        ring.close()
        ring.unlink()
    assert report["error"] == "" and report["counts"]["messages"] == 2000
    updates = records[: count - 1]  # then the end record
    assert len(updates) == book_message_count(2000) == report["counts"]["published"]
    assert (updates["arrival"] <= updates["published"]).all()
    distinct = len(set(updates["arrival"].tolist()))
    if feed == "udp":
        assert distinct <= report["counts"]["packets"] < len(updates) / 4  # 8 messages a packet
    else:
        assert distinct == len(updates)
