"""The thin socket layer around the sans-I/O sessions: TCP_NODELAY, two wait modes, whole sends.

:class:`Transport` owns one connected TCP socket and waits for it in one of two ways, chosen per
connection:

* ``busy_poll=True``: a non-blocking socket; spin on ``recv`` until bytes arrive or the deadline
  passes. Lowest latency (no sleep/wake-up in the kernel), one core at 100 % while waiting: for a
  pinned hot path.
* ``busy_poll=False`` (default): sleep in the kernel until bytes arrive or the deadline passes.
  On Linux the sleep is in ``recv`` itself (a blocking socket whose ``SO_RCVTIMEO`` follows the
  deadline, at most 0.25 s at a time): one system call per message instead of ``epoll`` and then
  ``recv``. Sends and deadline-less reads still never wait (``MSG_DONTWAIT``), and a plain
  ``send`` on :attr:`Transport.sock` by someone else waits at most 5 s (``SO_SNDTIMEO``).
  Elsewhere the socket is non-blocking and the wait is in ``epoll``/``poll``. Costs a wake-up per
  message, leaves the CPU to everybody else.

Sends never interleave two messages' bytes: every send holds the transport's send lock from the
first byte to the last (a partial ``send`` is completed, waiting for writability, before the lock
is released), so any number of threads may call ``send`` on one connection. Receiving is for one
thread at a time (the session's owner, or the pool's maintenance thread while it is checked in).
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import struct
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

from . import soupbintcp as soup

_SequencedData = soup.SequencedData
_ACTIVE = soup.SessionState.ACTIVE  # a global: ~10 ns, the Enum member on its class ~130 ns (3.11)

__all__ = ["ConnectionLost", "HeartbeatTimeoutError", "LoginRejectedError", "Transport", "SoupConnection",
           "connect_tcp"]

_RECV_SIZE = 65536
_KERNEL_WAIT = sys.platform.startswith("linux") and hasattr(socket, "MSG_DONTWAIT")
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_MAX_RCVTIMEO = 0.25  # a blocked recv looks at the clock at least this often
_TIMEVAL = struct.Struct("@ll")


def _timeval(seconds: float) -> bytes:
    """``struct timeval`` for SO_RCVTIMEO/SO_SNDTIMEO; at least 1 us (0 would mean forever)."""
    micros = max(int(seconds * 1_000_000), 1)
    return _TIMEVAL.pack(micros // 1_000_000, micros % 1_000_000)

_monotonic = time.monotonic


def received(outcome: bytes | OSError | None) -> bytes | None:
    """What a receive loop makes of one ``recv``'s outcome: bytes returned, None (nothing by the
    deadline) returned, ``b""`` (the peer closed) or an ``OSError`` raised as ``ConnectionLost``.
    The transport's wait loops and the compiled order path of :mod:`lowlat.wire` (which reads the
    socket itself) both end here."""
    if isinstance(outcome, OSError):
        raise ConnectionLost(f"receive failed: {outcome}") from outcome
    if outcome is not None and not outcome:
        raise ConnectionLost("connection closed by the peer")
    return outcome


def _receive_closed(deadline: float) -> bytes | None:
    """``Transport.receive`` once the transport is closed: what reading the closed socket said."""
    return received(OSError(errno.EBADF, os.strerror(errno.EBADF)))  # raises ConnectionLost


class ConnectionLost(ConnectionError):
    """The connection is gone (peer closed, reset, or declared dead); ``partial`` counts the bytes
    of an incomplete message that were received before it went, and an order session fills
    ``unacknowledged`` with the orders it had sent and not had answered (oldest first)."""

    def __init__(self, message: str, *, partial: int = 0) -> None:
        super().__init__(message)
        self.partial = partial
        self.unacknowledged: list = []


class HeartbeatTimeoutError(ConnectionLost):
    """The peer sent nothing (not even a heartbeat) for longer than the session's timeout."""


