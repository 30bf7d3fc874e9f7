"""OUCH 4.2 over SoupBinTCP: send orders, read the answers, know which orders were never answered.

:class:`OuchSession` is a pool-compatible session (``connect``, ``close``, ``alive``, ``service``,
``last_heartbeat``, ``unacknowledged``). Every order-entry message is recorded as *pending* before
its bytes are written and stays pending until the exchange answers it:

* Enter Order: Accepted or Rejected (for its token);
* Replace Order: Replaced or Rejected (for the replacement token);
* Cancel Order: Canceled (for its token);
* Modify Order: Order Modified (for its token). The exchange ignores a modify it does not allow
  (an increase, a buy<->sell change), so such a modify stays pending: it was never answered.

When the connection dies, the ``ConnectionLost`` raised carries ``unacknowledged`` (the pending
requests, oldest first), and :meth:`OuchSession.unacknowledged` keeps answering until a resumed
login replays the answers the exchange sent meanwhile (SoupBinTCP keeps them), which clear them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .. import ouch, wire
from .connection import ConnectionLost, SoupConnection
from .soupbintcp import SessionState

_ACTIVE = SessionState.ACTIVE  # a global: ~10 ns, the Enum member on its class ~130 ns (3.11)

__all__ = ["OuchSession", "PendingOrder", "REJECT_REASONS", "CANCEL_REASONS", "TIF_IOC", "TIF_MARKET_HOURS",
           "TIF_SYSTEM_HOURS", "price_to_int"]

#: Rejected's reason codes (OUCH 4.2, section 2.3.7) and what they mean.
REJECT_REASONS = {"T": "test mode", "H": "halted", "Z": "shares exceed the configured safety threshold",
                  "S": "invalid stock", "D": "invalid display type", "C": "exchange closed",
                  "L": "firm not authorized for the clearing type", "M": "outside permitted times for the clearing type",
                  "R": "not allowed in this type of cross", "X": "invalid price", "N": "invalid minimum quantity",
                  "O": "other"}
#: Canceled's reason codes.
CANCEL_REASONS = {"U": "user requested", "I": "immediate or cancel", "T": "timeout", "S": "supervisory",
                  "D": "regulatory restriction", "Q": "self-match prevention", "Z": "system cancel"}
#: Time in force: 0 is immediate-or-cancel; these two mean "until the market / the system closes".
TIF_IOC, TIF_MARKET_HOURS, TIF_SYSTEM_HOURS = 0, 99998, 99999


def price_to_int(price) -> int:
    """A price in dollars (float, Decimal or str) as OUCH's integer with 4 implied decimals."""
    from decimal import Decimal

    return int((Decimal(str(price)) * ouch.PRICE_SCALE).to_integral_value())


@dataclass(slots=True)  # not frozen: built for every order, and frozen costs ~1 us more
class PendingOrder:
    """An order-entry message the exchange has not answered: ``kind`` "O" (enter), "U" (replace),
    "X" (cancel) or "M" (modify), its ``token`` (the replacement token for a replace) and the bytes sent."""

    kind: str
    token: str
    payload: bytes


