"""A FIX order session on real TCP: the sans-I/O :class:`~lowlat.net.fix_session.FixSession` plus
a socket, order tracking and the pool's session interface.

Every order message is *pending* from before its bytes are written until the exchange answers it:

* NewOrderSingle: an ExecutionReport NEW (0) or REJECTED (8) for its ClOrdID;
* OrderCancelRequest / OrderCancelReplaceRequest: ExecutionReport CANCELED (4) / REPLACED (5), or
  an OrderCancelReject (9), for its ClOrdID.

A ``ConnectionLost`` raised by this session carries ``unacknowledged``. Sequence numbers continue
across ``connect()`` calls, so a reconnect's Logon reveals what was missed and the session's gap
recovery (ResendRequest) fetches it; answers recovered that way clear pending orders.

Errors: :class:`~lowlat.net.connection.LoginRejectedError` when the exchange answers the Logon
with a Logout, ``HeartbeatTimeoutError`` when it stops answering heartbeats and test requests,
``ConnectionLost`` when the socket closes or the session ends (Logout, a fatal sequence error).
Malformed messages from the exchange do not end the session: they are counted in ``malformed``
(the reader's :class:`~lowlat.fix.FixError` each), and gaps in ``gaps``; a SequenceReset that
would lower the expected number is answered with a session Reject and kept in ``refused_resets``.
"""

from __future__ import annotations

import time
from collections import deque

from .. import fix
from . import fix_session as fs
from .connection import ConnectionLost, HeartbeatTimeoutError, LoginRejectedError, Transport, connect_tcp
from .ouch import PendingOrder

__all__ = ["FixOrderSession"]

_ACK = {fix.MsgType.NewOrderSingle: (fix.ExecType.NEW, fix.ExecType.REJECTED),
        fix.MsgType.OrderCancelRequest: (fix.ExecType.CANCELED,),
        fix.MsgType.OrderCancelReplaceRequest: (fix.ExecType.REPLACED,)}


