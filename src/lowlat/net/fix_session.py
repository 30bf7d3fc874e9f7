"""A FIX 4.2 / 4.4 session without I/O: logon, heartbeats, sequence numbers, gaps, logout.

Either side (initiator or acceptor) is a :class:`FixSession`. Messages are encoded by
:class:`lowlat.fix.FixEncoder` and parsed by the validating :class:`lowlat.fix.FixReader`; the
session adds the rules of the FIX session layer:

* **Logon** with HeartBtInt (108); an acceptor answers a Logon with its own.
* **Heartbeats**: one after ``heartbeat_interval`` seconds without sending; a TestRequest after
  1.2 intervals without receiving; :class:`HeartbeatTimeout` (session closed) when the TestRequest
  is not answered within another interval. A TestRequest from the peer is answered at once.
* **Sequence numbers**: every message sent takes the next outgoing MsgSeqNum (34). An incoming
  number above the expected one is a gap: the session sends one ResendRequest (7 = expected,
  16 = 0), keeps the early messages and delivers them in order once the gap is filled (by resent
  messages or a SequenceReset-GapFill). A number below the expected one without PossDupFlag
  (43=Y) is fatal (Logout, :class:`SessionError`); with it, the duplicate is dropped.
* **SequenceReset in reset mode** (no GapFillFlag): its MsgSeqNum and PossDupFlag are ignored (no
  ResendRequest, never "too low"). A NewSeqNo at or above the expected number becomes the
  expected number (held early messages below it are delivered first, then those at and above it
  as usual); a lower one gets a session Reject (RefTagID 36, SessionRejectReason 5) and changes
  nothing (:class:`SequenceResetRefused`), as FIX 4.2/4.4 say a reset may never lower it.
* **ResendRequest from the peer**: application messages still kept (the last ``resend_limit``)
  are sent again with PossDupFlag (43=Y) and OrigSendingTime (122); admin messages and anything
  no longer kept are covered by SequenceReset-GapFill (also marked PossDupFlag, as resends are). ``resend_application=False`` gap-fills
  everything (for a client that would rather not re-send a minutes-old order).
* **Malformed messages**: garbled ones (bad BodyLength or CheckSum, garbage) are ignored, as the
  standard says (the gap they leave is then recovered); a well-framed message with a bad field (a
  required tag missing, a tag twice, a malformed field) gets a session Reject (3) with RefSeqNum,
  RefTagID and SessionRejectReason, its number is consumed, and the session goes on.
* **Logout** handshake: ``logout()`` sends one and waits for the peer's; a peer's Logout is
  answered and closes the session.

``receive_data(data, now)`` returns events; bytes the session must send in reply (heartbeats,
Rejects, gap fills, the Logon answer) collect in an outbox taken with ``data_to_send()``.
``now`` is a monotonic clock in seconds; SendingTime comes from ``wall_clock_ns`` (default
``time.time_ns``). Not thread-safe: one thread drives a session at a time.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import fix
from ..fix import FixError, FixEncoder, FixReader, MsgType, Reason, Tag

__all__ = ["FixSession", "FixState", "LoggedOn", "LoggedOut", "AppMessage", "Heartbeat", "TestRequest",
           "GapDetected", "ResendRequested", "SequenceReset", "SequenceResetRefused", "RejectReceived",
           "MalformedMessage", "HeartbeatTimeout", "SessionError", "SESSION_REJECT_REASONS"]

_SEQ = re.compile(rb"\x0134=(\d{1,18})\x01")
_GARBLED = frozenset({Reason.GARBAGE, Reason.BEGIN_STRING, Reason.BODY_LENGTH, Reason.CHECKSUM, Reason.TRUNCATED,
                      Reason.TOO_LONG})
#: SessionRejectReason (373) sent for each reader error on a well-framed message.
SESSION_REJECT_REASONS = {Reason.MISSING_TAG: 1, Reason.MALFORMED_FIELD: 6, Reason.REPEATED_TAG: 13,
                          Reason.MSG_TYPE: 14, Reason.TOO_MANY_FIELDS: 5}
_VALUE_OUT_OF_RANGE = 5  # SessionRejectReason: "Value is incorrect (out of range) for this tag"


class FixState(enum.Enum):
    """``IDLE`` (nothing yet), ``LOGON_SENT`` (initiator waiting), ``ACTIVE``, ``LOGOUT_SENT``,
    ``CLOSED`` (logged out, timed out or failed; a new connection needs a new Logon)."""

    IDLE = "idle"
    LOGON_SENT = "logon sent"
    ACTIVE = "active"
    LOGOUT_SENT = "logout sent"
    CLOSED = "closed"


@dataclass(frozen=True)
class LoggedOn:
    """The Logon exchange is complete; ``heartbeat_interval`` is the peer's HeartBtInt (s)."""

    heartbeat_interval: int
    seq_num: int


