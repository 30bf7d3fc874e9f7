"""SoupBinTCP 3.0 sessions without I/O: feed bytes and the time in, get events and bytes out.

The model is h11: a session object never touches a socket. ``receive_data(data, now)`` parses what
arrived (any split, down to one byte at a time) and returns the events it completes;
``send_*`` methods return the bytes to write; ``poll(now)`` says when a heartbeat is due and when
the peer has been silent too long. ``now`` is any monotonic clock in seconds
(``time.monotonic()``); the socket layer in :mod:`lowlat.net.connection` supplies it.

Wire format (SoupBinTCP 3.0): every packet is a 2-byte big-endian length (of what follows), a
1-byte packet type and a payload. Alpha fields are ASCII, left-justified and padded with spaces
(the session id is right-justified, as the spec shows it); numeric fields are ASCII decimal,
right-justified and padded with spaces. Sequenced data carries no sequence number: both sides
count, starting from the number in Login Accepted.

Not thread-safe: one thread drives a session at a time (the connection layer holds the lock).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "ProtocolError",
    "SequenceGapError",
    "SessionState",
    "Debug",
    "LoginRequest",
    "LoginAccepted",
    "LoginRejected",
    "SequencedData",
    "UnsequencedData",
    "ServerHeartbeat",
    "ClientHeartbeat",
    "EndOfSession",
    "LogoutRequest",
    "HeartbeatTimeout",
    "REJECT_NOT_AUTHORIZED",
    "REJECT_SESSION_NOT_AVAILABLE",
    "MAX_PAYLOAD",
    "encode_packet",
    "PacketReader",
    "SoupClient",
    "SoupServer",
    "SessionLog",
]

# Packet types: server to client, client to server, and Debug either way.
DEBUG = b"+"
LOGIN_ACCEPTED = b"A"
LOGIN_REJECTED = b"J"
SEQUENCED_DATA = b"S"
SERVER_HEARTBEAT = b"H"
END_OF_SESSION = b"Z"
LOGIN_REQUEST = b"L"
UNSEQUENCED_DATA = b"U"
CLIENT_HEARTBEAT = b"R"
LOGOUT_REQUEST = b"O"

REJECT_NOT_AUTHORIZED = "A"
REJECT_SESSION_NOT_AVAILABLE = "S"

MAX_PAYLOAD = 0xFFFF - 1  # the length field counts the type byte too
_LENGTH = struct.Struct(">H")

_USERNAME, _PASSWORD, _SESSION, _SEQUENCE = 6, 10, 10, 20
_LOGIN_REQUEST_SIZE = _USERNAME + _PASSWORD + _SESSION + _SEQUENCE
_LOGIN_ACCEPTED_SIZE = _SESSION + _SEQUENCE

_SERVER_TYPES = frozenset(b"+AJSHZ")
_CLIENT_TYPES = frozenset(b"+LURO")


class ProtocolError(ValueError):
    """The peer sent bytes that are not valid SoupBinTCP here: the session cannot go on.

    ``events`` holds what the same ``receive_data`` call completed before the bad bytes, so an
    acknowledgement that arrived just before garbage is not lost.
    """

    events: list = []


class SequenceGapError(ProtocolError):
    """A (re)login was accepted at another sequence number than the one requested."""

    def __init__(self, expected: int, received: int) -> None:
        super().__init__(f"login accepted at sequence {received}, expected {expected}: "
                         f"{received - expected} sequenced message(s) would be skipped")
        self.expected = expected
        self.received = received


class SessionState(enum.Enum):
    """Where a session is: ``IDLE`` (no login yet / between connections), ``LOGIN_SENT``
    (client waiting for the answer), ``ACTIVE`` (logged in) and ``CLOSED`` (logged out, rejected,
    ended or timed out; ``reset()`` makes a client ``IDLE`` again for a reconnect)."""

    IDLE = "idle"
    LOGIN_SENT = "login sent"
    ACTIVE = "active"
    CLOSED = "closed"


# The members as plain module globals for the per-message paths: an Enum member looked up on its
# class costs ~130 ns on Python 3.11, a global ~10 ns, and a message checks the state several times.
_IDLE, _LOGIN_SENT, _ACTIVE, _CLOSED = (SessionState.IDLE, SessionState.LOGIN_SENT, SessionState.ACTIVE,
                                       SessionState.CLOSED)


# ------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Debug:
    """Free text either side may send; ignored by the protocol."""

    text: str


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """A client's login: ``session`` "" asks for the current session; ``sequence`` 0 for the next
    message only, else the number of the first sequenced message it wants (re)sent."""

    username: str
    password: str
    session: str
    sequence: int


@dataclass(frozen=True, slots=True)
class LoginAccepted:
    """The server took the login: ``sequence`` is the number of the next sequenced message."""

    session: str
    sequence: int


@dataclass(frozen=True, slots=True)
class LoginRejected:
    """The server refused the login: ``reason`` is ``"A"`` (not authorized) or ``"S"`` (session
    not available)."""

    reason: str


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~1 us more to build, per message
class SequencedData:
    """A server message with its (implicit, counted) sequence number."""

    sequence: int
    payload: bytes


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~1 us more to build, per message
class UnsequencedData:
    """A message outside the sequence (client to server: an order)."""

    payload: bytes


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~1 us more to build, per message
class ServerHeartbeat:
    """The server is alive."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~1 us more to build, per message