class LoginRejectedError(ConnectionError):
    """The server refused the login; ``reason`` is SoupBinTCP's code (``"A"`` or ``"S"``) or FIX text."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"login rejected: {reason}")
        self.reason = reason


def connect_tcp(address: tuple[str, int], timeout: float) -> socket.socket:
    """Open a TCP connection to ``address`` with TCP_NODELAY set and return it non-blocking."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Transport:
    """One TCP socket: whole-message sends under a lock, receives with a deadline.

    ``send`` may be called from any thread; ``receive`` from one thread at a time. ``close`` is
    idempotent and safe from any thread: a ``receive`` blocked in another thread returns at once
    with ``ConnectionLost``.
    """

    receive: Callable[[float], bytes | None]
    """``receive(deadline)``: return the bytes available now or before ``deadline``
    (``time.monotonic()``), None on timeout; ``ConnectionLost`` when the peer closed or reset the
    connection (or the transport is closed). The wait mode's own loop, chosen at construction."""

    def __init__(self, sock: socket.socket, *, busy_poll: bool = False) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.busy_poll = busy_poll
        self.closed = False
        self._send_lock = threading.Lock()
        # Selector mode on Linux: sleep in recv itself (SO_RCVTIMEO bounds it) rather than in epoll
        # and then recv -- one system call per message fewer. The socket is then blocking, so every
        # send and every recv that must not wait says MSG_DONTWAIT, and SO_SNDTIMEO bounds a plain
        # send by someone else on ``sock``.
        self._kernel_wait = not busy_poll and _KERNEL_WAIT
        self._rcvtimeo = 0.0
        self._send_flags = 0
        # the mode's own loop, without a dispatching call per message
        if self._kernel_wait:
            sock.setblocking(True)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(5.0))
            self._send_flags = socket.MSG_DONTWAIT
            self.receive = self._receive_blocking
        elif busy_poll:
            self.receive = self._receive_spinning
        else:
            self.receive = self._receive_selecting
        # epoll directly, not the selectors wrapper: one wait per message, a few microseconds saved
        self._poller = select.epoll() if hasattr(select, "epoll") else select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)
        self._poll_ms = not hasattr(select, "epoll")  # poll() takes milliseconds, epoll seconds
        self._poll_scale = 1000.0 if self._poll_ms else 1.0
        self._poll = self._poller.poll  # bound once: one wait per message

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes, timeout: float = 5.0) -> None:
        """Write all of ``data`` before any other thread's send; ``ConnectionLost`` if it cannot."""
        with self._send_lock:
            try:
                sent = self.sock.send(data, self._send_flags)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                raise ConnectionLost(f"send failed: {error}") from error
            if sent != len(data):  # the usual case is the whole message in one call
                self._send_rest(data, sent, timeout)

    def _send_rest(self, data: bytes, sent: int, timeout: float) -> None:
        """Write ``data`` from byte ``sent`` on, waiting for writability up to ``timeout`` seconds.

        The caller holds the send lock (``send``, or the compiled order path of :mod:`lowlat.wire`
        after its first ``send`` wrote only part of a packet)."""
        view = memoryview(data)[sent:]
        deadline = None
        while view:
            try:
                sent = self.sock.send(view, self._send_flags)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                raise ConnectionLost(f"send failed: {error}") from error
            view = view[sent:]
            if view:
                if deadline is None:
                    deadline = time.monotonic() + timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConnectionLost("send timed out: the peer is not reading")
                with selectors.DefaultSelector() as writable:
                    writable.register(self.sock, selectors.EVENT_WRITE)
                    writable.select(remaining)

    def _receive_selecting(self, deadline: float) -> bytes | None:
        # Sleep in epoll/poll, then recv (where recv cannot sleep itself: not Linux).
        recv = self.sock.recv
        remaining = deadline - _monotonic()
        if remaining > 0:  # wait first: right after a send the answer is never there yet
            self._wait(remaining)
        while True:
            try:
                data = recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError as error:
                return received(error)  # raises ConnectionLost
            if data is not None:
                if not data:
                    return received(data)  # raises ConnectionLost: the peer closed
                return data
            remaining = deadline - _monotonic()
            if remaining <= 0:
                return None
            self._wait(remaining)

    def _receive_spinning(self, deadline: float) -> bytes | None:
        # Spin on recv itself: the turn that finds the bytes returns them (an epoll with a zero
        # timeout is cheaper per empty turn, but the recv after it puts a second system call
        # between the bytes' arrival and their return: ~1 us slower a round trip, measured).
        recv = self.sock.recv
        while True:
            try:
                data = recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                if _monotonic() >= deadline:
                    return None
                continue
            except OSError as error:
                return received(error)  # raises ConnectionLost
            if not data:
                return received(data)  # raises ConnectionLost: the peer closed
            return data

    def _receive_blocking(self, deadline: float) -> bytes | None:
        recv = self.sock.recv
        while True:
            remaining = deadline - _monotonic()
            try:
                if remaining <= 0:
                    data = recv(_RECV_SIZE, _DONTWAIT)
                else:
                    wait = remaining if remaining < _MAX_RCVTIMEO else _MAX_RCVTIMEO
                    if wait < self._rcvtimeo or wait > 2 * self._rcvtimeo:  # else the set one will do
                        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(wait))
                        self._rcvtimeo = wait
                    data = recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                if remaining <= 0:
                    return None
                continue
            except OSError as error:
                return received(error)  # raises ConnectionLost
            if not data:
                return received(data)  # raises ConnectionLost: the peer closed
            return data

    def _wait(self, seconds: float) -> None:
        try:
            self._poller.poll(seconds * 1000 if self._poll_ms else seconds)
        except (OSError, ValueError):  # closed from another thread: the recv that follows says so
            pass

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.receive = _receive_closed  # not the bound method set in __init__: no cycle left for the gc
        try:
            poller = self._poller
            if not self._poll_ms and isinstance(poller, select.epoll):  # a poll object has no close()
                poller.close()
            if self._kernel_wait:  # wake a recv blocked in another thread (close alone would not)
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            self.sock.close()