@dataclass(frozen=True)
class LoggedOut:
    """The session ended with a Logout (``text`` is the peer's Text, if any)."""

    text: str


@dataclass(frozen=True)
class AppMessage:
    """An application message (ExecutionReport, NewOrderSingle...), in sequence: a copy of its
    fields, which outlives the reader's reusable view."""

    msg_type: str
    seq_num: int
    fields: dict = field(repr=False)

    def get(self, tag: int, default: str | None = None) -> str | None:
        """The value of ``tag`` as str (Latin-1), or ``default``."""
        value = self.fields.get(tag)
        return default if value is None else value.decode("latin-1")

    def get_int(self, tag: int) -> int:
        """The value of ``tag`` as int (``KeyError`` when absent)."""
        return int(self.fields[tag])


@dataclass(frozen=True)
class Heartbeat:
    """A Heartbeat arrived (``test_req_id`` when it answers a TestRequest)."""

    test_req_id: str | None


@dataclass(frozen=True)
class TestRequest:
    """The peer asked for a Heartbeat (already answered in the outbox)."""

    test_req_id: str


@dataclass(frozen=True)
class GapDetected:
    """Messages ``expected`` .. ``received - 1`` are missing; a ResendRequest is in the outbox."""

    expected: int
    received: int


@dataclass(frozen=True)
class ResendRequested:
    """The peer asked for ``begin`` .. ``end`` (0: all); a SequenceReset-GapFill is in the outbox."""

    begin: int
    end: int


@dataclass(frozen=True)
class SequenceReset:
    """The peer moved our expected number to ``new_seq_no`` (``gap_fill`` or reset mode)."""

    new_seq_no: int
    gap_fill: bool


@dataclass(frozen=True)
class SequenceResetRefused:
    """The peer's SequenceReset (reset mode) tried to lower the expected number to ``new_seq_no``
    (below ``expected``); a session Reject is in the outbox and the expected number is unchanged."""

    new_seq_no: int
    expected: int


@dataclass(frozen=True)
class RejectReceived:
    """The peer rejected our message ``ref_seq_num`` (SessionRejectReason ``reason``, ``text``)."""

    ref_seq_num: int
    reason: int | None
    text: str


@dataclass(frozen=True)
class MalformedMessage:
    """The reader refused bytes from the peer; ``rejected``: a session Reject is in the outbox
    (a well-framed message with a bad field), else they were garbled and ignored."""

    error: FixError
    rejected: bool


@dataclass(frozen=True)
class HeartbeatTimeout:
    """The peer answered neither heartbeats nor a TestRequest for ``silent_for`` seconds."""

    silent_for: float


@dataclass(frozen=True)
class SessionError:
    """A fatal session problem (e.g. MsgSeqNum too low); a Logout is in the outbox, state CLOSED."""

    text: str


def _ascii(text: str, limit: int = 120) -> str:
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text)[:limit].strip()
    return cleaned or "?"


