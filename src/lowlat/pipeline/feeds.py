"""Feed sources: the synthetic ITCH feed, a user's ITCH file, and MoldUDP64 over UDP on loopback.

Every feed is an iterable of chunks ``(data, start, end, arrival_ns)`` for
:meth:`lowlat.pipeline.Pipeline.run` (see :data:`lowlat.pipeline.core.Chunk`): whole messages
behind 2-byte lengths, and the packet's receive stamp (UDP) or None (stamp each message as it is
taken). :func:`synthetic_feed` and :func:`file_feed` hand out memory; with a ``rate`` they pace
themselves by spinning on the clock. :class:`UdpFeed` receives MoldUDP64 packets that
:func:`start_replayer` (a separate process) sends at a chosen message rate: it detects gaps in
sequence numbers (reported in ``gaps`` and ``gap_messages``, never requested again: a
retransmission server is out of scope), skips repeated packets (``duplicates``) and counts packets
too short for a header (``corrupt``). Bad blocks inside a packet are the pipeline's to count.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from typing import Iterator

from ..itch.framing import MOLD_END_OF_SESSION, MOLD_HEADER_SIZE, encode_mold
from ..itch.generator import generate, generate_messages

__all__ = ["synthetic_feed", "file_feed", "message_offsets", "UdpFeed", "start_replayer", "replay_main"]

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


def _paced(data: bytes, offsets: list[int], rate: float, batch: int) -> Iterator[tuple]:
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


def _whole(data: bytes) -> Iterator[tuple]:
    yield data, 0, len(data), None


def _feed_of(data: bytes, rate: float | None) -> Iterator[tuple]:
    if not rate:
        return _whole(data)
    # The message boundaries are found now, so the schedule starts with the first message.
    return _paced(data, message_offsets(data), rate, max(1, int(rate * _PACING_INTERVAL)))


def synthetic_feed(messages: int, *, seed: int = 1, instruments: int = 100, rate: float | None = None) -> Iterator[tuple]:
    """The synthetic ITCH day of ``lowlat.itch.generate`` (``messages`` messages), all at once or at ``rate``/s."""
    return _feed_of(generate(messages, seed=seed, instruments=instruments), rate)


def file_feed(path: str, *, messages: int | None = None, rate: float | None = None) -> Iterator[tuple]:
    """A user's ITCH 5.0 file in NASDAQ's daily form (2-byte length, message), read into memory;
    the first ``messages`` messages when given."""
    with open(path, "rb") as source:
        data = source.read()
    if messages is not None:
        offsets = message_offsets(data)
        if messages < len(offsets) - 1:
            data = data[: offsets[messages]]
    return _feed_of(data, rate)


class UdpFeed:
    """MoldUDP64 packets received on ``host``:``port`` (0: a free port; see ``address``).

    Iterating yields one chunk per packet carrying messages, stamped when ``recv`` returned. It
    ends at an End of Session packet, after ``idle_timeout`` seconds without a packet, or at
    ``close()``. Counters (``counts``): ``packets``, ``gaps`` and ``gap_messages`` (sequence
    numbers skipped), ``duplicates`` (packets at or below the next expected number, skipped),
    ``corrupt`` (shorter than a header), ``heartbeats``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, now_ns=time.perf_counter_ns,
                 idle_timeout: float = 2.0, counts: dict | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((host, port))
        self.sock.settimeout(idle_timeout)
        self.address = self.sock.getsockname()[:2]
        self.now_ns = now_ns
        self.counts = counts if counts is not None else {}
        self.expected = None
        self.session = None

    def _count(self, name: str, increment: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + increment

    def __iter__(self) -> Iterator[tuple]:
        recv = self.sock.recv
        now_ns = self.now_ns
        unpack = _MOLD.unpack_from
        while True:
            try:
                packet = recv(65536)
            except socket.timeout:
                log.warning("UDP feed: no packet for %.1f s; ending", self.sock.gettimeout())
                return
            except OSError:  # closed
                return
            arrival = now_ns()
            self._count("packets")
            if len(packet) < MOLD_HEADER_SIZE:
                self._count("corrupt")
                log.warning("UDP feed: a %d-byte packet is shorter than the MoldUDP64 header; skipped", len(packet))
                continue
            session, sequence, count = unpack(packet, 0)
            if count == MOLD_END_OF_SESSION:
                return
            if count == 0:
                self._count("heartbeats")
                continue
            expected = self.expected
            if expected is not None and sequence != expected:
                if sequence < expected:
                    self._count("duplicates")
                    continue
                self._count("gaps")
                self._count("gap_messages", sequence - expected)
                log.warning("MoldUDP64 gap: expected sequence %d, got %d (%d messages missing)",
                            expected, sequence, sequence - expected)
            self.expected = sequence + count
            yield packet, MOLD_HEADER_SIZE, len(packet), arrival

    def close(self) -> None:
        self.sock.close()


def _packets(messages: list[bytes], per_packet: int, first_sequence: int = 1) -> list[bytes]:
    packets = []
    sequence = first_sequence
    for index in range(0, len(messages), per_packet):
        group = messages[index : index + per_packet]
        packets.append(encode_mold(_SESSION, sequence, group))
        sequence += len(group)
    return packets


def replay(address: tuple[str, int], messages: list[bytes], *, rate: float | None = None, per_packet: int = 8,
           drop: frozenset[int] = frozenset(), corrupt: frozenset[int] = frozenset(), start_delay: float = 0.2) -> int:
    """Send ``messages`` as MoldUDP64 packets to ``address`` at ``rate`` messages/s (None: as fast as
    possible), then End of Session. Packet indices in ``drop`` are not sent (a gap); those in
    ``corrupt`` are sent with a length prefix that overruns the packet. Return packets sent."""
    packets = _packets(messages, per_packet)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    time.sleep(start_delay)
    interval = per_packet / rate if rate else 0.0
    due = time.perf_counter()
    sent = 0
    for index, packet in enumerate(packets):
        if index in drop:
            continue
        if index in corrupt:
            packet = packet[:MOLD_HEADER_SIZE] + b"\xff\xff" + packet[MOLD_HEADER_SIZE + 2 :]
        if interval:
            due += interval
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                sock.sendto(packet, address)
                break
            except BlockingIOError:  # the kernel's buffer is full: wait, never drop on our side
                time.sleep(0.0001)
        sent += 1
    for _ in range(3):  # UDP may lose one; the receiver's idle timeout is the backstop
        sock.sendto(encode_mold(_SESSION, 1 + len(messages), end_of_session=True), address)
        time.sleep(0.01)
    sock.close()
    return sent


def replay_main(argv: list[str] | None = None) -> int:
    """The replayer process: ``--port P --messages N [--file F] [--rate R] [--per-packet K] [--drop i,j] [--corrupt i,j]``."""
    parser = argparse.ArgumentParser(prog="lowlat-pipeline-replayer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--file", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--per-packet", type=int, default=8)
    parser.add_argument("--drop", default="")
    parser.add_argument("--corrupt", default="")
    args = parser.parse_args(argv)
    if args.file:
        from .feeds import message_offsets

        with open(args.file, "rb") as source:
            data = source.read()
        offsets = message_offsets(data)[: args.messages + 1]
        messages = [data[a + 2 : b] for a, b in zip(offsets, offsets[1:])]
    else:
        messages = generate_messages(args.messages, seed=args.seed)

    def indices(text: str) -> frozenset[int]:
        return frozenset(int(x) for x in text.split(",") if x)

    replay((args.host, args.port), messages, rate=args.rate, per_packet=args.per_packet, drop=indices(args.drop),
           corrupt=indices(args.corrupt))
    return 0


def start_replayer(address: tuple[str, int], messages: int, *, file: str | None = None, rate: float | None = None,
                   per_packet: int = 8, drop: tuple[int, ...] = (), corrupt: tuple[int, ...] = (),
                   seed: int = 1) -> subprocess.Popen:
    """Start the replayer process sending to ``address``; the caller waits for (or kills) it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    args = [sys.executable, "-c", "import sys; from lowlat.pipeline.feeds import replay_main; sys.exit(replay_main())",
            "--host", address[0], "--port", str(address[1]), "--messages", str(messages), "--seed", str(seed),
            "--per-packet", str(per_packet), "--drop", ",".join(map(str, drop)),
            "--corrupt", ",".join(map(str, corrupt))]
    if file:
        args += ["--file", file]
    if rate:
        args += ["--rate", str(rate)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