class SoupConnection:
    """A SoupBinTCP client session on a real TCP connection, reconnectable.

    ``connect()`` opens the socket, logs in (the first time with ``session``/``sequence``, after
    that resuming at the next sequence number it has not received) and waits for the answer:
    :class:`LoginRejectedError`, :class:`~lowlat.net.soupbintcp.SequenceGapError` if the server
    would skip or repeat messages, ``ConnectionLost``/``TimeoutError`` otherwise. Sequenced
    messages replayed at login land in the inbox like any other.

    ``receive(timeout)`` returns the next :class:`~lowlat.net.soupbintcp.SequencedData` (or None
    after ``timeout`` seconds) and meanwhile answers the clock: heartbeats out when due, a
    :class:`HeartbeatTimeoutError` when the server is silent past ``timeout``. Any failure closes
    the connection; ``connect()`` again to resume.
    """

    def __init__(self, address: tuple[str, int], username: str, password: str, *, session: str = "",
                 sequence: int = 1, busy_poll: bool = False, heartbeat_interval: float = 1.0,
                 timeout: float = 15.0, connect_timeout: float = 5.0) -> None:
        self.address = address
        self.client = soup.SoupClient(username, password, session=session, sequence=sequence,
                                      heartbeat_interval=heartbeat_interval, timeout=timeout)
        self.busy_poll = busy_poll
        self.connect_timeout = connect_timeout
        self.transport: Transport | None = None
        self.inbox: deque = deque()
        self.ended = False  # End of Session received
        self.connects = 0
        self._lock = threading.RLock()  # session state: parsing, timers, packet encoding

    @property
    def alive(self) -> bool:
        """Logged in on an open connection."""
        return self.transport is not None and self.client.state is _ACTIVE

    @property
    def last_heartbeat(self) -> float:
        """``time.monotonic()`` of the last bytes from the server (heartbeat or data)."""
        return self.client.last_received

    def connect(self) -> soup.LoginAccepted:
        """Open a new connection and log in, resuming the sequence; return the Login Accepted."""
        with self._lock:
            self.close()
            self.client.reset()
            transport = Transport(connect_tcp(self.address, self.connect_timeout), busy_poll=self.busy_poll)
            self.transport = transport
            self.connects += 1
            try:
                transport.send(self.client.login(time.monotonic()))
                deadline = time.monotonic() + self.connect_timeout
                while self.client.state is soup.SessionState.LOGIN_SENT:
                    data = transport.receive(deadline)
                    if data is None:
                        raise TimeoutError(f"no login answer from {self.address} in {self.connect_timeout} s")
                    for event in self.client.receive_data(data, time.monotonic()):
                        if isinstance(event, soup.LoginRejected):
                            raise LoginRejectedError(event.reason)
                        if isinstance(event, soup.LoginAccepted):
                            accepted = event
                        else:
                            self._absorb(event)
                return accepted
            except BaseException:
                self.close()
                raise

    def _absorb(self, event) -> None:
        if isinstance(event, soup.SequencedData):
            self.inbox.append(event)
        elif isinstance(event, soup.EndOfSession):
            self.ended = True

    def send(self, payload: bytes) -> None:
        """Send ``payload`` as Unsequenced Data (any thread; never interleaved with another send)."""
        with self._lock:
            transport = self.transport
            if transport is None:
                raise ConnectionLost("not connected")
            packet = self.client.send_unsequenced(payload, _monotonic())
            try:
                transport.send(packet)
            except ConnectionLost:
                self.close()
                raise

    def service(self, timeout: float = 0.0) -> None:
        """Read what arrives within ``timeout`` seconds into the inbox and answer the clock.

        One thread at a time; the wait itself holds no lock, so other threads can ``send``.
        """
        transport = self.transport
        if transport is None:
            raise ConnectionLost("not connected")
        client = self.client
        state = client.state
        now = _monotonic()
        deadline = now + timeout
        due = client.next_deadline()
        if due < deadline:
            deadline = due if due > now else now
        self._read_and_take(transport.receive, deadline, state, due)

    def _read_and_take(self, read: Callable[[Any], bytes | None], argument: Any, state: soup.SessionState,
                       due: float) -> None:
        """``read(argument)`` -- the wait -- then :meth:`_took` with what it gave. A
        ``ConnectionLost`` from the wait says how many bytes of an incomplete packet had arrived;
        any error closes the connection. ``service`` passes ``transport.receive`` and its deadline;
        the compiled order path of :mod:`lowlat.wire`, after a ``recv`` of its own, ``received``
        and what that ``recv`` gave (through :func:`lowlat.wire.layered.resume`)."""
        try:
            try:
                data = read(argument)
            except ConnectionLost as error:
                error.partial = self.client.partial
                if error.partial:
                    error.args = (f"{error.args[0]}, {error.partial} bytes into a packet",)
                raise
            self._took(data, state, due)
        except BaseException:
            self.close()
            raise

    def _took(self, data: bytes | None, state: soup.SessionState, due: float) -> None:
        """The rest of ``service`` once the wait gave ``data`` (None: nothing by the deadline):
        parse it into the inbox, then answer the clock if ``due`` passed or ``state`` changed.
        Raises what ``service`` raises; the caller closes the connection on any error."""
        client = self.client
        with self._lock:
            now = _monotonic()
            if data is not None:
                try:
                    events = client.receive_data(data, now)
                except soup.ProtocolError as error:
                    for event in error.events:
                        self._absorb(event)
                    raise
                inbox = self.inbox
                for event in events:
                    if event.__class__ is _SequencedData:  # the usual event: straight to the inbox
                        inbox.append(event)
                    else:
                        self._absorb(event)
            if now < due and client.state is state:
                return  # nothing due: bytes received only move the deadlines later
            out, timeouts = client.poll(now)
            if timeouts:
                raise HeartbeatTimeoutError(f"server silent for {timeouts[0].silent_for:.3f} s "
                                            f"(timeout {client.timeout} s)")
            if out:
                transport = self.transport
                if transport is None:  # closed by another thread meanwhile
                    raise ConnectionLost("not connected")
                transport.send(out)

    def receive(self, timeout: float | None = None) -> soup.SequencedData | None:
        """Return the next sequenced message, waiting up to ``timeout`` seconds (None: forever).

        Raises ``ConnectionLost`` (or :class:`HeartbeatTimeoutError`) when the connection is gone
        and the inbox is empty, :class:`~lowlat.net.soupbintcp.ProtocolError` on garbage; messages
        received before a failure are still returned first.
        """
        inbox = self.inbox
        if inbox:
            return inbox.popleft()
        if timeout is None:
            deadline, remaining = None, 3600.0
        else:
            deadline, remaining = _monotonic() + timeout, timeout
        while True:
            if inbox:
                return inbox.popleft()
            if self.ended:
                raise ConnectionLost("end of session")
            if remaining <= 0:
                return None
            try:
                self.service(remaining)
            except (ConnectionLost, soup.ProtocolError):
                if self.inbox:
                    return self.inbox.popleft()
                raise
            if deadline is not None:
                remaining = deadline - _monotonic()

    def logout(self, timeout: float = 1.0) -> None:
        """Send Logout Request and wait (up to ``timeout``) for the server to close; then close."""
        with self._lock:
            transport = self.transport
            if transport is None:
                return
            try:
                if self.client.state is _ACTIVE:
                    transport.send(self.client.logout(time.monotonic()))
                    deadline = time.monotonic() + timeout
                    while transport.receive(deadline) is not None:
                        pass
            except ConnectionLost:
                pass
            finally:
                self.close()

    def close(self) -> None:
        """Close the socket (idempotent); session and sequence number are kept for ``connect``."""
        with self._lock:
            if self.transport is not None:
                self.transport.close()
                self.transport = None