class FixSession:
    """One side of a FIX session (see the module docstring for the rules it follows).

    ``sender_comp_id`` / ``target_comp_id`` are this side's SenderCompID (49) and TargetCompID
    (56); ``begin_string`` ``"FIX.4.2"`` or ``"FIX.4.4"``; ``heartbeat_interval`` drives the timers
    (seconds, may be fractional for tests) and is sent as HeartBtInt rounded up to whole seconds.
    ``next_out`` / ``next_in`` continue a session's numbering across connections.
    """

    def __init__(self, sender_comp_id: str, target_comp_id: str, begin_string: str = fix.FIX44, *,
                 heartbeat_interval: float = 30.0, initiator: bool = True, next_out: int = 1, next_in: int = 1,
                 price_decimals: int = 4, wall_clock_ns: Callable[[], int] = time.time_ns,
                 resend_application: bool = True, resend_limit: int = 10_000) -> None:
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0, got {heartbeat_interval!r}")
        self.encoder = FixEncoder(sender_comp_id, target_comp_id, begin_string, price_decimals=price_decimals)
        self.reader = FixReader()
        self.sender_comp_id = sender_comp_id
        self.target_comp_id = target_comp_id
        self.begin_string = begin_string
        self.heartbeat_interval = heartbeat_interval
        self.initiator = initiator
        self.next_out = next_out
        self.next_in = next_in
        self.price_decimals = price_decimals
        self.wall_clock_ns = wall_clock_ns
        self.state = FixState.IDLE
        self.last_sent = 0.0
        self.last_received = 0.0
        self.peer_heartbeat_interval: int | None = None
        self._buffer = bytearray(8192)
        self._outbox = bytearray()
        # early messages waiting for a gap to be filled: (MsgType, MsgSeqNum, fields), or None
        # for a Logon / ResendRequest already handled out of order
        self._queued: dict[int, tuple[str, int, dict] | None] = {}
        self._resend_pending = False
        self._test_request: tuple[str, float] | None = None
        self._test_ids = 0
        self.resend_application = resend_application
        self.resend_limit = resend_limit
        self._sent: dict[int, bytes] = {}  # application messages by MsgSeqNum, for resends

    # -- sending -------------------------------------------------------------------------------

    def _encode(self, name: str, now: float, *args, seq_num: int | None = None, **kwargs) -> bytes:
        method = getattr(self.encoder, name)
        consume = seq_num is None
        n = method(self._buffer, 0, self.next_out if consume else seq_num, self.wall_clock_ns(), *args, **kwargs)
        if consume:
            self.next_out += 1
        self.last_sent = now
        return bytes(self._buffer[:n])

    def _queue(self, data: bytes) -> None:
        self._outbox += data

    def data_to_send(self) -> bytes:
        """Return (and clear) the bytes the session produced in reply to what it received."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def logon(self, now: float, *, reset_seq_num: bool = False) -> bytes:
        """Return the initiator's Logon (HeartBtInt = ``heartbeat_interval`` rounded up)."""
        if self.state is not FixState.IDLE:
            raise RuntimeError(f"logon needs an idle session, state is {self.state.value}")
        if reset_seq_num:
            self.next_out = self.next_in = 1
        self.state = FixState.LOGON_SENT
        self.last_received = now
        return self._encode("logon", now, self._heart_bt_int(), reset_seq_num=reset_seq_num)

    def _heart_bt_int(self) -> int:
        return max(1, -int(-self.heartbeat_interval // 1))

    def send(self, name: str, now: float, *args, **kwargs) -> bytes:
        """Return the application message ``name`` (a :class:`~lowlat.fix.FixEncoder` method:
        ``"new_order_single"``, ``"order_cancel_request"``, ``"execution_report"``...) with the
        arguments that follow its buffer, offset, seq_num and sending time."""
        if self.state is not FixState.ACTIVE:
            raise RuntimeError(f"cannot send {name}: session is {self.state.value}")
        seq = self.next_out
        data = self._encode(name, now, *args, **kwargs)
        if self.resend_application:
            sent = self._sent
            sent[seq] = data
            if len(sent) > self.resend_limit:
                del sent[next(iter(sent))]
        return data

    def store(self, name: str, now: float, *args, **kwargs) -> bytes:
        """Number and keep an application message for a peer that is not connected (an acceptor's
        report while its client is away): the client's next Logon shows the gap, and its
        ResendRequest gets the message. Return the bytes."""
        state, self.state = self.state, FixState.ACTIVE
        try:
            return self.send(name, now, *args, **kwargs)
        finally:
            self.state = state

    def skip_sequence_number(self) -> None:
        """Consume one outgoing number without sending it (to test a peer's gap handling)."""
        self.next_out += 1

    def heartbeat(self, now: float) -> bytes:
        """Return a Heartbeat."""
        return self._encode("heartbeat", now)

    def test_request(self, now: float) -> bytes:
        """Return a TestRequest with a new TestReqID (remembered until the answer)."""
        self._test_ids += 1
        test_id = f"TEST{self._test_ids}"
        self._test_request = (test_id, now)
        return self._encode("test_request", now, test_id)

    def logout(self, now: float, text: str | None = None) -> bytes:
        """Return a Logout; the session waits for the peer's Logout (``LOGOUT_SENT``)."""
        if self.state is not FixState.ACTIVE:
            raise RuntimeError(f"cannot log out: session is {self.state.value}")
        self.state = FixState.LOGOUT_SENT
        return self._encode("logout", now, text)

    def reset_connection(self) -> None:
        """Forget partial bytes and per-connection state for a new connection; numbers are kept."""
        self.reader.reset()
        self._outbox.clear()
        self._queued.clear()
        self._resend_pending = False
        self._test_request = None
        self.state = FixState.IDLE

    # -- timers --------------------------------------------------------------------------------

    def poll(self, now: float) -> tuple[bytes, list]:
        """Return ``(bytes, events)`` the clock calls for: Heartbeat, TestRequest, or a
        :class:`HeartbeatTimeout` (session closed)."""
        if self.state is not FixState.ACTIVE and self.state is not FixState.LOGOUT_SENT:
            return b"", []
        interval = self.heartbeat_interval
        silent = now - self.last_received
        if self._test_request is not None:
            if now - self._test_request[1] >= interval:
                self.state = FixState.CLOSED
                return b"", [HeartbeatTimeout(silent)]
        elif silent >= 1.2 * interval and self.state is FixState.ACTIVE:
            return self.test_request(now), []
        if self.state is FixState.ACTIVE and now - self.last_sent >= interval:
            return self.heartbeat(now), []
        return b"", []

    def next_deadline(self) -> float:
        """The clock value at which ``poll`` next may have something to do."""
        if self.state is not FixState.ACTIVE and self.state is not FixState.LOGOUT_SENT:
            return float("inf")
        interval = self.heartbeat_interval
        if self._test_request is not None:
            return min(self._test_request[1] + interval, self.last_sent + interval)
        return min(self.last_received + 1.2 * interval, self.last_sent + interval)

    # -- receiving -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list:
        """Parse ``data`` from the peer; return the events it completes, in order."""
        if data:
            self.last_received = now
        self.reader.feed(data)
        events: list = []
        for event in self.reader:
            if self.state is FixState.CLOSED:
                break
            if isinstance(event, FixError):
                self._on_error(event, now, events)
            else:
                self._on_message(event, now, events)
        return events

    def _on_error(self, error: FixError, now: float, events: list) -> None:
        match = _SEQ.search(error.data) if error.reason not in _GARBLED else None
        if match is None:
            events.append(MalformedMessage(error, False))
            return
        seq = int(match.group(1))
        if seq == self.next_in:
            self.next_in += 1
        self._queue(self._encode("reject", now, seq, ref_tag_id=error.tag or None,
                                 session_reject_reason=SESSION_REJECT_REASONS.get(error.reason),
                                 text=_ascii(f"{error.reason}: {error.text}")))
        events.append(MalformedMessage(error, True))
        self._release_queued(now, events)

    def _on_message(self, message, now: float, events: list) -> None:
        msg_type = message.msg_type
        seq = message.seq_num
        if self.state is FixState.IDLE or self.state is FixState.LOGON_SENT:
            if msg_type != MsgType.Logon:
                self._fail(now, events, f"first message must be a Logon, got MsgType {msg_type}")
                return
        gap_fill = message.has(Tag.GapFillFlag) and message.get_str(Tag.GapFillFlag) == "Y"
        if msg_type == MsgType.SequenceReset and not gap_fill:
            self._reset_mode(seq, message.get_int(Tag.NewSeqNo), now, events)
            return
        if seq > self.next_in:
            if msg_type == MsgType.Logon or msg_type == MsgType.ResendRequest:
                # Log on / answer the peer's resend first, then recover what came before: if both
                # sides have a gap, each waiting for the other to fill it first would never end.
                self._dispatch(msg_type, seq, dict(message.fields()), now, events)
                self._queued[seq] = None
            else:
                self._queued[seq] = (msg_type, seq, dict(message.fields()))
            if not self._resend_pending:
                self._resend_pending = True
                events.append(GapDetected(self.next_in, seq))
                self._queue(self._encode("resend_request", now, self.next_in, 0))
            return
        if seq < self.next_in:
            if message.has(Tag.PossDupFlag) and message.get_str(Tag.PossDupFlag) == "Y":
                return  # a duplicate we already have
            self._fail(now, events, f"MsgSeqNum too low, expected {self.next_in} but received {seq}")
            return
        self.next_in += 1
        self._dispatch(msg_type, seq, dict(message.fields()), now, events)
        self._release_queued(now, events)

    def _reset_mode(self, seq: int, new: int, now: float, events: list) -> None:
        """SequenceReset without GapFillFlag: its MsgSeqNum (and PossDupFlag) are ignored."""
        if new < self.next_in:
            # FIX 4.2/4.4: a reset may only raise the expected number; a lower one is rejected
            # ("value is incorrect (out of range) for this tag") and the expected number stays.
            self._queue(self._encode("reject", now, seq, ref_tag_id=Tag.NewSeqNo,
                                     session_reject_reason=_VALUE_OUT_OF_RANGE,
                                     text=f"NewSeqNo {new} is below the expected MsgSeqNum {self.next_in}"))
            events.append(SequenceResetRefused(new, self.next_in))
            return
        # Messages already held above the old expected number and below the new one arrived and
        # are valid: deliver them (in order) rather than lose them, then jump.
        for held in sorted(k for k in self._queued if k < new):
            item = self._queued.pop(held)
            if item is not None:
                self._dispatch(*item, now, events)
        self.next_in = new
        events.append(SequenceReset(new, False))
        self._release_queued(now, events)

    def _release_queued(self, now: float, events: list) -> None:
        while self._queued:
            for stale in [k for k in self._queued if k < self.next_in]:
                del self._queued[stale]
            if self.next_in not in self._queued:
                break
            item = self._queued.pop(self.next_in)
            self.next_in += 1
            if item is not None:  # None: a Logon or ResendRequest already handled
                self._dispatch(*item, now, events)
        if not self._queued:
            self._resend_pending = False

    def _resend(self, begin: int, end: int, now: float) -> None:
        last = self.next_out - 1 if end == 0 else min(end, self.next_out - 1)
        gap_start = None
        for seq in range(begin, last + 1):
            data = self._sent.get(seq)
            if data is None:
                if gap_start is None:
                    gap_start = seq
                continue
            if gap_start is not None:
                self._queue(_possible_duplicate(self._encode("sequence_reset", now, seq, gap_fill=True,
                                                             seq_num=gap_start)))
                gap_start = None
            self._queue(_possible_duplicate(data))
        if gap_start is not None:
            self._queue(_possible_duplicate(self._encode("sequence_reset", now, last + 1, gap_fill=True,
                                                         seq_num=gap_start)))

    def _fail(self, now: float, events: list, text: str) -> None:
        if self.state in (FixState.ACTIVE, FixState.LOGOUT_SENT):
            self._queue(self._encode("logout", now, _ascii(text)))
        self.state = FixState.CLOSED
        events.append(SessionError(text))

    def _dispatch(self, msg_type: str, seq: int, fields: dict, now: float, events: list) -> None:
        if msg_type == MsgType.Heartbeat:
            test_id = fields.get(Tag.TestReqID)
            test_id = None if test_id is None else test_id.decode("latin-1")
            if self._test_request is not None and test_id == self._test_request[0]:
                self._test_request = None
            events.append(Heartbeat(test_id))
        elif msg_type == MsgType.TestRequest:
            test_id = fields[Tag.TestReqID].decode("latin-1")
            self._queue(self._encode("heartbeat", now, test_id))
            events.append(TestRequest(test_id))
        elif msg_type == MsgType.ResendRequest:
            begin, end = int(fields[Tag.BeginSeqNo]), int(fields[Tag.EndSeqNo])
            self._resend(begin, end, now)
            events.append(ResendRequested(begin, end))
        elif msg_type == MsgType.SequenceReset:  # gap fill (reset mode is handled before sequencing)
            new = int(fields[Tag.NewSeqNo])
            if new > self.next_in:
                self.next_in = new
            events.append(SequenceReset(new, True))
        elif msg_type == MsgType.Reject:
            reason = fields.get(Tag.SessionRejectReason)
            text = fields.get(Tag.Text, b"").decode("latin-1")
            events.append(RejectReceived(int(fields[Tag.RefSeqNum]), None if reason is None else int(reason), text))
        elif msg_type == MsgType.Logout:
            if self.state is FixState.ACTIVE:
                self._queue(self._encode("logout", now))
            self.state = FixState.CLOSED
            events.append(LoggedOut(fields.get(Tag.Text, b"").decode("latin-1")))
        elif msg_type == MsgType.Logon:
            interval = int(fields[Tag.HeartBtInt])
            self.peer_heartbeat_interval = interval
            if self.state is FixState.IDLE and not self.initiator:
                self._queue(self._encode("logon", now, self._heart_bt_int()))
            elif self.state is not FixState.LOGON_SENT:
                self._fail(now, events, "Logon on a session already logged on")
                return
            self.state = FixState.ACTIVE
            events.append(LoggedOn(interval, seq))
        else:
            events.append(AppMessage(msg_type, seq, fields))


def _possible_duplicate(message: bytes) -> bytes:
    """``message`` again with PossDupFlag (43=Y) before SendingTime and OrigSendingTime (122) after it."""
    start = message.index(b"\x0152=") + 1
    end = message.index(b"\x01", start) + 1
    body_start = message.index(b"\x01", message.index(b"\x019=") + 1) + 1
    body_end = message.rindex(b"10=")
    sending = message[start + 3:end - 1]
    body = (message[body_start:start] + b"43=Y\x01" + message[start:end] + b"122=" + sending + b"\x01"
            + message[end:body_end])
    head = message[:message.index(b"\x019=") + 1] + b"9=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % (sum(head + body) & 0xFF)
