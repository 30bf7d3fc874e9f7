"""Feed sources: the synthetic ITCH feed, a user's ITCH file, and MoldUDP64 over UDP on loopback.

Every feed is an iterable of chunks ``(data, start, end, arrival_ns)`` for
:meth:`lowlat.pipeline.Pipeline.run` (see :data:`lowlat.pipeline.core.Chunk`): whole messages
behind 2-byte lengths, and the packet's receive stamp (UDP) or None (stamp each message as it is
taken). :func:`synthetic_feed` and :func:`file_feed` hand out memory; with a ``rate`` they pace
themselves by spinning on the clock. :class:`UdpFeed` receives MoldUDP64 packets that
:func:`start_replayer` (a separate process) sends at a chosen message rate. On a gap in sequence
numbers the feed sends a MoldUDP64 Request Packet to the replayer, which answers from a bounded
history of what it sent; the feed holds the packets that arrive meanwhile and delivers every
message once, in sequence order, or reports the messages it gave up on as lost. It skips repeated
packets (``duplicates``) and counts packets too short for a header (``corrupt``). Bad blocks
inside a packet are the pipeline's to count. :func:`open_feed` opens any of them by name.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from typing import Callable, Generator, Iterator, Protocol

from ..itch.framing import (MOLD_END_OF_SESSION, MOLD_HEADER_SIZE, decode_mold_request, encode_mold,
                            encode_mold_request)
from ..itch.generator import generate, generate_messages
from .exchange import stop_process

__all__ = ["synthetic_feed", "file_feed", "message_offsets", "UdpFeed", "udp_feed", "open_feed", "replay",
           "start_replayer", "replayer_counts", "replay_main"]

log = logging.getLogger("lowlat.pipeline")

_MOLD = struct.Struct(">10sQH")
_SESSION = b"LOWLAT0001"
_PACING_INTERVAL = 0.0002  # seconds between paced releases at most: sleep granularity is ~60 us


def message_offsets(data: bytes) -> list[int]:
    """Offsets of each whole message's length prefix in file-form ``data``, then the end of the last.

    Stops at the first prefix that overruns the data (the pipeline then reports it as corrupt)."""
    offsets = []
    offset, end = 0, len(data)
    while offset + 2 <= end:
        after = offset + 2 + ((data[offset] << 8) | data[offset + 1])
        if after > end:
            break
        offsets.append(offset)
        offset = after
    offsets.append(offset)
    return offsets


def _paced(data: bytes, offsets: list[int], rate: float, batch: int) -> Generator[tuple, None, None]:
    """Chunks of ``batch`` messages released at ``rate`` messages per second, sleeping in between.

    Sleeping, not spinning: on a machine with few cores a spinning feed takes the core the
    strategy (or the exchange) needs, and the scheduler's time slices then show up as
    milliseconds of queueing. The price is burstiness: ``batch`` messages arrive together."""
    interval = batch / rate
    due = time.perf_counter()
    for index in range(0, len(offsets) - 1, batch):
        stop = offsets[min(index + batch, len(offsets) - 1)]
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield data, offsets[index], stop, None
        due += interval
    if offsets[-1] < len(data):  # a cut-short tail: let the pipeline see (and count) it
        yield data, offsets[-1], len(data), None


def _whole(data: bytes) -> Generator[tuple, None, None]:
    yield data, 0, len(data), None


def _feed_of(data: bytes, rate: float | None) -> Generator[tuple, None, None]:
    if not rate:
        return _whole(data)
    # The message boundaries are found now, so the schedule starts with the first message.
    return _paced(data, message_offsets(data), rate, max(1, int(rate * _PACING_INTERVAL)))


def synthetic_feed(messages: int, *, seed: int = 1, instruments: int = 100,
                   rate: float | None = None) -> Generator[tuple, None, None]:
    """The synthetic ITCH day of ``lowlat.itch.generate`` (``messages`` messages), all at once or at ``rate``/s."""
    return _feed_of(generate(messages, seed=seed, instruments=instruments), rate)


def file_feed(path: str, *, messages: int | None = None,
              rate: float | None = None) -> Generator[tuple, None, None]:
    """A user's ITCH 5.0 file in NASDAQ's daily form (2-byte length, message), read into memory;
    the first ``messages`` messages when given."""
    with open(path, "rb") as source:
        data = source.read()
    if messages is not None:
        offsets = message_offsets(data)
        if messages < len(offsets) - 1:
            data = data[: offsets[messages]]
    return _feed_of(data, rate)


def _skip_messages(packet: bytes, offset: int, skip: int) -> int:
    """The offset of the block ``skip`` blocks after ``offset`` (where the framing breaks, if sooner)."""
    end = len(packet)
    for _ in range(skip):
        if offset + 2 > end:
            break
        offset += 2 + ((packet[offset] << 8) | packet[offset + 1])
    return min(offset, end)


class UdpFeed:
    """MoldUDP64 packets received on ``host``:``port`` (0: a free port; see ``address``), in order.

    Iterating yields one chunk per packet carrying messages, stamped when ``recv`` returned, and
    delivers every message once, in sequence order, from ``first_sequence`` on (None: from the
    first packet seen, for joining a session midway). It ends at an End of Session packet once
    nothing is missing, after ``idle_timeout`` seconds without a packet, or at ``close()``.

    **Retransmission.** A packet beyond the next expected sequence number opens a gap: the feed
    sends a Request Packet for the missing messages from its own socket, so the answer (a normal
    downstream packet) arrives where the feed reads. Requests go to ``request_address``, by
    default the source of the first packet received (the replayer answers on the socket it sends
    from). The packets that arrive meanwhile wait in a buffer of at most ``max_pending`` packets
    and are delivered, keeping their own arrival stamps, as soon as the gap is filled;
    an answer carrying only part of the gap is followed at once by a request for the rest. A
    request unanswered after ``request_timeout`` seconds is sent again; after ``max_tries``
    requests (0: never request) -- or when the buffer is full -- the gap's messages are given up,
    logged and counted as lost, and delivery goes on after them. Heartbeats and End of Session
    packets carry the next sequence number, so a loss at the tail is found and requested too.

    Counters (``counts``): ``packets``; ``gaps`` and ``gap_messages`` (holes found and the
    messages in them); ``requested`` (Request Packets sent, retries included); ``recovered``
    (missing messages delivered after all) and ``lost`` (given up): once the feed ends at End
    of Session, ``gap_messages == recovered + lost``; ``duplicates`` (packets holding nothing new, skipped),
    ``corrupt`` (shorter than a header), ``heartbeats``.

    One thread iterates; ``close()`` may come from another. While no gap is open a packet costs
    a few comparisons more than a bare ``recv`` loop; only the first is read with ``recvfrom``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, now_ns=time.perf_counter_ns,
                 idle_timeout: float = 2.0, counts: dict | None = None, first_sequence: int | None = 1,
                 request_address: tuple[str, int] | None = None, request_timeout: float = 0.05,
                 max_tries: int = 5, max_pending: int = 4096) -> None:
        if max_tries < 0:
            raise ValueError(f"max_tries must be at least 0, got {max_tries}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be positive, got {request_timeout}")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((host, port))
        self.sock.settimeout(idle_timeout)
        self.idle_timeout = idle_timeout
        self.address = self.sock.getsockname()[:2]
        self.now_ns = now_ns
        self.counts = counts if counts is not None else {}
        # expected: the next sequence number to deliver; high: one past the highest known to exist.
        # -1 until the first packet when joining midway (no packet carries it, so none matches).
        self.expected = self.high = -1 if first_sequence is None else first_sequence
        self.session: bytes | None = None
        self.request_address = request_address
        self.request_timeout = request_timeout
        self.max_tries = max_tries
        self.max_pending = max_pending
        self.pending: list[tuple] = []  # heap of (sequence, end, gap_limit, arrival, packet)
        self.end_sequence: int | None = None
        self.replayer: subprocess.Popen | None = None  # stopped by close() when set (udp_feed)
        self._tries = 0
        self._request_sequence = 0
        self._deadline: float | None = None  # of the outstanding request
        self._source: tuple[str, int] | None = None

    def _count(self, name: str, increment: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + increment

    def __iter__(self) -> Iterator[tuple]:
        recv = self.sock.recv
        now_ns = self.now_ns
        unpack = _MOLD.unpack_from
        counts = self.counts
        while True:
            try:
                if self._source is None:  # the first packet: its source is where requests go
                    packet, self._source = self.sock.recvfrom(65536)
                else:
                    packet = recv(65536)  # recvfrom costs ~1 us more a packet here (the address object)
            except socket.timeout:
                if self._deadline is None:
                    log.warning("UDP feed: no packet for %.1f s; ending", self.idle_timeout)
                    return
                yield from self._request_timed_out()
                while self._deadline is not None and time.monotonic() >= self._deadline:
                    yield from self._request_timed_out()
                if self._finished():
                    return
                continue
            except OSError:  # closed
                return
            arrival = now_ns()
            counts["packets"] = counts.get("packets", 0) + 1
            if len(packet) < MOLD_HEADER_SIZE:
                self._count("corrupt")
                log.warning("UDP feed: a %d-byte packet is shorter than the MoldUDP64 header; skipped", len(packet))
                continue
            session, sequence, count = unpack(packet, 0)
            if sequence == self.expected and count != 0 and count != MOLD_END_OF_SESSION and self._deadline is None \
                    and not self.pending:  # in order, nothing missing: the hot path
                self.expected = self.high = sequence + count
                yield packet, MOLD_HEADER_SIZE, len(packet), arrival
                continue
            if self.session is None:
                self.session = session
            if count == 0 or count == MOLD_END_OF_SESSION:
                self._marker(sequence, count == MOLD_END_OF_SESSION)
            else:
                yield from self._out_of_line(packet, sequence, sequence + count, arrival)
            while self._deadline is not None and time.monotonic() >= self._deadline:
                yield from self._request_timed_out()
            if self._finished():
                return

    def _finished(self) -> bool:
        return self.end_sequence is not None and self.expected >= self.end_sequence and not self.pending

    def _start_at(self, sequence: int) -> None:
        if self.expected < 0:
            self.expected = self.high = sequence

    def _marker(self, sequence: int, end_of_session: bool) -> None:
        """A heartbeat or End of Session: ``sequence`` is the next message's number."""
        if end_of_session:
            self.end_sequence = sequence
        else:
            self._count("heartbeats")
        self._start_at(sequence)
        if sequence > self.high:
            self._open_gap(sequence)
            self.high = sequence
        if self.expected < self.high and self._deadline is None:
            self._request()

    def _open_gap(self, sequence: int) -> None:
        missing = sequence - self.high
        self._count("gaps")
        self._count("gap_messages", missing)
        log.info("MoldUDP64 gap: expected sequence %d, got %d (%d messages missing); requesting them",
                 self.high, sequence, missing)

    def _out_of_line(self, packet: bytes, sequence: int, end: int, arrival: int) -> Iterator[tuple]:
        """A data packet off the hot path: a duplicate, an answer filling a gap, or one beyond a gap."""
        self._start_at(sequence)
        if end <= self.expected:
            self._count("duplicates")
            return
        if sequence > self.expected and len(self.pending) >= self.max_pending:
            log.warning("UDP feed: %d packets wait behind a gap (the most it holds); giving the gap up",
                        len(self.pending))
            yield from self._give_up()
            if end <= self.expected:
                self._count("duplicates")
                return
        gap_limit = min(end, self.high)  # messages below it were missing when this packet came
        if sequence > self.expected:
            if sequence > self.high:
                self._open_gap(sequence)
            if end > self.high:
                self.high = end
            heapq.heappush(self.pending, (sequence, end, gap_limit, arrival, packet))
            if self._deadline is None:
                self._request()
            return
        yield from self._deliver(packet, sequence, end, gap_limit, arrival)
        yield from self._flush()

    def _deliver(self, packet: bytes, sequence: int, end: int, gap_limit: int, arrival: int) -> Iterator[tuple]:
        """Yield the part of ``packet`` from ``expected`` on (``sequence <= expected < end``)."""
        expected = self.expected
        if gap_limit > expected:
            self._count("recovered", gap_limit - expected)
        start = MOLD_HEADER_SIZE
        if sequence < expected:  # an answer overlapping what was delivered: skip to the first new message
            start = _skip_messages(packet, start, expected - sequence)
        self.expected = end
        if end > self.high:
            self.high = end
        yield packet, start, len(packet), arrival

    def _flush(self) -> Iterator[tuple]:
        """Deliver the held packets the gap no longer blocks; request the next gap, or stop requesting."""
        pending = self.pending
        while pending and pending[0][0] <= self.expected:
            sequence, end, gap_limit, arrival, packet = heapq.heappop(pending)
            if end <= self.expected:
                self._count("duplicates")
            else:
                yield from self._deliver(packet, sequence, end, gap_limit, arrival)
        if self.expected < self.high:
            self._request()
        elif self._deadline is not None:
            self._deadline = None
            self.sock.settimeout(self.idle_timeout)

    def _hole_end(self) -> int:
        return self.pending[0][0] if self.pending else self.high

    def _request(self) -> None:
        """Request the messages from ``expected`` to the next one held (or known to exist)."""
        if self._request_sequence != self.expected:
            self._request_sequence = self.expected
            self._tries = 0
        address = self.request_address or self._source
        if self._tries >= self.max_tries or address is None:
            self._deadline = time.monotonic()  # give up at the next look
            return
        count = min(self._hole_end() - self.expected, MOLD_END_OF_SESSION - 1)
        request = encode_mold_request(self.session or _SESSION, self.expected, count)
        try:
            self.sock.sendto(request, address)
        except OSError as error:
            log.warning("UDP feed: cannot send a retransmission request to %s: %s", address, error)
        self._tries += 1
        self._count("requested")
        self._deadline = time.monotonic() + self.request_timeout
        self.sock.settimeout(self.request_timeout)

    def _request_timed_out(self) -> Iterator[tuple]:
        if self._tries < self.max_tries and self._request_sequence == self.expected:
            self._request()
            return
        yield from self._give_up()

    def _give_up(self) -> Iterator[tuple]:
        """Report the messages from ``expected`` to the next held packet as lost, and go on after them."""
        hole_end = self._hole_end()
        lost = hole_end - self.expected
        self._count("lost", lost)
        log.warning("MoldUDP64 gap: sequence numbers %d..%d (%d messages) lost after %d request(s)",
                    self.expected, hole_end - 1, lost, self._tries)
        self.expected = hole_end
        self._deadline = None
        self.sock.settimeout(self.idle_timeout)
        yield from self._flush()

    def close(self) -> None:
        """Close the socket (ending an iteration in progress) and stop the replayer this feed started."""
        self.sock.close()
        if self.replayer is not None:
            stop_process(self.replayer)


_ANSWER_BYTES = 1400  # an answer's message blocks at most: one Ethernet frame's worth, as real servers send
_END_OF_SESSION_EVERY = 0.05  # seconds between End of Session packets while the replayer lingers
_LINGER_LIMIT = 60.0  # seconds a replayer answers requests after its last packet, at most


def _packets(messages: list[bytes], per_packet: int, first_sequence: int = 1) -> list[bytes]:
    packets = []
    sequence = first_sequence
    for index in range(0, len(messages), per_packet):
        group = messages[index : index + per_packet]
        packets.append(encode_mold(_SESSION, sequence, group))
        sequence += len(group)
    return packets


def _send(sock: socket.socket, packet: bytes, address: tuple[str, int]) -> None:
    while True:
        try:
            sock.sendto(packet, address)
            return
        except BlockingIOError:  # the kernel's buffer is full: wait, never drop on our side
            time.sleep(0.0001)
        except OSError as error:  # e.g. the receiver is gone: nothing to do about it here
            log.debug("replayer: sendto %s failed: %s", address, error)
            return


class _History:
    """The last ``capacity`` messages sent, by sequence number: what requests are answered from.

    Dropped packets' messages count as sent (the network lost them, not the server). Appending is
    O(1); a lookup walks the deque to its first message (O(capacity / 64) block hops)."""

    def __init__(self, capacity: int) -> None:
        self.messages: deque[bytes] = deque(maxlen=capacity)
        self.first = 1  # the oldest sequence number still held
        self.next = 1  # the sequence number the next message sent gets

    def extend(self, messages: list[bytes]) -> None:
        held = self.messages
        for message in messages:
            if len(held) == held.maxlen:
                self.first += 1
            held.append(message)
        self.next += len(messages)

    def get(self, sequence: int, count: int, max_bytes: int) -> list[bytes]:
        """Up to ``count`` messages from ``sequence`` on whose blocks fit in ``max_bytes`` (at least
        one); empty when ``sequence`` was discarded or not sent yet."""
        if not self.first <= sequence < self.next:
            return []
        answer: list[bytes] = []
        size = 0
        start = sequence - self.first
        for message in itertools.islice(self.messages, start, start + count):
            size += 2 + len(message)
            if answer and size > max_bytes:
                break
            answer.append(message)
        return answer


class _RequestServer:
    """Answers MoldUDP64 Request Packets arriving on ``sock`` from ``history``, unicast to the requester.

    Counts ``requests`` (valid ones), ``bad_requests`` (not a 20-byte request for 1..65534
    messages of this session: skipped), ``ignored_requests`` (the first ``ignore`` valid ones,
    unanswered on purpose: a lost request, for tests), ``unavailable`` (asking for messages
    discarded from the history or never sent: unanswered) and ``retransmitted`` (messages sent
    again). Runs on the replayer's one thread; never raises on what a peer sends."""

    def __init__(self, sock: socket.socket, history: _History, counts: dict, ignore: int = 0) -> None:
        self.sock = sock
        self.history = history
        self.counts = counts
        self.ignore = ignore
        self.last_request = time.monotonic()

    def serve(self) -> None:
        """Answer every request waiting on the (non-blocking) socket."""
        while True:
            try:
                packet, source = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # an ICMP error from an earlier send: not a request
                log.debug("replayer: recvfrom failed: %s", error)
                continue
            self.answer(packet, source)

    def answer(self, packet: bytes, source: tuple[str, int]) -> None:
        counts = self.counts
        try:
            request = decode_mold_request(packet)
        except ValueError:
            counts["bad_requests"] += 1
            return
        if request.session != _SESSION:
            counts["bad_requests"] += 1
            return
        counts["requests"] += 1
        self.last_request = time.monotonic()
        if counts["ignored_requests"] < self.ignore:
            counts["ignored_requests"] += 1
            return
        messages = self.history.get(request.sequence, request.count, _ANSWER_BYTES)
        if not messages:
            counts["unavailable"] += 1
            return
        _send(self.sock, encode_mold(_SESSION, request.sequence, messages), source)
        counts["retransmitted"] += len(messages)


def _wait_serving(server: _RequestServer, until: float) -> None:
    """Answer requests until ``time.perf_counter()`` reaches ``until`` (sleeping in ``select``)."""
    while True:
        wait = until - time.perf_counter()
        if wait <= 0:
            return
        ready, _, _ = select.select([server.sock], [], [], wait)
        if ready:
            server.serve()


def _linger(server: _RequestServer, address: tuple[str, int], end_packet: bytes, linger: float) -> None:
    """Send End of Session every 50 ms and answer requests until ``linger`` s pass without one."""
    started = time.monotonic()
    quiet_since = started
    next_end = started
    while True:
        now = time.monotonic()
        if now >= next_end:
            _send(server.sock, end_packet, address)
            next_end = now + _END_OF_SESSION_EVERY
        quiet_since = max(quiet_since, server.last_request)
        if now - quiet_since >= linger or now - started >= _LINGER_LIMIT:
            return
        ready, _, _ = select.select([server.sock], [], [], max(0.0, min(next_end, quiet_since + linger) - now))
        if ready:
            server.serve()


def replay(address: tuple[str, int], messages: list[bytes], *, rate: float | None = None, per_packet: int = 8,
           drop: frozenset[int] = frozenset(), drop_every: int = 0, corrupt: frozenset[int] = frozenset(),
           start_delay: float = 0.2, history: int = 65536, ignore_requests: int = 0, linger: float = 1.0) -> dict:
    """Send ``messages`` as MoldUDP64 packets to ``address`` at ``rate`` messages/s (None: as fast as
    possible), then End of Session, answering Request Packets throughout; return the counts.

    The packets leave from a socket bound to ``address``'s host and a free port, which is also the
    re-request port: a request arriving there is answered from the last ``history`` messages sent,
    unicast to its source, with as many of the asked-for messages as fit in 1,400 bytes (see
    :class:`_RequestServer` for its counts). Packet indices in ``drop``, and every
    ``drop_every``-th packet (0: none), are not sent (a gap the receiver must request); those in
    ``corrupt`` are sent with a length prefix that overruns the packet. After the last packet, End
    of Session goes out every 50 ms until ``linger`` seconds pass without a request. Counts:
    ``packets`` sent, ``dropped``, and the request server's."""
    if per_packet < 1:
        raise ValueError(f"per_packet must be at least 1, got {per_packet}")
    if history < 0 or drop_every < 0 or ignore_requests < 0:
        raise ValueError("history, drop_every and ignore_requests must be at least 0")
    packets = _packets(messages, per_packet)
    counts = dict.fromkeys(("packets", "dropped", "requests", "bad_requests", "ignored_requests", "unavailable",
                            "retransmitted"), 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((address[0], 0))
    sock.setblocking(False)
    sent = _History(history)
    server = _RequestServer(sock, sent, counts, ignore_requests)
    time.sleep(start_delay)
    interval = per_packet / rate if rate else 0.0
    due = time.perf_counter()
    try:
        for index, packet in enumerate(packets):
            sent.extend(messages[index * per_packet : (index + 1) * per_packet])
            if interval:
                due += interval
                _wait_serving(server, due)
            if index in drop or (drop_every and (index + 1) % drop_every == 0):
                counts["dropped"] += 1
            else:
                if index in corrupt:
                    packet = packet[:MOLD_HEADER_SIZE] + b"\xff\xff" + packet[MOLD_HEADER_SIZE + 2 :]
                _send(sock, packet, address)
                counts["packets"] += 1
            server.serve()
        _linger(server, address, encode_mold(_SESSION, 1 + len(messages), end_of_session=True), linger)
    finally:
        sock.close()
    return counts


def replay_main(argv: list[str] | None = None) -> int:
    """The replayer process: ``--port P --messages N [--file F] [--rate R] [--per-packet K] [--drop i,j]
    [--drop-every K] [--corrupt i,j] [--history N] [--ignore-requests N] [--linger S]``; prints its
    counts as one JSON line on stdout when done."""
    parser = argparse.ArgumentParser(prog="lowlat-pipeline-replayer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--file", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--per-packet", type=int, default=8)
    parser.add_argument("--drop", default="")
    parser.add_argument("--drop-every", type=int, default=0)
    parser.add_argument("--corrupt", default="")
    parser.add_argument("--history", type=int, default=65536)
    parser.add_argument("--ignore-requests", type=int, default=0)
    parser.add_argument("--linger", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.file:
        with open(args.file, "rb") as source:
            data = source.read()
        offsets = message_offsets(data)[: args.messages + 1]
        messages = [data[a + 2 : b] for a, b in zip(offsets, offsets[1:])]
    else:
        messages = generate_messages(args.messages, seed=args.seed)

    def indices(text: str) -> frozenset[int]:
        return frozenset(int(x) for x in text.split(",") if x)

    counts = replay((args.host, args.port), messages, rate=args.rate, per_packet=args.per_packet,
                    drop=indices(args.drop), drop_every=args.drop_every, corrupt=indices(args.corrupt),
                    history=args.history, ignore_requests=args.ignore_requests, linger=args.linger)
    print(json.dumps(counts), flush=True)
    return 0


def start_replayer(address: tuple[str, int], messages: int, *, file: str | None = None, rate: float | None = None,
                   per_packet: int = 8, drop: tuple[int, ...] = (), drop_every: int = 0, corrupt: tuple[int, ...] = (),
                   seed: int = 1, history: int = 65536, ignore_requests: int = 0,
                   linger: float = 1.0) -> subprocess.Popen:
    """Start the replayer process (:func:`replay`) sending to ``address``; the caller waits for (or
    kills) it, and :func:`replayer_counts` reads what it counted once it has ended."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    args = [sys.executable, "-c", "import sys; from lowlat.pipeline.feeds import replay_main; sys.exit(replay_main())",
            "--host", address[0], "--port", str(address[1]), "--messages", str(messages), "--seed", str(seed),
            "--per-packet", str(per_packet), "--drop", ",".join(map(str, drop)), "--drop-every", str(drop_every),
            "--corrupt", ",".join(map(str, corrupt)), "--history", str(history),
            "--ignore-requests", str(ignore_requests), "--linger", str(linger)]
    if file:
        args += ["--file", file]
    if rate:
        args += ["--rate", str(rate)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE)


def replayer_counts(replayer: subprocess.Popen, timeout: float = 30.0) -> dict:
    """Wait for a replayer from :func:`start_replayer` to end; return its counts ({} if it was killed)."""
    out, _ = replayer.communicate(timeout=timeout)
    try:
        return json.loads(out) if out and out.strip() else {}
    except ValueError:
        return {}


def udp_feed(messages: int, *, file: str | None = None, seed: int = 1, rate: float | None = None,
             now_ns: Callable[[], int] = time.perf_counter_ns, counts: dict | None = None,
             replayer_cpus: set[int] | None = None) -> UdpFeed:
    """A :class:`UdpFeed` on a free loopback port, fed by a replayer process started now (kept on
    ``replayer_cpus`` when given) sending ``messages`` messages; closing the feed stops the replayer."""
    feed = UdpFeed(now_ns=now_ns, counts=counts)
    try:
        feed.replayer = start_replayer(feed.address, messages, file=file, rate=rate, seed=seed)
    except BaseException:
        feed.close()
        raise
    if replayer_cpus:
        from .exchange import pin_process

        pin_process(feed.replayer.pid, replayer_cpus)
    return feed


class ClosableFeed(Protocol):
    """What :func:`open_feed` returns: chunks, and ``close()`` to release the feed early (a
    generator's ``close``, or :meth:`UdpFeed.close`)."""

    def __iter__(self) -> Iterator[tuple]: ...

    def close(self) -> None: ...


def open_feed(name: str, *, messages: int, seed: int = 1, rate: float | None = None,
              now_ns: Callable[[], int] = time.perf_counter_ns, counts: dict | None = None,
              replayer_cpus: set[int] | None = None) -> ClosableFeed:
    """The feed ``name`` names -- ``synthetic``, ``udp`` (:func:`udp_feed`) or an ITCH file's path --
    as an iterable of chunks with a ``close()`` method (which stops the replayer, for ``udp``)."""
    if name == "synthetic":
        return synthetic_feed(messages, seed=seed, rate=rate)
    if name == "udp":
        return udp_feed(messages, seed=seed, rate=rate, now_ns=now_ns, counts=counts, replayer_cpus=replayer_cpus)
    return file_feed(name, messages=messages, rate=rate)
