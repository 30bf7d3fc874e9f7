"""The order path through the layers, as :mod:`lowlat.net` builds it: the pure half of
:mod:`lowlat.wire`, and where the compiled half hands over whenever a read is not the simple case.

``OuchSession`` -> ``SoupConnection`` (session lock, SoupBinTCP client, inbox) -> ``Transport``
(send lock, the wait mode's ``recv`` loop) -> the socket. Nothing here is new behaviour: these are
the bodies of ``OuchSession._send`` and ``OuchSession.wait_for``, plus :func:`resume`, which takes
over from the compiled half with what its own ``recv`` returned.
"""

from __future__ import annotations

import time
from typing import Any

_monotonic = time.monotonic


def enter_order(session: Any, token: str, side: str, shares: int, stock: str, price: int, *,
                time_in_force: int = 99999, firm: str = "", display: str = "Y", capacity: str = "A",
                intermarket_sweep: str = "N", minimum_quantity: int = 0, cross_type: str = "N",
                customer_type: str = " ") -> None:
    """Send Enter Order; ``price`` is an int with 4 implied decimals (:func:`~lowlat.net.ouch.price_to_int`);
    ``time_in_force`` 99999 is ``TIF_SYSTEM_HOURS``. Field errors are ``lowlat.ouch``'s
    (``TypeError``/``ValueError`` naming the field). ``OuchSession.enter_order`` is this function."""
    from .. import ouch

    buffer = session._enter
    ouch.encode_enter_order(buffer, 0, token, side, shares, stock, price, time_in_force, firm, display, capacity,
                            intermarket_sweep, minimum_quantity, cross_type, customer_type)
    send_order(session, "O", token, bytes(buffer))


def send_order(session: Any, kind: str, token: str, payload: bytes) -> None:
    """Record ``payload`` as pending under ``(kind, token)`` (before its bytes: a failed send is
    pending), then send it as Unsequenced Data on ``session.connection``; a ``ConnectionLost``
    carries ``unacknowledged``."""
    from ..net.connection import ConnectionLost

    session.pending[(kind, token)] = payload
    try:
        session.connection.send(payload)
    except ConnectionLost as error:
        error.unacknowledged = session.unacknowledged()
        raise


def wait_for(session: Any, token: str, types: str = "AJUC", timeout: float = 5.0) -> dict:
    """Return the first answer for ``token`` (its order token, or a Replaced's replacement token)
    whose type is in ``types``, as a dict; other answers are kept for ``receive``. ``TimeoutError``
    after ``timeout`` seconds, ``ConnectionLost`` (with ``unacknowledged``) when the connection
    died. ``OuchSession.wait_for`` is this function."""
    messages = session.messages
    if messages:
        for index, message in enumerate(messages):
            if _token(message) == token and message["type"] in types:
                del messages[index]
                return message
    return wait_rest(session, token, types, timeout, _monotonic() + timeout)


def wait_rest(session: Any, token: str, types: str, timeout: float, deadline: float) -> dict:
    """``wait_for``'s loop once ``session.messages`` was looked through, until ``deadline``."""
    from ..net.connection import ConnectionLost

    messages = session.messages
    receive = session.connection.receive
    remaining = deadline - _monotonic()
    while True:
        if remaining <= 0:
            raise TimeoutError(f"no {types!r} answer for token {token!r} in {timeout} s")
        try:
            data = receive(remaining)
        except ConnectionLost as error:
            error.unacknowledged = session.unacknowledged()
            raise
        if data is not None:
            message = session._decode(data.payload)
            answered = message.get("order_token")  # _token() inline: once per answer
            if answered is None:
                answered = message.get("replacement_order_token")
            if answered == token and message["type"] in types:
                return message
            messages.append(message)
        remaining = deadline - _monotonic()


def resume(session: Any, token: str, types: str, timeout: float, deadline: float, state: Any, due: float,
           outcome: bytes | OSError | None) -> dict:
    """Take ``wait_for`` over from the compiled half after a read that was not the simple case.

    ``outcome`` is what its ``recv`` gave (bytes, ``b""`` for a closed peer, an ``OSError``, None
    when nothing came by the deadline); ``state`` and ``due`` are what ``SoupConnection.service``
    had computed before the wait. Does what the layers would have done with it, then goes on as
    :func:`wait_rest`."""
    from ..net import soupbintcp as soup
    from ..net.connection import ConnectionLost, received

    connection = session.connection
    try:
        connection._read_and_take(received, outcome, state, due)
    except (ConnectionLost, soup.ProtocolError) as error:  # SoupConnection.receive: answers read first
        if not connection.inbox:
            if isinstance(error, ConnectionLost):
                error.unacknowledged = session.unacknowledged()
            raise
    return wait_rest(session, token, types, timeout, deadline)


def _token(message: dict) -> Any:
    token = message.get("order_token")
    return message.get("replacement_order_token") if token is None else token


class Checkout:
    """``ConnectionPool.session()``: take a free session on entering the ``with`` block (the pool's
    ``_take`` when none is free), give it back on leaving (the pool's ``_give_back`` unless it is
    alive and still checked out). An ``__exit__`` without its ``__enter__``, or a second one,
    raises ``AttributeError``."""

    __slots__ = ("_pool", "_timeout", "_slot")

    def __init__(self, pool: Any, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._slot: Any = None

    def __enter__(self) -> Any:
        pool = self._pool
        with pool._lock:  # the usual case inline: a free session, taken without further calls
            if not pool._closed:
                for slot in pool._slots:
                    if slot.state == "idle":
                        slot.state = "busy"
                        self._slot = slot
                        return slot.session
        self._slot = slot = pool._take(self._timeout)
        return slot.session

    def __exit__(self, *exc: object) -> None:
        slot, self._slot = self._slot, None
        pool = self._pool
        if slot.session.alive:  # the usual case inline: back to idle (see the pool's _give_back)
            with pool._lock:
                if slot.state == "busy":
                    slot.state = "idle"
                    if pool._waiting:
                        pool._condition.notify()
                    return
        pool._give_back(slot)  # the slot it took: no lookup by session needed
