"""The order end of the path: OUCH 4.2 Enter Orders on a SoupBinTCP session, and their answers.

:class:`OrderGateway` owns one :class:`lowlat.net.SoupConnection` (login, heartbeats, resume after
a reconnect). The hot path calls an *encoder* (a backend's, see :mod:`lowlat.pipeline.backends`)
that writes the whole SoupBinTCP Unsequenced Data packet, then :meth:`OrderGateway.send`, which
writes it with one ``socket.send``; tick to trade ends when that call returns. Answers are read
by :meth:`OrderGateway.poll` between feed messages (a non-blocking read) and by
:meth:`OrderGateway.drain` at the end: each Accepted or Rejected acknowledges one order and
records its round trip (send returned -> answer read) into the ``ack`` recorder.

An order is pending from its send until its Accepted or Rejected. When the exchange drops the
session, :class:`~lowlat.net.ConnectionLost` reaches the caller with the pending tokens in
``unacknowledged``; with ``reconnect=True`` :meth:`OrderGateway.reconnect` logs in again and the
answers the exchange sent meanwhile (SoupBinTCP replays them) clear what they acknowledge.
One thread at a time.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any, Callable

from ..net import soupbintcp as soup
from ..net.connection import ConnectionLost, SoupConnection

__all__ = ["OrderGateway", "ConnectionLost"]

#: Risk engine sides for the strategy's "B"/"S".
SIDE_CODE = {"B": 1, "S": -1}

#: The fewest nanoseconds between two warm-up heartbeats (:meth:`OrderGateway.warm`): at most
#: 10,000 a second, whatever the feed's rate and the pipeline's ``warm_every``.
WARM_GAP_NS = 100_000
#: A warm-up heartbeat whose ``send`` took longer than this (ns) woke its peer (on loopback the
#: sender pays for that): the gap to the next one doubles, up to :data:`WARM_GAP_MAX_NS`, and
#: comes back to ``warm_gap_ns`` after one that did not.
WARM_COSTLY_NS = 10_000
WARM_GAP_MAX_NS = 10_000_000

_HEARTBEAT = soup.encode_packet(soup.CLIENT_HEARTBEAT)
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


def _not_connected(*_args: Any) -> int:
    raise OSError(errno.ENOTCONN, "not connected")


class OrderGateway:
    """One OUCH user on the exchange at ``address``; see the module docstring.

    ``ouch`` is the backend's ``lowlat.ouch`` module (for decoding answers); ``ack`` a recorder
    (``record(ns)``); ``now_ns`` the clock the rest of the path stamps with; ``risk`` (optional)
    is told about fills and cancels so its open quantities stay true.
    """

    def __init__(self, address: tuple[str, int], ouch: Any, ack: Any, now_ns: Callable[[], int], *,
                 username: str = "pipeline", password: str = "secret", risk: Any = None,
                 busy_poll: bool = False, timeout: float = 15.0) -> None:
        self.connection = SoupConnection(address, username, password, busy_poll=busy_poll, timeout=timeout)
        self.ack = ack
        self.now_ns = now_ns
        self.risk = risk
        self.pending: dict[str, tuple[int, Any]] = {}  # token -> (send returned ns, order), send order
        self.sent = 0
        self.send_failures = 0  # sends that raised: pending (their bytes may or may not have left)
        self.accepted = 0
        self.rejected = 0
        self.canceled = 0
        self.executed = 0
        self.acknowledged_tokens: list[str] = []  # every acknowledged token, in answer order
        self.duplicate_answers = 0
        self._live: dict[str, Any] = {}  # accepted orders that may still fill or cancel (IOC: until Canceled)
        self._record = ouch.ExchangeMessage()
        self._socket_send: Callable[..., int] = _not_connected  # the session socket's bound send
        #: Nanoseconds (of ``now_ns``) between two warm-up heartbeats at least; see :meth:`warm`.
        self.warm_gap_ns = WARM_GAP_NS
        self.warm_sends = 0  # heartbeats :meth:`warm` wrote
        self._last_warm = -WARM_GAP_MAX_NS
        self._warm_gap = WARM_GAP_NS  # the gap now: warm_gap_ns, or more after costly heartbeats
        self._last_service = 0.0

    def connect(self) -> None:
        """Connect and log in (resuming the sequence after a drop); replayed answers are applied."""
        self.connection.connect()
        transport = self.connection.transport
        assert transport is not None  # connect() either connected or raised
        self._socket_send = transport.sock.send
        self._absorb()

    reconnect = connect

    def warm(self) -> None:
        """Send a SoupBinTCP Client Heartbeat on the session, at most one per :attr:`warm_gap_ns`.

        The heartbeat runs the kernel's send path for *this* socket -- its state, its route, the
        exchange's end of the connection on loopback -- which a send anywhere else leaves cold, so
        the next order finds it in cache. It is a real packet: the exchange receives three bytes,
        the protocol's own no-op (a client may send one at any time). A heartbeat that cost as
        much as waking a sleeping peer (:data:`WARM_COSTLY_NS`) doubles the gap to the next one,
        up to :data:`WARM_GAP_MAX_NS`: against an exchange asleep on this machine every heartbeat
        would wake it, at the sender's expense, for nothing. Best effort: a full socket buffer
        skips it, a failure is left for the next poll or order to meet. Never blocks."""
        now_ns = self.now_ns
        start = now_ns()
        if start - self._last_warm < self._warm_gap:
            return
        self._last_warm = start
        try:
            sent = self._socket_send(_HEARTBEAT, _DONTWAIT)
        except OSError:  # BlockingIOError included: nothing was written
            return
        if now_ns() - start > WARM_COSTLY_NS:
            self._warm_gap = min(self._warm_gap * 2, WARM_GAP_MAX_NS)
        else:
            self._warm_gap = self.warm_gap_ns
        if sent:
            self.warm_sends += 1
        if 0 < sent < len(_HEARTBEAT):  # a buffer almost full: finish the packet, or the stream is torn
            transport = self.connection.transport
            try:
                if transport is None:
                    raise ConnectionLost("not connected")
                transport.send(_HEARTBEAT[sent:])
            except ConnectionLost:
                self.connection.close()  # the next poll reports it (and reconnects, if asked)

    @property
    def alive(self) -> bool:
        return self.connection.alive

    def send(self, packet, token: str, order: Any) -> int:
        """Write one whole packet (``ConnectionLost`` when the session is gone); return the stamp
        taken as ``send`` returned: the end of tick to trade and the start of the ack round trip.

        Nothing but the ``socket.send`` call comes before that stamp. An order whose send raised,
        whatever the exception, is pending all the same: its bytes may have left."""
        try:
            sent = self._socket_send(packet)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self.pending[token] = (0, order)
            self.send_failures += 1
            self.connection.close()
            raise self._lost(ConnectionLost(f"send failed: {error}")) from error
        except BaseException:
            self.pending[token] = (0, order)
            raise
        stamp = self.now_ns()
        if sent != len(packet):  # the socket buffer is full: finish it the slow, careful way
            self.pending[token] = (0, order)
            transport = self.connection.transport
            try:
                if transport is None:
                    raise ConnectionLost("not connected")
                transport.send(bytes(packet[sent:]))
            except ConnectionLost as error:
                self.send_failures += 1
                self.connection.close()
                raise self._lost(error)
            stamp = self.now_ns()
        self.pending[token] = (stamp, order)
        self.sent += 1
        return stamp

    def _lost(self, error: ConnectionLost) -> ConnectionLost:
        error.unacknowledged = list(self.pending)  # type: ignore[attr-defined]
        return error

    def poll(self) -> None:
        """Read whatever answers have arrived, without waiting; keep the session's heartbeats.

        ``ConnectionLost`` (with ``unacknowledged``) when the exchange has closed the session.
        """
        try:
            self.connection.service(0.0)
        except ConnectionLost as error:
            self._absorb()
            raise self._lost(error)
        self._absorb()

    def drain(self, timeout: float = 2.0) -> None:
        """Wait up to ``timeout`` seconds for every pending order's answer."""
        deadline = time.monotonic() + timeout
        while self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                self.connection.service(min(remaining, 0.05))
            except ConnectionLost as error:
                self._absorb()
                raise self._lost(error)
            self._absorb()

    def _absorb(self) -> None:
        inbox = self.connection.inbox
        if not inbox:
            return
        now = self.now_ns()
        record = self._record
        while inbox:
            record.decode(inbox.popleft().payload, 0)
            name = record.name
            if name == "accepted" or name == "rejected":
                token = record.order_token
                entry = self.pending.pop(token, None)
                if entry is None:
                    self.duplicate_answers += 1
                    continue
                stamp, order = entry
                if stamp:
                    self.ack.record(max(now - stamp, 1))
                self.acknowledged_tokens.append(token)
                if name == "accepted":
                    self.accepted += 1
                    self._live[token] = order
                else:
                    self.rejected += 1
                    if self.risk is not None:
                        self.risk.on_reject(order.instrument, SIDE_CODE[order.side], order.shares, order.price)
            elif name == "canceled":
                self.canceled += 1
                order = self._live.pop(record.order_token, None)
                if order is not None and self.risk is not None:
                    self.risk.on_cancel(order.instrument, SIDE_CODE[order.side], record.decrement_shares, order.price)
            elif name == "executed":
                self.executed += 1
                order = self._live.get(record.order_token)
                if order is not None and self.risk is not None:
                    self.risk.on_fill(order.instrument, SIDE_CODE[order.side], record.executed_shares,
                                      record.execution_price)

    def close(self) -> None:
        """Log out (briefly waiting for the exchange to close) and close the socket."""
        try:
            if self.connection.alive:
                self.connection.logout(0.5)
        finally:
            self.connection.close()