class ClientHeartbeat:
    """The client is alive."""


@dataclass(frozen=True, slots=True)
class EndOfSession:
    """The server ended the session: no more sequenced messages, the connection will close."""


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """The client is leaving."""


@dataclass(frozen=True, slots=True)
class HeartbeatTimeout:
    """The peer sent nothing for ``silent_for`` seconds (more than the session's timeout)."""

    silent_for: float


# ------------------------------------------------------------------------------------------------
# Framing
# ------------------------------------------------------------------------------------------------


def encode_packet(kind: bytes, payload: bytes = b"") -> bytes:
    """Return one packet: length, ``kind`` (one byte) and ``payload``; ``ValueError`` if too long."""
    if len(kind) != 1:
        raise ValueError(f"kind must be one byte, got {kind!r}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload is {len(payload)} bytes; a SoupBinTCP packet carries at most {MAX_PAYLOAD}")
    return _LENGTH.pack(len(payload) + 1) + kind + payload


def _alpha(value: str, width: int, name: str, *, right: bool = False) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"{name} is at most {width} ASCII characters, got {value!r}")
    return raw.rjust(width) if right else raw.ljust(width)


def _numeric(value: int, width: int, name: str) -> bytes:
    if value < 0 or len(str(value)) > width:
        raise ValueError(f"{name} must be a non-negative integer of at most {width} digits, got {value!r}")
    return str(value).encode("ascii").rjust(width)


def _parse_numeric(raw: bytes, name: str) -> int:
    text = raw.strip(b" ")
    if not text.isdigit():
        raise ProtocolError(f"{name} is not a number: {raw!r}")
    return int(text)


def _parse_alpha(raw: bytes, name: str) -> str:
    try:
        return raw.decode("ascii").strip(" ")
    except UnicodeDecodeError:
        raise ProtocolError(f"{name} is not ASCII: {raw!r}") from None


