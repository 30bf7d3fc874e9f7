"""OUCH 4.2 over SoupBinTCP: send orders, read the answers, know which orders were never answered.

:class:`OuchSession` is a pool-compatible session (``connect``, ``close``, ``alive``, ``service``,
``last_heartbeat``, ``unacknowledged``). Every order-entry message is recorded as *pending* before
its bytes are written and stays pending until the exchange answers it:

* Enter Order: Accepted or Rejected (for its token);
* Replace Order: Replaced or Rejected (for the replacement token);
* Cancel Order: Canceled (for its token).

When the connection dies, the ``ConnectionLost`` raised carries ``unacknowledged`` (the pending
requests, oldest first), and :meth:`OuchSession.unacknowledged` keeps answering until a resumed
login replays the answers the exchange sent meanwhile (SoupBinTCP keeps them), which clear them.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from . import ouch_wire as wire
from .connection import ConnectionLost, SoupConnection

__all__ = ["OuchSession", "PendingOrder"]

_ENTER = struct.Struct(">c14scI8sII4sccc I cc".replace(" ", ""))


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order-entry message the exchange has not answered: ``kind`` "O" (enter), "U" (replace)
    or "X" (cancel), its ``token`` (the replacement token for a replace) and the bytes sent."""

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
        self.pending: dict[tuple[str, str], PendingOrder] = {}  # insertion order = send order
        self.messages: deque = deque()  # answers read by wait_for that were not what it waited for

    # -- the pool's session interface ----------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.connection.alive

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
        return list(self.pending.values())

    # -- orders --------------------------------------------------------------------------------

    def enter_order(self, token: str, side: str, shares: int, stock: str, price: int, *,
                    tif: int = wire.TIF_SYSTEM_HOURS, firm: str = "", display: str = "Y", capacity: str = "A",
                    intermarket_sweep: str = "N", minimum_quantity: int = 0, cross_type: str = "N",
                    customer_type: str = " ") -> None:
        """Send Enter Order; ``price`` is an int with 4 implied decimals (``wire.price_to_int``)."""
        try:
            payload = _ENTER.pack(b"O", token.encode("ascii").ljust(14), side.encode("ascii"), shares,
                                  stock.encode("ascii").ljust(8), price, tif, firm.encode("ascii").ljust(4),
                                  display.encode("ascii"), capacity.encode("ascii"),
                                  intermarket_sweep.encode("ascii"), minimum_quantity, cross_type.encode("ascii"),
                                  customer_type.encode("ascii"))
        except struct.error as error:
            raise ValueError(f"enter_order: {error}") from None
        if len(payload) != _ENTER.size:
            raise ValueError("enter_order: token is at most 14 characters, stock 8, firm 4")
        self._send("O", token, payload)

    def cancel_order(self, token: str, shares: int = 0) -> None:
        """Send Cancel Order: reduce ``token`` to ``shares`` (0 cancels it)."""
        self._send("X", token, wire.encode("out", type="X", token=token, shares=shares))

    def replace_order(self, existing_token: str, replacement_token: str, shares: int, price: int, *,
                      tif: int = wire.TIF_SYSTEM_HOURS, display: str = "Y", intermarket_sweep: str = "N",
                      minimum_quantity: int = 0) -> None:
        """Send Replace Order (pending under ``replacement_token``)."""
        self._send("U", replacement_token, wire.encode(
            "out", type="U", existing_token=existing_token, replacement_token=replacement_token, shares=shares,
            price=price, tif=tif, display=display, intermarket_sweep=intermarket_sweep,
            minimum_quantity=minimum_quantity))

    def _send(self, kind: str, token: str, payload: bytes) -> None:
        self.pending[(kind, token)] = PendingOrder(kind, token, payload)  # before the bytes: a failed send is pending
        try:
            self.connection.send(payload)
        except ConnectionLost as error:
            error.unacknowledged = self.unacknowledged()
            raise

    # -- answers -------------------------------------------------------------------------------

    def _acknowledge(self, message: dict) -> None:
        kind, token = message["type"], message.get("token")
        pending = self.pending
        if kind == "A":
            pending.pop(("O", token), None)
        elif kind == "J":
            if pending.pop(("O", token), None) is None:
                pending.pop(("U", token), None)
        elif kind == "U":
            pending.pop(("U", token), None)
        elif kind == "C":
            pending.pop(("X", token), None)

    def _drain_inbox(self) -> None:
        inbox = self.connection.inbox
        while inbox:
            message = wire.decode("in", inbox.popleft().payload)
            self._acknowledge(message)
            self.messages.append(message)

    def receive(self, timeout: float | None = None) -> dict | None:
        """Return the next answer from the exchange as a dict (``wire.decode``), None after
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
        message = wire.decode("in", data.payload)
        self._acknowledge(message)
        return message

    def wait_for(self, token: str, types: str = "AJUC", timeout: float = 5.0) -> dict:
        """Return the first answer for ``token`` whose type is in ``types``; other answers are kept
        for ``receive``. ``TimeoutError`` after ``timeout`` seconds."""
        import time

        for index, message in enumerate(self.messages):
            if message.get("token") == token and message["type"] in types:
                del self.messages[index]
                return message
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {types!r} answer for token {token!r} in {timeout} s")
            try:
                data = self.connection.receive(remaining)
            except ConnectionLost as error:
                error.unacknowledged = self.unacknowledged()
                raise
            if data is None:
                continue
            message = wire.decode("in", data.payload)
            self._acknowledge(message)
            if message.get("token") == token and message["type"] in types:
                return message
            self.messages.append(message)