class FixOrderSession:
    """A FIX initiator for orders (see the module docstring). One thread at a time."""

    def __init__(self, address: tuple[str, int], sender_comp_id: str, target_comp_id: str = "EXCH",
                 begin_string: str = fix.FIX44, *, heartbeat_interval: float = 30.0, busy_poll: bool = False,
                 connect_timeout: float = 5.0) -> None:
        self.address = address
        self.session = fs.FixSession(sender_comp_id, target_comp_id, begin_string,
                                     heartbeat_interval=heartbeat_interval, resend_application=False)
        self.busy_poll = busy_poll
        self.connect_timeout = connect_timeout
        self.transport: Transport | None = None
        self.pending: dict[str, PendingOrder] = {}
        self.messages: deque = deque()  # application messages not yet taken
        self.malformed: list = []
        self.gaps: list = []
        self.rejects: list = []
        self.refused_resets: list[fs.SequenceResetRefused] = []
        self.connects = 0

    @property
    def alive(self) -> bool:
        return self.transport is not None and self.session.state is fs.FixState.ACTIVE

    @property
    def last_heartbeat(self) -> float:
        return self.session.last_received

    @property
    def username(self) -> str:
        return self.session.sender_comp_id

    def unacknowledged(self) -> list[PendingOrder]:
        """Order messages sent and not answered yet, oldest first."""
        return list(self.pending.values())

    # -- connection ------------------------------------------------------------------------------

    def connect(self) -> fs.LoggedOn:
        """Open a connection and log on (numbers continue); return the LoggedOn event."""
        self.close()
        self.session.reset_connection()
        transport = Transport(connect_tcp(self.address, self.connect_timeout), busy_poll=self.busy_poll)
        self.transport = transport
        self.connects += 1
        try:
            transport.send(self.session.logon(time.monotonic()))
            deadline = time.monotonic() + self.connect_timeout
            logged_on = None
            while logged_on is None:
                data = transport.receive(deadline)
                if data is None:
                    raise TimeoutError(f"no Logon answer from {self.address} in {self.connect_timeout} s")
                for event in self._feed(data):
                    if isinstance(event, fs.LoggedOn):
                        logged_on = event
                    elif isinstance(event, (fs.LoggedOut, fs.SessionError)):
                        raise LoginRejectedError(getattr(event, "text", "") or "logout")
            return logged_on
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the socket (idempotent); numbers and pending orders are kept."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def logout(self, timeout: float = 1.0) -> None:
        """Send Logout, wait up to ``timeout`` for the exchange's, then close."""
        transport = self.transport
        if transport is None:
            return
        try:
            if self.session.state is fs.FixState.ACTIVE:
                transport.send(self.session.logout(time.monotonic()))
                deadline = time.monotonic() + timeout
                while self.session.state is fs.FixState.LOGOUT_SENT:
                    data = transport.receive(deadline)
                    if data is None:
                        break
                    self._feed(data)
        except ConnectionLost:
            pass
        finally:
            self.close()

    def _feed(self, data: bytes) -> list:
        """Feed the session; send what it answers; file events; return them."""
        now = time.monotonic()
        events = self.session.receive_data(data, now)
        out = self.session.data_to_send()
        if out and self.transport is not None:
            self.transport.send(out)
        for event in events:
            if isinstance(event, fs.AppMessage):
                self._acknowledge(event)
                self.messages.append(event)
            elif isinstance(event, fs.MalformedMessage):
                self.malformed.append(event.error)
            elif isinstance(event, fs.GapDetected):
                self.gaps.append(event)
            elif isinstance(event, fs.RejectReceived):
                self.rejects.append(event)
            elif isinstance(event, fs.SequenceResetRefused):
                self.refused_resets.append(event)
        return events

    def _acknowledge(self, message: fs.AppMessage) -> None:
        if not self.pending:
            return
        cl_ord_id = message.get(fix.Tag.ClOrdID)
        if cl_ord_id is None:
            return
        pending = self.pending.get(cl_ord_id)
        if pending is None:
            return
        if message.msg_type == fix.MsgType.OrderCancelReject:
            del self.pending[cl_ord_id]
        elif message.msg_type == fix.MsgType.ExecutionReport:
            if message.get(fix.Tag.ExecType) in _ACK[pending.kind]:
                del self.pending[cl_ord_id]

    def service(self, timeout: float = 0.0) -> None:
        """Read what arrives within ``timeout`` seconds and answer the clock (heartbeats, test requests)."""
        transport = self.transport
        if transport is None:
            raise ConnectionLost("not connected")
        now = time.monotonic()
        deadline = min(now + timeout, self.session.next_deadline())
        try:
            data = transport.receive(max(deadline, now))
            if data is not None:
                events = self._feed(data)
                for event in events:
                    if isinstance(event, (fs.LoggedOut, fs.SessionError)):
                        raise ConnectionLost(f"session ended: {event}")
            out, events = self.session.poll(time.monotonic())
            if events:
                raise HeartbeatTimeoutError(f"exchange silent for {events[0].silent_for:.3f} s "
                                            f"(heartbeat interval {self.session.heartbeat_interval} s)")
            if out:
                transport.send(out)
        except ConnectionLost as error:
            self.close()
            error.unacknowledged = self.unacknowledged()
            raise
        except BaseException:
            self.close()
            raise

    # -- orders --------------------------------------------------------------------------------

    def _send(self, kind: str, cl_ord_id: str, name: str, *args, **kwargs) -> None:
        if self.transport is None:
            error = ConnectionLost("not connected")
            error.unacknowledged = self.unacknowledged()
            raise error
        data = self.session.send(name, time.monotonic(), *args, **kwargs)
        self.pending[cl_ord_id] = PendingOrder(kind, cl_ord_id, data)
        try:
            self.transport.send(data)
        except ConnectionLost as error:
            self.close()
            error.unacknowledged = self.unacknowledged()
            raise

    def new_order_single(self, cl_ord_id: str, symbol: str, side: str, quantity: int, price, *,
                         ord_type: str = fix.OrdType.LIMIT, time_in_force: str | None = None) -> None:
        """Send NewOrderSingle (``price``: int with 4 implied decimals, or float)."""
        self._send(fix.MsgType.NewOrderSingle, cl_ord_id, "new_order_single", cl_ord_id, symbol, side, quantity,
                   ord_type, price, time_in_force=time_in_force)

    def cancel_order(self, cl_ord_id: str, orig_cl_ord_id: str, symbol: str, side: str, quantity: int) -> None:
        """Send OrderCancelRequest for ``orig_cl_ord_id``."""
        self._send(fix.MsgType.OrderCancelRequest, cl_ord_id, "order_cancel_request", orig_cl_ord_id, cl_ord_id,
                   symbol, side, quantity)

    def replace_order(self, cl_ord_id: str, orig_cl_ord_id: str, symbol: str, side: str, quantity: int, price, *,
                      ord_type: str = fix.OrdType.LIMIT) -> None:
        """Send OrderCancelReplaceRequest for ``orig_cl_ord_id``."""
        self._send(fix.MsgType.OrderCancelReplaceRequest, cl_ord_id, "order_cancel_replace_request", orig_cl_ord_id,
                   cl_ord_id, symbol, side, quantity, ord_type, price)

    # -- answers -------------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> fs.AppMessage | None:
        """Return the next application message, None after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.messages:
            remaining = 3600.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.service(remaining)
        return self.messages.popleft()

    def wait_for(self, cl_ord_id: str, exec_types: str | None = None, timeout: float = 5.0) -> fs.AppMessage:
        """Return the first message for ``cl_ord_id`` (an ExecutionReport whose ExecType is in
        ``exec_types``, any when None, or an OrderCancelReject); others stay for ``receive``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for index in range(seen, len(self.messages)):
                message = self.messages[index]
                if message.get(fix.Tag.ClOrdID) == cl_ord_id and (
                        exec_types is None or message.msg_type != fix.MsgType.ExecutionReport
                        or message.get(fix.Tag.ExecType) in exec_types):
                    del self.messages[index]
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer for ClOrdID {cl_ord_id!r} in {timeout} s")
            self.service(remaining)