class OuchSession:
    """One OUCH 4.2 user on SoupBinTCP (see the module docstring for acknowledgement rules).

    ``connection_options`` go to :class:`~lowlat.net.connection.SoupConnection` (``busy_poll``,
    ``heartbeat_interval``, ``timeout``, ``connect_timeout``, ``session``, ``sequence``). One
    thread at a time sends and receives (a pool checkout gives exactly that).
    """

    def __init__(self, address: tuple[str, int], username: str, password: str, **connection_options) -> None:
        self.connection = SoupConnection(address, username, password, **connection_options)
        # (kind, token) -> the bytes sent, in send order; PendingOrder objects are built only when
        # asked for (unacknowledged()), not one per order on the hot path
        self.pending: dict[tuple[str, str], bytes] = {}
        self.messages: deque = deque()  # answers read by wait_for that were not what it waited for
        self._enter = bytearray(ouch.MESSAGES["enter_order"].length)  # encoded in place, no allocation
        self._cancel = bytearray(ouch.MESSAGES["cancel_order"].length)
        self._replace = bytearray(ouch.MESSAGES["replace_order"].length)
        self._modify = bytearray(ouch.MESSAGES["modify_order"].length)
        self._record = ouch.ExchangeMessage()
        # The compiled order path (lowlat.wire) keeps here what it looked up of this session once:
        # the objects set above are never replaced, only the connection's transport is (reconnect).
        self._route: object = None

    # -- the pool's session interface ----------------------------------------------------------

    @property
    def alive(self) -> bool:
        connection = self.connection  # SoupConnection.alive inline: read on every pool return
        return connection.transport is not None and connection.client.state is _ACTIVE

    @property
    def last_heartbeat(self) -> float:
        return self.connection.last_heartbeat

    @property
    def username(self) -> str:
        return self.connection.client.username

    def connect(self):
        """Connect and log in, resuming the sequence; replayed answers clear pending orders."""
        accepted = self.connection.connect()
        self._drain_inbox()
        return accepted

    def close(self) -> None:
        self.connection.close()

    def logout(self, timeout: float = 1.0) -> None:
        self.connection.logout(timeout)

    def service(self, timeout: float = 0.0) -> None:
        """Read what arrived (answers are kept for ``receive``), send heartbeats due."""
        try:
            self.connection.service(timeout)
        except ConnectionLost as error:
            error.unacknowledged = self.unacknowledged()
            raise
        finally:
            self._drain_inbox()

    def unacknowledged(self) -> list[PendingOrder]:
        """Order-entry messages sent and not yet answered, oldest first."""
        return [PendingOrder(kind, token, payload) for (kind, token), payload in self.pending.items()]

    # -- orders --------------------------------------------------------------------------------

    #: ``enter_order(token, side, shares, stock, price, *, time_in_force=TIF_SYSTEM_HOURS, firm="",
    #: display="Y", capacity="A", intermarket_sweep="N", minimum_quantity=0, cross_type="N",
    #: customer_type=" ")``: send Enter Order (``price`` an int with 4 implied decimals, see
    #: :func:`price_to_int`). The order path of :mod:`lowlat.wire`, compiled where it is built.
    enter_order = wire.enter_order

    def cancel_order(self, token: str, shares: int = 0) -> None:
        """Send Cancel Order: reduce ``token`` to ``shares`` (0 cancels it)."""
        ouch.encode_cancel_order(self._cancel, 0, token, shares)
        _send_order(self, "X", token, bytes(self._cancel))

    def replace_order(self, existing_token: str, replacement_token: str, shares: int, price: int, *,
                      time_in_force: int = TIF_SYSTEM_HOURS, display: str = "Y", intermarket_sweep: str = "N",
                      minimum_quantity: int = 0) -> None:
        """Send Replace Order (pending under ``replacement_token``)."""
        ouch.encode_replace_order(self._replace, 0, existing_token, replacement_token, shares, price, time_in_force,
                                  display, intermarket_sweep, minimum_quantity)
        _send_order(self, "U", replacement_token, bytes(self._replace))

    def modify_order(self, token: str, side: str, shares: int) -> None:
        """Send Modify Order: move ``token`` to ``side`` (among "S", "T", "E" for a sell) and/or reduce
        it to ``shares`` open (0 cancels it), keeping its priority; pending under ``token`` until
        Order Modified. Field errors are ``lowlat.ouch``'s (``TypeError``/``ValueError`` naming the field)."""
        ouch.encode_modify_order(self._modify, 0, token, side, shares)
        _send_order(self, "M", token, bytes(self._modify))

    # -- answers -------------------------------------------------------------------------------

    def _decode(self, payload: bytes) -> dict:
        """Decode one answer (``lowlat.ouch`` field names plus ``"type"``) and clear what it acknowledges."""
        record = self._record
        record.decode(payload)
        # A value's type depends on its field (tokens str, shares int...), which as_dict's
        # dict[str, object] cannot say: Any, so the tokens read below key ``pending``
        # (tuple[str, str]) without a cast() call per answer.
        message: dict[str, Any] = record.as_dict()
        pending = self.pending
        if pending:
            kind = message["type"]
            if kind == "A":
                pending.pop(("O", message["order_token"]), None)
            elif kind == "J":
                if pending.pop(("O", message["order_token"]), None) is None:
                    pending.pop(("U", message["order_token"]), None)
            elif kind == "U":
                pending.pop(("U", message["replacement_order_token"]), None)
            elif kind == "C":
                pending.pop(("X", message["order_token"]), None)
            elif kind == "M":
                pending.pop(("M", message["order_token"]), None)
        return message

    def _drain_inbox(self) -> None:
        inbox = self.connection.inbox
        while inbox:
            self.messages.append(self._decode(inbox.popleft().payload))

    def receive(self, timeout: float | None = None) -> dict | None:
        """Return the next answer from the exchange as a dict (``ExchangeMessage.as_dict()``), None after
        ``timeout`` seconds; ``ConnectionLost`` (with ``unacknowledged``) when the connection died."""
        if self.messages:
            return self.messages.popleft()
        try:
            data = self.connection.receive(timeout)
        except ConnectionLost as error:
            error.unacknowledged = self.unacknowledged()
            raise
        if data is None:
            return None
        return self._decode(data.payload)

    #: ``wait_for(token, types="AJUC", timeout=5.0)``: the first answer for ``token`` (its order
    #: token, or a Replaced's replacement token) whose type is in ``types``, as a dict; other answers
    #: are kept for ``receive``; ``TimeoutError`` after ``timeout`` seconds. :mod:`lowlat.wire`'s.
    wait_for = wire.wait_for


_send_order = wire.send_order