class PacketReader:
    """Split a byte stream into ``(kind, payload)`` packets, whatever the chunking.

    ``allowed`` is the set of packet-type bytes this side may receive; any other type, and a
    zero length, raise :class:`ProtocolError` (the stream cannot be resynchronised after that).
    Complexity: amortised O(bytes fed); a partial packet is kept until completed.
    """

    __slots__ = ("_buffer", "_allowed")

    def __init__(self, allowed: frozenset[int]) -> None:
        self._buffer = bytearray()
        self._allowed = allowed

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole packet."""
        return len(self._buffer)

    def clear(self) -> None:
        """Forget a partial packet (for a new connection)."""
        self._buffer.clear()

    def feed(self, data: bytes) -> None:
        """Append ``data`` to what is buffered."""
        self._buffer += data

    def next_packet(self) -> tuple[bytes, bytes] | None:
        """Return the oldest complete ``(kind, payload)``, or None until more bytes arrive."""
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        (length,) = _LENGTH.unpack_from(buffer, 0)
        if length == 0:
            raise ProtocolError("not a SoupBinTCP packet here: length 0")
        if len(buffer) < 3:
            return None
        kind = buffer[2]
        if kind not in self._allowed:
            raise ProtocolError(f"not a SoupBinTCP packet here: length {length}, type {bytes([kind])!r}")
        if len(buffer) < 2 + length:
            return None
        packet = (bytes([kind]), bytes(buffer[3:2 + length]))
        del buffer[:2 + length]
        return packet


_KINDS = [bytes([i]) for i in range(256)]  # one shared bytes object per packet type: no allocation per packet


def _drain(reader: PacketReader, data: bytes, handle) -> list:
    buffer = reader._buffer
    if buffer or data.__class__ is not bytes:
        return _drain_buffered(reader, data, handle)
    # The usual case: nothing left over from the last read. Parse the packets straight out of
    # ``data`` (one copy per payload, none into the buffer) and keep only an incomplete tail.
    events: list = []
    size = len(data)
    position = 0
    allowed = reader._allowed
    try:
        while size - position >= 3:
            length = data[position] << 8 | data[position + 1]
            if length == 0:
                raise ProtocolError("not a SoupBinTCP packet here: length 0")
            kind = data[position + 2]
            if kind not in allowed:
                raise ProtocolError(f"not a SoupBinTCP packet here: length {length}, type {_KINDS[kind]!r}")
            end = position + 2 + length
            if end > size:
                break
            events.append(handle(_KINDS[kind], data[position + 3:end]))
            position = end
        if size - position == 2 and data[position] == 0 and data[position + 1] == 0:
            raise ProtocolError("not a SoupBinTCP packet here: length 0")
    except ProtocolError as error:
        buffer += data[position:]  # as the buffered path leaves it: the bad packet onwards
        error.events = events
        raise
    if position < size:
        buffer += data[position:]
    return events


def _drain_buffered(reader: PacketReader, data: bytes, handle) -> list:
    reader.feed(data)
    events: list = []
    try:
        while (packet := reader.next_packet()) is not None:
            events.append(handle(*packet))
    except ProtocolError as error:
        error.events = events
        raise
    return events


def _expect_size(kind: bytes, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise ProtocolError(f"packet {kind!r} must carry {size} bytes, got {len(payload)}")


# ------------------------------------------------------------------------------------------------
# Client
# ------------------------------------------------------------------------------------------------


class SoupClient:
    """The client side of one SoupBinTCP session, across reconnects.

    ``session`` ("" for the current one) and ``sequence`` (the first sequenced message wanted; 1 =
    from the start, 0 = only new ones) go into the first login; after that the client remembers
    the session it was given and the next sequence number it expects, so ``reset()`` + ``login()``
    on a new connection resumes exactly where the last one stopped. A login accepted at another
    number than requested raises :class:`SequenceGapError` unless ``allow_gap`` (messages would be
    lost or repeated silently otherwise).

    Timers: a heartbeat is due after ``heartbeat_interval`` seconds without sending (the spec: 1 s);
    the server is declared silent after ``timeout`` seconds without receiving (the spec: 15 s).
    """

    def __init__(self, username: str, password: str, *, session: str = "", sequence: int = 1,
                 heartbeat_interval: float = 1.0, timeout: float = 15.0, allow_gap: bool = False) -> None:
        _alpha(username, _USERNAME, "username")
        _alpha(password, _PASSWORD, "password")
        _alpha(session, _SESSION, "session")
        _numeric(sequence, _SEQUENCE, "sequence")
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0, got {heartbeat_interval!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self.username = username
        self.password = password
        self.session = session
        self.next_sequence = sequence
        self.heartbeat_interval = heartbeat_interval
        self.timeout = timeout
        self.allow_gap = allow_gap
        self.state = _IDLE
        self.last_received = 0.0
        self.last_sent = 0.0
        self._requested = sequence
        self._reader = PacketReader(_SERVER_TYPES)

    @property
    def partial(self) -> int:
        """Bytes received that do not make a whole packet yet (a connection cut mid-message)."""
        return self._reader.pending

    def reset(self) -> None:
        """Prepare for a new connection: drop partial bytes, keep session and sequence number."""
        self._reader.clear()
        self.state = _IDLE

    def login(self, now: float) -> bytes:
        """Return the Login Request for the remembered session and next sequence number."""
        if self.state is not _IDLE:
            raise RuntimeError(f"login needs an idle session (call reset() first), state is {self.state.value}")
        self._requested = self.next_sequence
        payload = (_alpha(self.username, _USERNAME, "username") + _alpha(self.password, _PASSWORD, "password")
                   + _alpha(self.session, _SESSION, "session", right=True)
                   + _numeric(self.next_sequence, _SEQUENCE, "sequence"))
        self.state = _LOGIN_SENT
        self.last_sent = self.last_received = now
        return encode_packet(LOGIN_REQUEST, payload)

    def send_unsequenced(self, payload: bytes, now: float) -> bytes:
        """Return an Unsequenced Data packet carrying ``payload`` (an order message)."""
        if self.state is not _ACTIVE:
            self._require_active("send data")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload is {len(payload)} bytes; a SoupBinTCP packet carries at most {MAX_PAYLOAD}")
        self.last_sent = now
        return _LENGTH.pack(len(payload) + 1) + UNSEQUENCED_DATA + payload

    def send_heartbeat(self, now: float) -> bytes:
        """Return a Client Heartbeat."""
        self._require_active("send a heartbeat")
        self.last_sent = now
        return encode_packet(CLIENT_HEARTBEAT)

    def send_debug(self, text: str, now: float) -> bytes:
        """Return a Debug packet (ASCII text)."""
        self.last_sent = now
        return encode_packet(DEBUG, text.encode("ascii"))

    def logout(self, now: float) -> bytes:
        """Return a Logout Request; the session is closed from here on."""
        self._require_active("log out")
        self.state = _CLOSED
        self.last_sent = now
        return encode_packet(LOGOUT_REQUEST)

    def poll(self, now: float) -> tuple[bytes, list[HeartbeatTimeout]]:
        """Return ``(bytes to send, events)`` the clock calls for: a heartbeat when one is due, a
        :class:`HeartbeatTimeout` (and the session closed) when the server has been silent too long."""
        if self.state is _ACTIVE or self.state is _LOGIN_SENT:
            silent = now - self.last_received
            if silent > self.timeout:
                self.state = _CLOSED
                return b"", [HeartbeatTimeout(silent)]
        if self.state is _ACTIVE and now - self.last_sent >= self.heartbeat_interval:
            return self.send_heartbeat(now), []
        return b"", []

    def next_deadline(self) -> float:
        """The clock value at which ``poll`` next has something to do."""
        if self.state is _ACTIVE:
            return min(self.last_sent + self.heartbeat_interval, self.last_received + self.timeout)
        if self.state is _LOGIN_SENT:
            return self.last_received + self.timeout
        return float("inf")

    def receive_data(self, data: bytes, now: float) -> list:
        """Parse ``data`` from the server; return the events it completes, in order.

        Raises :class:`ProtocolError` for bytes that are not SoupBinTCP or not valid in this state
        (data before a login is accepted, anything after End of Session). Server heartbeats are
        returned as events too; they only refresh the silence timer.
        """
        if data:
            self.last_received = now
        return _drain(self._reader, data, self._handle)

    def _handle(self, kind: bytes, payload: bytes):
        state = self.state
        if kind == SEQUENCED_DATA:
            if state is not _ACTIVE:
                raise ProtocolError(f"sequenced data while {state.value}")
            event = SequencedData(self.next_sequence, payload)
            self.next_sequence += 1
            return event
        if kind == SERVER_HEARTBEAT:
            _expect_size(kind, payload, 0)
            if state is not _ACTIVE and state is not _CLOSED:
                raise ProtocolError(f"server heartbeat while {state.value}")
            return ServerHeartbeat()
        if kind == LOGIN_ACCEPTED:
            _expect_size(kind, payload, _LOGIN_ACCEPTED_SIZE)
            if state is not _LOGIN_SENT:
                raise ProtocolError(f"login accepted while {state.value}")
            session = _parse_alpha(payload[:_SESSION], "session")
            sequence = _parse_numeric(payload[_SESSION:], "sequence")
            if self._requested != 0 and sequence != self._requested and not self.allow_gap:
                self.state = _CLOSED
                raise SequenceGapError(self._requested, sequence)
            self.session = session
            self.next_sequence = sequence
            self.state = _ACTIVE
            return LoginAccepted(session, sequence)
        if kind == LOGIN_REJECTED:
            _expect_size(kind, payload, 1)
            if state is not _LOGIN_SENT:
                raise ProtocolError(f"login rejected while {state.value}")
            self.state = _CLOSED
            return LoginRejected(_parse_alpha(payload, "reject reason"))
        if kind == END_OF_SESSION:
            _expect_size(kind, payload, 0)
            if state is not _ACTIVE:
                raise ProtocolError(f"end of session while {state.value}")
            self.state = _CLOSED
            return EndOfSession()
        return Debug(payload.decode("ascii", "replace"))  # DEBUG: the reader admits no other type

    def _require_active(self, what: str) -> None:
        if self.state is not _ACTIVE:
            raise RuntimeError(f"cannot {what}: session is {self.state.value}")


# ------------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------------


class SessionLog:
    """The sequenced messages of one server session, kept so a client can resume from any number.

    Shared by every connection of one user; the first message is number 1. Not thread-safe by
    itself: the simulator holds its lock around appends and replays.
    """

    def __init__(self, session: str) -> None:
        _alpha(session, _SESSION, "session")
        self.session = session
        self.messages: list[bytes] = []

    @property
    def next_sequence(self) -> int:
        """The number the next appended message gets."""
        return len(self.messages) + 1

    def append(self, payload: bytes) -> int:
        """Store ``payload`` as the next sequenced message; return its number."""
        self.messages.append(payload)
        return len(self.messages)

    def since(self, sequence: int) -> list[bytes]:
        """The messages from number ``sequence`` on (none for numbers past the end)."""
        return self.messages[max(sequence, 1) - 1:]


class SoupServer:
    """The server side of one SoupBinTCP connection (what the exchange simulator speaks).

    ``receive_data`` returns :class:`LoginRequest`, :class:`UnsequencedData`,
    :class:`ClientHeartbeat`, :class:`LogoutRequest` and :class:`Debug` events; the application
    answers a login with ``accept(log, sequence, now)`` or ``reject(reason, now)``. A client that
    sends anything but a login first, or a second login, is a :class:`ProtocolError`.
    """

    def __init__(self, *, heartbeat_interval: float = 1.0, timeout: float = 15.0) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.timeout = timeout
        self.state = _IDLE
        self.log: SessionLog | None = None
        self.username = ""
        self.last_received = 0.0
        self.last_sent = 0.0
        self._reader = PacketReader(_CLIENT_TYPES)

    def receive_data(self, data: bytes, now: float) -> list:
        """Parse ``data`` from the client; return the events it completes, in order."""
        if data:
            self.last_received = now
        return _drain(self._reader, data, self._handle)

    def _handle(self, kind: bytes, payload: bytes):
        state = self.state
        if kind == UNSEQUENCED_DATA:
            if state is not _ACTIVE:
                raise ProtocolError(f"unsequenced data while {state.value}")
            return UnsequencedData(payload)
        if kind == CLIENT_HEARTBEAT:
            _expect_size(kind, payload, 0)
            if state is not _ACTIVE:
                raise ProtocolError(f"client heartbeat while {state.value}")
            return ClientHeartbeat()
        if kind == LOGIN_REQUEST:
            _expect_size(kind, payload, _LOGIN_REQUEST_SIZE)
            if state is not _IDLE:
                raise ProtocolError(f"login request while {state.value}")
            self.state = _LOGIN_SENT
            username = _parse_alpha(payload[:_USERNAME], "username")
            self.username = username
            return LoginRequest(username, _parse_alpha(payload[_USERNAME:_USERNAME + _PASSWORD], "password"),
                                _parse_alpha(payload[_USERNAME + _PASSWORD:_USERNAME + _PASSWORD + _SESSION], "session"),
                                _parse_numeric(payload[_USERNAME + _PASSWORD + _SESSION:], "sequence"))
        if kind == LOGOUT_REQUEST:
            _expect_size(kind, payload, 0)
            if state is not _ACTIVE:
                raise ProtocolError(f"logout request while {state.value}")
            self.state = _CLOSED
            return LogoutRequest()
        return Debug(payload.decode("ascii", "replace"))

    def accept(self, log: SessionLog, sequence: int, now: float, *, announce: int | None = None) -> bytes:
        """Return Login Accepted plus every logged message from ``sequence`` on (0: none).

        The accepted number is ``sequence`` clamped to the log's next number (0 means the next).
        ``announce`` overrides the number written in Login Accepted (the simulator's
        skip-a-sequence-number misbehaviour); replay still starts where the client asked.
        """
        if self.state is not _LOGIN_SENT:
            raise RuntimeError(f"accept needs a pending login, state is {self.state.value}")
        start = log.next_sequence if sequence == 0 else min(sequence, log.next_sequence)
        self.log = log
        self.state = _ACTIVE
        self.last_sent = now
        number = start if announce is None else announce
        out = [encode_packet(LOGIN_ACCEPTED, _alpha(log.session, _SESSION, "session", right=True)
                             + _numeric(number, _SEQUENCE, "sequence"))]
        out.extend(encode_packet(SEQUENCED_DATA, m) for m in log.since(start))
        return b"".join(out)

    def reject(self, reason: str, now: float) -> bytes:
        """Return Login Rejected with ``reason`` (``"A"`` or ``"S"``); the session is closed."""
        if reason not in (REJECT_NOT_AUTHORIZED, REJECT_SESSION_NOT_AVAILABLE):
            raise ValueError(f"reason must be 'A' or 'S', got {reason!r}")
        self.state = _CLOSED
        self.last_sent = now
        return encode_packet(LOGIN_REJECTED, reason.encode("ascii"))

    def send_sequenced(self, payload: bytes, now: float) -> bytes:
        """Log ``payload`` as the next sequenced message and return its packet."""
        if self.state is not _ACTIVE or self.log is None:
            raise RuntimeError(f"cannot send sequenced data: session is {self.state.value}")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload is {len(payload)} bytes; a SoupBinTCP packet carries at most {MAX_PAYLOAD}")
        self.log.append(payload)
        self.last_sent = now
        return _LENGTH.pack(len(payload) + 1) + SEQUENCED_DATA + payload

    def send_heartbeat(self, now: float) -> bytes:
        """Return a Server Heartbeat."""
        self.last_sent = now
        return encode_packet(SERVER_HEARTBEAT)

    def end_session(self, now: float) -> bytes:
        """Return End of Session; the session is closed."""
        self.state = _CLOSED
        self.last_sent = now
        return encode_packet(END_OF_SESSION)

    def poll(self, now: float) -> tuple[bytes, list[HeartbeatTimeout]]:
        """Return ``(bytes, events)``: a heartbeat when due, a timeout when the client fell silent."""
        if self.state is _CLOSED:
            return b"", []
        silent = now - self.last_received
        if silent > self.timeout:
            self.state = _CLOSED
            return b"", [HeartbeatTimeout(silent)]
        if self.state is _ACTIVE and now - self.last_sent >= self.heartbeat_interval:
            return self.send_heartbeat(now), []
        return b"", []
