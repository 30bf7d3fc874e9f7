"""An exchange simulator on loopback: SoupBinTCP sessions, an application behind them, misbehaviours.

One thread runs everything (a selector over the listening socket and every client connection), so
the simulator is deterministic in the order it handles messages and costs one thread however many
clients connect. Each user (login name) has one :class:`~lowlat.net.soupbintcp.SessionLog`: every
sequenced message for that user is logged there, sent at once if the user is connected, and
replayed from the requested number on a (re)login.

The application is any object with ``on_message(username, payload) -> [(username, payload), ...]``
(the OUCH book in :mod:`lowlat.exchange.ouch_book` is one): each returned pair is a sequenced
message for that user. With that book (:mod:`lowlat.venue`), no FIX gateway, no misbehaviour and
no DEBUG logging, the loop's waits and the SoupBinTCP orders are served in one call to the book's
``serve_ready`` (wait, recv, split, answer, send, log), which hands back anything else to the
general path.

With ``fix_port``, a second listener accepts FIX 4.2/4.4 sessions (one
:class:`~lowlat.net.fix_session.FixSession` per SenderCompID, kept across connections so a
reconnect's gap is recovered by resend); their orders reach the same book through
:class:`~lowlat.exchange.fix_gateway.FixGateway`, so OUCH and FIX users trade with each other.

Misbehaviours (:meth:`ExchangeSimulator.misbehave`), and what a correct client sees (SoupBinTCP;
for FIX: a drop loses the connection and the reconnect's ResendRequest recovers the report,
garbage is reported by the client's reader and skipped, a skipped number is a gap the client
recovers, stopped heartbeats also leave TestRequests unanswered):

``drop_mid_message``  (one-shot) the next sequenced message is cut after half its bytes and the
                      connection closed: ``ConnectionLost`` with ``partial > 0``; the message stays
                      in the log, so a resuming login gets it.
``ack_delay``         (seconds, until cleared) every sequenced message is held this long first.
``garbage``           (one-shot) bytes that are not SoupBinTCP are sent next: ``ProtocolError``.
``stop_heartbeats``   (until cleared) no server heartbeats: the client's ``HeartbeatTimeoutError``.
``skip_sequence``     (one-shot) the next Login Accepted announces one more than requested and the
                      message in between is never sent: ``SequenceGapError``.

Everything received is logged: :attr:`ExchangeSimulator.received` (the latest 10,000) and the
``lowlat.exchange`` logger at DEBUG.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import re
import select
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, cast

from ..net import fix_session as fs
from ..net import soupbintcp as soup

if TYPE_CHECKING:  # imported when a FIX port is asked for
    from .fix_gateway import Answer, FixAnswer, FixGateway

__all__ = ["ExchangeSimulator", "Received", "EchoApplication"]

log = logging.getLogger("lowlat.exchange")

GARBAGE = b"\x00\x07?garbage"
_ACTIVE = soup.SessionState.ACTIVE  # a global: ~10 ns, the Enum member on its class ~130 ns (3.11)


@dataclass(slots=True)  # one per message received: not frozen, which would cost a microsecond more
class Received:
    """One thing the simulator received: when (``time.monotonic()``), from whom, what."""

    at: float
    peer: tuple
    username: str
    event: object


class EchoApplication:
    """Answer every message with the same bytes (a stand-in application for session tests)."""

    def on_message(self, username: str, payload: bytes) -> list[tuple[str, bytes]]:
        return [(username, payload)]


class _Key:
    __slots__ = ("fileobj", "data")

    def __init__(self, fileobj, data) -> None:
        self.fileobj = fileobj
        self.data = data


class _Poller:
    """The few ``selectors`` calls the loop makes, straight on ``epoll`` (a few microseconds less
    per message than the selectors wrapper; ``poll`` where there is no epoll)."""

    def __init__(self) -> None:
        self._epoll = hasattr(select, "epoll")
        self._poller = select.epoll() if self._epoll else select.poll()
        self.scale = 1.0 if self._epoll else 1000.0  # poll() takes milliseconds, epoll seconds
        self._keys: dict[int, _Key] = {}

    def register(self, fileobj, events, data) -> None:
        fd = fileobj.fileno()
        self._keys[fd] = _Key(fileobj, data)
        self._poller.register(fd, select.POLLIN)

    def unregister(self, fileobj) -> None:
        fd = fileobj.fileno()
        if self._keys.pop(fd, None) is None:
            raise KeyError(fd)
        self._poller.unregister(fd)

    def select(self, timeout: float) -> list:
        keys = self._keys
        events = self._poller.poll(timeout if self._epoll else timeout * 1000)
        return [(keys[fd], mask) for fd, mask in events if fd in keys]

    def close(self) -> None:
        poller = self._poller
        if self._epoll and isinstance(poller, select.epoll):  # a poll object has no close()
            poller.close()


class _Alarm:
    """A CLOCK_MONOTONIC timerfd (Linux, through ctypes) for the loop to wait on instead of a timeout.

    Every sleep with a timeout arms a kernel timer and cancels it on wake-up; on a VM that costs
    ~1 us per round trip (measured here: a minimal epoll server, 12.8-13.1 us of CPU per pooled
    OUCH round trip with a 0.25 s timeout, 11.8 us waiting without one). This alarm is re-armed
    only when the loop's next deadline moves, a few times a second. ``create()`` returns None
    where there is no timerfd; the loop then waits with a timeout as before.
    """

    __slots__ = ("fd", "due", "_settime", "_spec")

    def __init__(self, fd: int, settime, spec) -> None:
        self.fd = fd
        self.due = -1.0
        self._settime = settime
        self._spec = spec  # a ctypes struct itimerspec: interval (sec, nsec), value (sec, nsec)

    @classmethod
    def create(cls) -> "_Alarm | None":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            timerfd_create, settime = libc.timerfd_create, libc.timerfd_settime
        except (ImportError, OSError, AttributeError):
            return None
        fd = timerfd_create(1, os.O_NONBLOCK | os.O_CLOEXEC)  # CLOCK_MONOTONIC; TFD_* equal the O_* flags
        if fd < 0:
            return None
        return cls(fd, settime, (ctypes.c_long * 4)())

    def fileno(self) -> int:
        return self.fd

    def arm(self, due: float) -> None:
        """Fire at ``due`` (``time.monotonic()`` seconds, the same clock); at once if it is past."""
        if due == self.due:
            return
        seconds = int(due)
        self._spec[2], self._spec[3] = seconds, max(int((due - seconds) * 1e9), 1 if seconds == 0 else 0)  # 0 disarms
        if self._settime(self.fd, 1, self._spec, None) != 0:  # 1: TFD_TIMER_ABSTIME
            raise OSError("timerfd_settime failed")
        self.due = due

    def clear(self) -> None:
        """Consume the expiry, so the level-triggered poll stops reporting it."""
        try:
            os.read(self.fd, 8)
        except OSError:
            pass

    def close(self) -> None:
        os.close(self.fd)


class _Client:
    __slots__ = ("sock", "peer", "session", "username", "closed", "fix", "pending")

    def __init__(self, sock: socket.socket, peer: tuple, session, fix: bool = False) -> None:
        self.sock = sock
        self.peer = peer
        self.session = session  # SoupServer, or the user's FixSession once its Logon names it
        self.username = ""
        self.closed = False
        self.fix = fix
        self.pending = bytearray()  # FIX bytes before the Logon says who this is


_COMP_ID = re.compile(rb"\x0149=([^\x01]{1,64})\x01")
_BEGIN = re.compile(rb"^8=(FIX\.4\.[24])\x01")


class ExchangeSimulator:
    """A SoupBinTCP (and, with ``fix_port``, FIX) exchange on ``host`` (loopback) and ``port``
    (0: a free one), in a thread.

    ``users`` maps usernames to passwords (None: anyone may log in); ``session`` is the session id
    every user is given. ``start()`` binds and starts the thread and returns ``self``; ``address``
    is then the ``(host, port)`` to connect to; ``stop()`` closes every connection and joins the
    thread (also on leaving a ``with`` block). Methods are thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, application=None, users: dict | None = None,
                 session: str = "SIM0000001", heartbeat_interval: float = 1.0, timeout: float = 15.0,
                 fix_port: int | None = None, fix_comp_id: str = "EXCH", busy_poll: bool = False) -> None:
        self.host = host
        self.busy_poll = busy_poll
        self.port = port
        self.application = application if application is not None else EchoApplication()
        self.fix_port = fix_port
        self.fix_comp_id = fix_comp_id
        self.fix_sessions: dict[str, fs.FixSession] = {}  # SenderCompID -> its session, across connections
        self.gateway: FixGateway | None = None
        if fix_port is not None:
            from .fix_gateway import FixGateway

            # _fix_gateway: the same object, not Optional, for the FIX path (FIX clients exist
            # only with fix_port): no None check per message
            self.gateway = self._fix_gateway = FixGateway(self.application)
        self._fix_listener: socket.socket | None = None
        self.users = users
        self.session = session
        self.heartbeat_interval = heartbeat_interval
        self.timeout = timeout
        self.received: deque[Received] = deque(maxlen=10_000)
        self.logs: dict[str, soup.SessionLog] = {}
        self.connections = 0
        self._lock = threading.Lock()
        self._misbehaviour = {"drop_mid_message": False, "ack_delay": 0.0, "garbage": False,
                              "stop_heartbeats": False, "skip_sequence": False}
        # Any misbehaviour set: read by the loop without the lock (one attribute read under the GIL)
        # so a well-behaved answer takes no lock at all; written only under the lock.
        self._misbehaving = False
        self._clients: dict[str, _Client] = {}  # logged-in user -> connection
        self._doomed: set[str] = set()  # users to disconnect at the loop's next turn
        self._delayed: list = []  # heap of (due, tiebreak, username, payload)
        self._tiebreak = itertools.count()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stop_requested = False  # what the loop reads each turn: an attribute, not a call to is_set()
        self._wake_r, self._wake_w = socket.socketpair()

    # -- control -------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the simulator listens on (after ``start``)."""
        if self._listener is None:
            raise RuntimeError("the simulator is not started")
        return self._listener.getsockname()[:2]

    @property
    def fix_address(self) -> tuple[str, int]:
        """``(host, port)`` of the FIX listener (after ``start`` with ``fix_port``)."""
        if self._fix_listener is None:
            raise RuntimeError("the simulator has no FIX listener (pass fix_port)")
        return self._fix_listener.getsockname()[:2]

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, port))
        listener.listen(64)
        listener.setblocking(False)
        return listener

    def start(self) -> "ExchangeSimulator":
        """Bind, listen and run the event loop in a daemon thread; return ``self``."""
        self._listener = self._listen(self.port)
        if self.fix_port is not None:
            self._fix_listener = self._listen(self.fix_port)
        self._thread = threading.Thread(target=self._run, name="lowlat-exchange", daemon=True)
        self._thread.start()
        log.info("exchange simulator listening on %s:%d", *self.address)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, close every socket and join the thread (at most ``timeout`` seconds)."""
        self._stop_requested = True
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("the exchange simulator thread did not stop")
            self._thread = None
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> "ExchangeSimulator":
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def misbehave(self, **changes) -> None:
        """Set misbehaviours: ``drop_mid_message``, ``garbage``, ``skip_sequence`` (one-shot
        booleans), ``ack_delay`` (seconds), ``stop_heartbeats`` (bool)."""
        with self._lock:
            for name, value in changes.items():
                if name not in self._misbehaviour:
                    raise ValueError(f"unknown misbehaviour {name!r}; choose from {sorted(self._misbehaviour)}")
                self._misbehaviour[name] = value
            self._misbehaving = any(self._misbehaviour.values())
        self._wake()

    def behave(self) -> None:
        """Clear every misbehaviour."""
        self.misbehave(drop_mid_message=False, ack_delay=0.0, garbage=False, stop_heartbeats=False,
                       skip_sequence=False)

    def send(self, username: str, payload: bytes) -> None:
        """Queue a sequenced message for ``username`` from outside the loop (an unsolicited one)."""
        with self._lock:
            heapq.heappush(self._delayed, (0.0, next(self._tiebreak), username, payload))
        self._wake()

    def disconnect(self, username: str) -> None:
        """Close ``username``'s connection abruptly (no End of Session)."""
        with self._lock:
            self._doomed.add(username)
        self._wake()

    def connected(self) -> list[str]:
        """Usernames logged in right now."""
        with self._lock:
            return sorted(self._clients)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        listener = self._listener
        assert listener is not None  # start() binds it before it starts this thread
        selector = _Poller()
        selector.register(listener, selectors.EVENT_READ, None)
        if self._fix_listener is not None:
            selector.register(self._fix_listener, selectors.EVENT_READ, "fix")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        alarm = _Alarm.create() if selector.scale == 1.0 else None  # with epoll only
        if alarm is not None:
            selector.register(alarm, selectors.EVENT_READ, "alarm")
            alarm.arm(time.monotonic())  # the loop's first turn runs the timers
        all_clients: set[_Client] = set()
        try:
            self._loop(selector, all_clients, alarm)
        finally:
            if alarm is not None:
                selector.unregister(alarm)
                alarm.close()
            for client in list(all_clients):
                self._close(client, selector, all_clients)
            selector.close()
            listener.close()
            if self._fix_listener is not None:
                self._fix_listener.close()

    def _loop(self, selector: "_Poller", all_clients: set, alarm: _Alarm | None = None) -> None:
        """Wait, read, answer; run the timers only when one is due or something but an order came in.

        A SoupBinTCP read can only move timer deadlines later (or queue a delayed answer, which
        ``_delayed`` shows), so after one the timers are not walked again before they are due:
        the common path is epoll, recv, parse, answer, send -- nothing per client, nothing per timer.
        With the OUCH book of :mod:`lowlat.venue` as the application, no FIX gateway, no
        misbehaviour and no debug logging, the waits are one call, the book's ``serve_ready``
        (epoll with the GIL released -- in ``busy_poll`` mode a spin on each connection's ``recv``
        -- then for each ready connection recv, split, answer, send, log, and on to the next wait);
        it returns when something needs this loop: the bytes it read and does not handle, for
        :meth:`_received`, and every other ready descriptor, for the dispatch below.
        DEBUG logging switched on while the loop runs is seen when the timers next run (within
        0.25 s); a misbehaviour at once. With an ``alarm`` (a timerfd) the wait has no timeout:
        the alarm wakes the loop when the timers are due.
        """
        keys, wait, scale = selector._keys, selector._poller.poll, selector.scale
        monotonic, busy_poll, read = time.monotonic, self.busy_poll, self._read
        book = self._serve_of(self.application) if self.gateway is None else None
        # the book's whole wake-up: wait, then serve every ready OUCH connection (called only when book is not None)
        serve_ready = cast("Callable[..., list]", book)
        poller = selector._poller if selector._epoll else None  # serve_ready waits on an epoll only
        received, debug_on = self.received, log.isEnabledFor

        def deliver(username: str, payload: bytes, now: float) -> None:  # a fill's counterparty
            self._sequenced(username, payload, now, selector, all_clients)

        timers_due = 0.0
        fast = False  # set when the timers first run, below
        while not self._stop_requested:
            if alarm is not None:
                timeout = -1.0  # no timer to arm per sleep: the alarm is armed at timers_due
            else:
                timeout = timers_due - monotonic()
                if timeout < 0.0:
                    timeout = 0.0
            other = False
            events: list
            if fast and not self._misbehaving:
                events = serve_ready(poller, timeout, keys, _Client, received, deliver, self, busy_poll)
            else:
                events = [(keys.get(fd), None) for fd, _ in wait((0.0 if busy_poll else timeout) * scale)]
            for key, data in events:
                if key is None:
                    continue
                client = key.data
                if data is not None:  # read by serve_ready, not its case: the general path parses it
                    self._received(client, data, selector, all_clients)
                    continue
                if client.__class__ is _Client and not client.fix:
                    read(client, selector, all_clients)
                    continue
                other = True
                if client is None or client == "fix":
                    self._accept(key.fileobj, selector, all_clients)
                elif client == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                elif client == "alarm":
                    alarm.clear()  # type: ignore[union-attr]  # registered only when there is one
                else:
                    self._read(client, selector, all_clients)
            if alarm is not None and not other and not self._delayed:
                continue  # the timers are not due: the alarm would have been among the events
            now = monotonic()
            if other or now >= timers_due or self._delayed:
                self._timers(selector, all_clients, now)
                timers_due = now + self._next_timer(all_clients, now)
                if alarm is not None:
                    alarm.arm(timers_due)
                # Whether DEBUG logging is on, read here (at least every 0.25 s, and after any
                # misbehave() or new connection) rather than once per order.
                fast = book is not None and not debug_on(logging.DEBUG)

    @staticmethod
    def _serve_of(application):
        """The application's whole wake-up (``serve_ready``) when it is a :mod:`lowlat.venue` book
        (either backend) and the loop waits on epoll, else None."""
        if type(application).__module__ in ("lowlat.venue._c", "lowlat.venue._py") and hasattr(select, "epoll"):
            return application.serve_ready
        return None

    def _next_timer(self, clients, now: float) -> float:
        due = now + 0.25
        if self._delayed:
            due = min(due, self._delayed[0][0])
        for client in clients:
            session = client.session
            if session is None:
                continue
            if client.fix:
                due = min(due, session.next_deadline())
            else:
                due = min(due, session.last_sent + session.heartbeat_interval, session.last_received + session.timeout)
        return max(due - now, 0.0)

    def _accept(self, listener, selector, clients) -> None:
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        if listener is self._fix_listener:
            client = _Client(sock, peer, None, fix=True)
        else:
            session = soup.SoupServer(heartbeat_interval=self.heartbeat_interval, timeout=self.timeout)
            session.last_received = session.last_sent = time.monotonic()
            client = _Client(sock, peer, session)
        clients.add(client)
        selector.register(sock, selectors.EVENT_READ, client)
        self.connections += 1
        log.info("connection from %s:%d", *peer[:2])

    def _close(self, client: _Client, selector, clients) -> None:
        if client.closed:
            return
        client.closed = True
        clients.discard(client)
        try:
            selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()
        with self._lock:
            if client.username and self._clients.get(client.username) is client:
                del self._clients[client.username]
        log.info("closed %s:%d (%s)", client.peer[0], client.peer[1], client.username or "not logged in")

    def _write(self, client: _Client, data: bytes, selector, clients) -> None:
        """Send all of ``data``; a client that does not read for 2 s is dropped."""
        try:
            try:
                sent = client.sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):  # rare: the client's receive window is full
                client.sock.settimeout(2.0)
                client.sock.sendall(data[sent:])
                client.sock.setblocking(False)
        except OSError as error:
            log.info("write to %s failed: %s", client.username, error)
            self._close(client, selector, clients)

    def _read(self, client: _Client, selector, clients) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError, socket.timeout):
            return
        except OSError:
            data = b""
        self._received(client, data, selector, clients)

    def _received(self, client: _Client, data: bytes, selector, clients) -> None:
        """Handle ``data`` read from ``client`` (``b""``: it closed, or reading or writing failed)."""
        if not data:
            self._close(client, selector, clients)
            return
        now = time.monotonic()
        if client.fix:
            self._read_fix(client, data, now, selector, clients)
            return
        failure: soup.ProtocolError | None
        try:
            events = client.session.receive_data(data, now)
        except soup.ProtocolError as error:
            events = error.events
            failure = error
        else:
            failure = None
        debug = log.isEnabledFor(logging.DEBUG)  # once per read, not once per message
        received = self.received.append
        for event in events:
            who = event.username if event.__class__ is soup.LoginRequest else client.username
            received(Received(now, client.peer, who, event))
            if debug:
                log.debug("received from %s: %r", client.username or client.peer, event)
            if event.__class__ is soup.UnsequencedData and self.gateway is None:  # an order: _handle inline
                for username, payload in self.application.on_message(client.username, event.payload):
                    self._sequenced(username, payload, now, selector, clients)
            else:
                self._handle(client, event, now, selector, clients)
            if client.closed:
                return
        if failure is not None:
            log.warning("protocol error from %s: %s; closing", client.username or client.peer, failure)
            self.received.append(Received(now, client.peer, client.username, failure))
            self._close(client, selector, clients)

    def _handle(self, client: _Client, event, now: float, selector, clients) -> None:
        if event.__class__ is soup.UnsequencedData:  # the hot path first
            answers = self.application.on_message(client.username, event.payload)
            if self.gateway is not None:
                answers = self.gateway.translate(answers)
            for username, payload in answers:
                self._sequenced(username, payload, now, selector, clients)
        elif isinstance(event, soup.LoginRequest):
            self._login(client, event, now, selector, clients)
        elif isinstance(event, soup.LogoutRequest):
            self._close(client, selector, clients)

    def _login(self, client: _Client, request: soup.LoginRequest, now: float, selector, clients) -> None:
        if self.users is not None and self.users.get(request.username) != request.password:
            self._write(client, client.session.reject(soup.REJECT_NOT_AUTHORIZED, now), selector, clients)
            self._close(client, selector, clients)
            return
        if request.session not in ("", self.session):
            self._write(client, client.session.reject(soup.REJECT_SESSION_NOT_AVAILABLE, now), selector, clients)
            self._close(client, selector, clients)
            return
        with self._lock:
            previous = self._clients.get(request.username)
            skip = self._misbehaviour["skip_sequence"]
            self._misbehaviour["skip_sequence"] = False
            self._misbehaving = any(self._misbehaviour.values())
        if previous is not None:  # one connection per user: the newer login wins
            self._close(previous, selector, clients)
        session_log = self._log_of(request.username)
        client.username = request.username
        with self._lock:
            self._clients[request.username] = client
        if skip:
            start = session_log.next_sequence if request.sequence == 0 else min(request.sequence, session_log.next_sequence)
            if start == session_log.next_sequence:
                session_log.append(b"")  # a message the client will never see
            data = client.session.accept(session_log, start + 1, now, announce=start + 1)
        else:
            data = client.session.accept(session_log, request.sequence, now)
        log.info("login %s from %s:%d at sequence %d", request.username, client.peer[0], client.peer[1],
                 request.sequence)
        self._write(client, data, selector, clients)

    def _log_of(self, username: str) -> soup.SessionLog:
        log_ = self.logs.get(username)
        if log_ is None:
            log_ = self.logs[username] = soup.SessionLog(self.session)
        return log_

    def _sequenced(self, username: str, payload: bytes | Answer, now: float, selector, clients) -> None:
        if not self._misbehaving and payload.__class__ is bytes:
            # Well-behaved and OUCH: no lock (only this thread changes _clients), no misbehaviour lookups.
            client = self._clients.get(username)
            if client is None or client.session.state is not _ACTIVE:
                self._log_of(username).append(payload)  # kept for the user's next login
            else:
                self._write(client, client.session.send_sequenced(payload, now), selector, clients)
            return
        with self._lock:
            delay = self._misbehaviour["ack_delay"]
        if delay > 0:
            with self._lock:
                heapq.heappush(self._delayed, (now + delay, next(self._tiebreak), username, payload))
            return
        self._deliver(username, payload, now, selector, clients)

    def _deliver(self, username: str, payload: bytes | Answer, now: float, selector, clients) -> None:
        if isinstance(payload, tuple):  # from the FIX gateway: ("fix", message) or ("ouch", bytes)
            if payload[0] == "fix":
                self._deliver_fix(username, payload[1], now, selector, clients)
                return
            payload = payload[1]
        session_log = self._log_of(username)
        with self._lock:
            client = self._clients.get(username)
            garbage = self._misbehaviour["garbage"]
            drop = self._misbehaviour["drop_mid_message"]
            if client is not None:
                self._misbehaviour["garbage"] = False
                self._misbehaviour["drop_mid_message"] = False
                self._misbehaving = any(self._misbehaviour.values())
        if client is None or client.session.state is not _ACTIVE:
            session_log.append(payload)  # kept for the user's next login
            return
        packet = client.session.send_sequenced(payload, now)
        if garbage:
            self._write(client, GARBAGE + packet, selector, clients)
        elif drop:
            self._write(client, packet[:max(len(packet) // 2, 1)], selector, clients)
            self._close(client, selector, clients)
        else:
            self._write(client, packet, selector, clients)

    # -- FIX ---------------------------------------------------------------------------------------

    def _read_fix(self, client: _Client, data: bytes, now: float, selector, clients) -> None:
        if client.session is None:
            client.pending += data
            comp = _COMP_ID.search(client.pending)
            begin = _BEGIN.search(client.pending)
            if comp is None or begin is None:
                if len(client.pending) > 4096 or (client.pending and not client.pending.startswith(b"8"[:1])):
                    self._close(client, selector, clients)
                return
            user = comp.group(1).decode("latin-1")
            begin_string = begin.group(1).decode("ascii")
            session = self.fix_sessions.get(user)
            if session is None or session.begin_string != begin_string:
                session = fs.FixSession(self.fix_comp_id, user, begin_string, heartbeat_interval=self.heartbeat_interval,
                                        initiator=False)
                self.fix_sessions[user] = session
            session.reset_connection()
            session.last_received = session.last_sent = now
            client.session = session
            client.username = user
            self._fix_gateway.begin_strings[user] = begin_string
            data, client.pending = bytes(client.pending), bytearray()
        session = client.session
        events = session.receive_data(data, now)
        with self._lock:
            quiet = self._misbehaviour["stop_heartbeats"]
        out = session.data_to_send()
        if out and not quiet:
            self._write(client, out, selector, clients)
        for event in events:
            self.received.append(Received(now, client.peer, client.username, event))
            log.debug("received from %s: %r", client.username, event)
            if isinstance(event, fs.LoggedOn):
                with self._lock:
                    previous = self._clients.get(client.username)
                    self._clients[client.username] = client
                if previous is not None and previous is not client:
                    self._close(previous, selector, clients)
                log.info("FIX logon %s from %s:%d (%s)", client.username, client.peer[0], client.peer[1],
                         session.begin_string)
            elif isinstance(event, fs.AppMessage):
                for username, answer in self._fix_gateway.on_fix(client.username, event):
                    self._sequenced(username, answer, now, selector, clients)
            elif isinstance(event, fs.MalformedMessage):
                log.warning("malformed FIX from %s: %s", client.username, event.error)
            elif isinstance(event, (fs.LoggedOut, fs.SessionError)):
                self._close(client, selector, clients)
            if client.closed:
                return

    def _deliver_fix(self, username: str, message: FixAnswer, now: float, selector, clients) -> None:
        name, args, kwargs = message
        session = self.fix_sessions.get(username)
        if session is None:
            return
        with self._lock:
            client = self._clients.get(username)
            if client is not None and session.state is fs.FixState.ACTIVE:
                garbage = self._misbehaviour["garbage"]
                drop = self._misbehaviour["drop_mid_message"]
                skip = self._misbehaviour["skip_sequence"]
                self._misbehaviour["garbage"] = self._misbehaviour["drop_mid_message"] = False
                self._misbehaviour["skip_sequence"] = False
                self._misbehaving = any(self._misbehaviour.values())
            else:
                client = None  # not connected
        if client is None:
            session.store(name, now, *args, **kwargs)  # numbered and kept: the next logon recovers it
            return
        if skip:
            session.skip_sequence_number()
        data = session.send(name, now, *args, **kwargs)
        if garbage:
            self._write(client, GARBAGE + data, selector, clients)
        elif drop:
            self._write(client, data[:max(len(data) // 2, 1)], selector, clients)
            self._close(client, selector, clients)
        else:
            self._write(client, data, selector, clients)

    def _timers(self, selector, clients, now: float) -> None:
        while True:
            with self._lock:
                if not self._delayed or self._delayed[0][0] > now:
                    break
                _, _, username, payload = heapq.heappop(self._delayed)
            self._deliver(username, payload, now, selector, clients)
        with self._lock:
            quiet = self._misbehaviour["stop_heartbeats"]
            doomed, self._doomed = self._doomed, set()
        for client in list(clients):
            if client.username in doomed:
                self._close(client, selector, clients)
                continue
            session = client.session
            if session is None:
                continue
            if client.fix:
                out, events = session.poll(now)
                if events:
                    log.info("FIX client %s silent: closing", client.username)
                    self._close(client, selector, clients)
                elif out and not quiet:
                    self._write(client, out, selector, clients)
                continue
            if quiet and session.state is _ACTIVE:
                session.last_sent = now  # pretend: nothing goes out
            out, timeouts = session.poll(now)
            if timeouts:
                log.info("client %s silent for %.3f s: closing", client.username or client.peer, timeouts[0].silent_for)
                self._close(client, selector, clients)
            elif out:
                self._write(client, out, selector, clients)
