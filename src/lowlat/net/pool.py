"""ConnectionPool: logged-in sessions kept ready, handed out one thread at a time, replaced when dead.

A pool holds *sessions*: any object with ``connect()`` (open and log in, resuming where it left
off), ``close()``, ``alive`` (bool), ``service(timeout)`` (read what arrived, send heartbeats due,
raise ``ConnectionLost`` when the connection is gone), ``last_heartbeat`` (``time.monotonic()`` of
the last bytes from the exchange) and, optionally, ``unacknowledged()`` (what was sent and never
answered). :class:`~lowlat.net.ouch.OuchSession` and :class:`~lowlat.net.connection.SoupConnection`
are such sessions; ``factory()`` makes a new, unconnected one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .._errors import PoolExhausted
from ..wire import Checkout  # ``with pool.session() as s``: compiled where it is built

__all__ = ["ConnectionPool", "PoolHealth", "LostOrders", "PoolExhausted", "PooledSession"]


class PooledSession(Protocol):
    """What a pool needs of a session (``unacknowledged()`` and ``logout(timeout)`` are optional)."""

    @property
    def alive(self) -> bool: ...

    @property
    def last_heartbeat(self) -> float: ...

    def connect(self) -> object: ...

    def close(self) -> None: ...

    def service(self, timeout: float = 0.0) -> None: ...


@dataclass(frozen=True)
class PoolHealth:
    """A snapshot of a pool: ``up`` sessions logged in (``idle`` of them free, ``in_use`` checked
    out), ``down`` waiting for a reconnect, ``reconnects`` done since the pool opened, ``failures``
    (sessions found dead), ``last_heartbeat`` the oldest ``last_heartbeat`` among the sessions up
    (how stale the least recently heard session is; None when none is up)."""

    size: int
    max_size: int
    up: int
    idle: int
    in_use: int
    down: int
    reconnects: int
    failures: int
    last_heartbeat: float | None


@dataclass(frozen=True)
class LostOrders:
    """Orders a session had sent without an answer when its connection died (``at``: monotonic)."""

    session: object
    at: float
    error: str
    orders: list


class _Slot:
    __slots__ = ("session", "state", "retry_at", "attempts", "last_error")

    def __init__(self, session: PooledSession) -> None:
        self.session = session
        self.state = "idle"  # idle | busy (checked out) | service (the maintenance thread has it) | down
        self.retry_at = 0.0
        self.attempts = 0
        self.last_error: BaseException | None = None


class ConnectionPool:
    """``size`` sessions made by ``factory`` and connected up front, at most ``max_size``.

    Check a session out with ``with pool.session() as s:``; it comes back on leaving the block. When
    every session is in use the pool opens another (up to ``max_size``), else waits up to
    ``timeout`` seconds (``checkout_timeout`` by default) for one to come back and then raises
    :class:`~lowlat.PoolExhausted` naming how many are in use and how many down.

    A maintenance thread, every ``service_interval`` seconds, services the idle sessions
    (heartbeats, reading what the exchange sent) and reconnects dead ones with exponential backoff
    (``backoff`` doubling up to ``max_backoff`` seconds). A session found dead (by the maintenance
    thread, or returned dead by its user) has its ``unacknowledged()`` orders recorded: read and
    clear them with :meth:`take_lost_orders`, or pass ``on_lost`` to be called with each
    :class:`LostOrders` (from whichever thread found it). After the reconnect the session resumes
    its sequence, so answers sent while it was down are replayed to it.

    Every method is thread-safe. ``close()`` logs every session out and stops the thread.
    """

    def __init__(self, factory: Callable[[], PooledSession], size: int, *, max_size: int | None = None,
                 checkout_timeout: float = 1.0, backoff: float = 0.05, max_backoff: float = 2.0,
                 service_interval: float = 0.05, on_lost: Callable[[LostOrders], object] | None = None) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if max_size is None:
            max_size = size
        if not isinstance(max_size, int) or max_size < size:
            raise ValueError(f"max_size must be an int >= size ({size}), got {max_size!r}")
        if checkout_timeout < 0:
            raise ValueError(f"checkout_timeout must be >= 0, got {checkout_timeout!r}")
        self.factory = factory
        self.size = size
        self.max_size = max_size
        self.checkout_timeout = checkout_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.service_interval = service_interval
        self.on_lost = on_lost
        self.reconnects = 0
        self.failures = 0
        self._slots: list[_Slot] = []
        self._by_session: dict[int, _Slot] = {}
        self._lost: list[LostOrders] = []
        # ``with self._lock`` (C) rather than ``with self._condition`` (a Python-level __enter__): the
        # same lock; the condition is only for waiting, and notified only when someone waits.
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)  # checkout waiters only: the maintenance thread sleeps on _stop
        self._waiting = 0  # threads in _condition.wait (read and written under _lock)
        self._stop = threading.Event()
        self._closed = False
        opened = []
        try:
            for _ in range(size):
                session = factory()
                session.connect()
                opened.append(session)
        except BaseException:
            for session in opened:
                session.close()
            raise
        for session in opened:
            self._add(session)
        self._thread = threading.Thread(target=self._maintain, name="lowlat-pool", daemon=True)
        self._thread.start()

    def _add(self, session: PooledSession) -> _Slot:
        slot = _Slot(session)
        self._slots.append(slot)
        self._by_session[id(session)] = slot
        return slot

    # -- checkout ------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake one checkout waiter, if any (caller holds ``_lock``)."""
        if self._waiting:
            self._condition.notify()

    def acquire(self, timeout: float | None = None):
        """Return a live session for this thread alone; give it back with :meth:`release`."""
        return self._take(timeout).session

    def _take(self, timeout: float | None) -> _Slot:
        timeout = self.checkout_timeout if timeout is None else timeout
        deadline = None  # taken only when the first look finds nothing free
        with self._lock:
            while True:
                if self._closed:
                    raise RuntimeError("the pool is closed")
                for slot in self._slots:
                    if slot.state == "idle":
                        slot.state = "busy"
                        return slot
                if len(self._slots) < self.max_size:
                    slot = self._add(self.factory())
                    slot.state = "busy"
                    break
                if deadline is None:
                    deadline = time.monotonic() + timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    busy = sum(s.state == "busy" for s in self._slots)
                    down = sum(s.state == "down" for s in self._slots)
                    raise PoolExhausted(f"no session free after {timeout} s: {busy} in use, {down} reconnecting, "
                                        f"max_size {self.max_size}")
                self._waiting += 1
                try:
                    self._condition.wait(remaining)
                finally:
                    self._waiting -= 1
        try:  # connect the new session outside the lock
            slot.session.connect()
        except BaseException:
            with self._lock:
                self._slots.remove(slot)
                del self._by_session[id(slot.session)]
                self._notify()
            raise
        return slot

    def release(self, session) -> None:
        """Give ``session`` back; a dead one has its lost orders recorded and is reconnected."""
        with self._lock:
            slot = self._by_session.get(id(session))
            if slot is None or slot.session is not session or slot.state != "busy":
                raise ValueError("release: session was not checked out of this pool")
        self._give_back(slot)

    def _give_back(self, slot: _Slot) -> None:
        alive = slot.session.alive  # its holder is this thread: nobody else changes it meanwhile
        with self._lock:
            if slot.state != "busy":
                raise ValueError("release: session was not checked out of this pool")
            if alive:
                slot.state = "idle"
                self._notify()
                return
        self._mark_down(slot, "returned dead")

    def session(self, timeout: float | None = None) -> Checkout:
        """Check a session out for the ``with`` block (see :meth:`acquire`): ``with pool.session() as s:``."""
        return Checkout(self, timeout)

    # -- failures ------------------------------------------------------------------------------

    def _mark_down(self, slot: _Slot, error: str) -> None:
        session = slot.session
        session.close()
        orders = list(session.unacknowledged()) if hasattr(session, "unacknowledged") else []
        lost = LostOrders(session, time.monotonic(), error, orders)
        with self._lock:
            self.failures += 1
            slot.state = "down"
            slot.attempts = 0
            slot.retry_at = time.monotonic()
            if orders:
                self._lost.append(lost)
        if orders and self.on_lost is not None:
            self.on_lost(lost)

    def take_lost_orders(self) -> list[LostOrders]:
        """Return and forget every :class:`LostOrders` recorded so far, oldest first."""
        with self._lock:
            lost, self._lost = self._lost, []
        return lost

    def health(self) -> PoolHealth:
        """A consistent snapshot of the pool (see :class:`PoolHealth`)."""
        with self._lock:
            slots = self._slots
            up = [s.session.last_heartbeat for s in slots if s.state != "down" and s.session.alive]
            in_use = sum(s.state == "busy" for s in slots)
            idle = sum(s.state in ("idle", "service") and s.session.alive for s in slots)
            return PoolHealth(size=len(slots), max_size=self.max_size, up=len(up), idle=idle, in_use=in_use,
                              down=len(slots) - idle - in_use, reconnects=self.reconnects, failures=self.failures,
                              last_heartbeat=min(up) if up else None)

    # -- background ----------------------------------------------------------------------------

    def _maintain(self) -> None:
        # Sleeping on its own event (not the checkout condition) keeps every release from waking
        # this thread: a wake-up per order costs the order thread the GIL hand-over.
        while not self._stop.wait(self.service_interval):
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                idle = [s for s in self._slots if s.state == "idle"]
                due = [s for s in self._slots if s.state == "down" and s.retry_at <= now]
                for slot in idle:
                    slot.state = "service"  # nobody else may touch it meanwhile
                for slot in due:
                    slot.state = "service"
            for slot in idle:
                try:
                    slot.session.service(0.0)
                except Exception as error:  # any failure takes the session down, never this thread
                    self._mark_down(slot, f"{type(error).__name__}: {error}")
                    continue
                with self._lock:
                    slot.state = "idle"
                    self._notify()
            for slot in due:
                self._reconnect(slot)

    def _reconnect(self, slot: _Slot) -> None:
        try:
            slot.session.connect()
        except Exception as error:  # refused, timed out, rejected, sequence gap...: retry later
            with self._lock:
                slot.attempts += 1
                slot.state = "down"
                slot.retry_at = time.monotonic() + min(self.backoff * 2 ** (slot.attempts - 1), self.max_backoff)
                slot.last_error = error
            return
        with self._lock:
            self.reconnects += 1
            slot.state = "idle"
            self._notify()

    def close(self, timeout: float = 5.0) -> None:
        """Log every session out, stop the maintenance thread (joined within ``timeout``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._condition.notify_all()
        self._stop.set()
        self._thread.join(timeout)
        for slot in self._slots:
            try:
                if hasattr(slot.session, "logout") and slot.session.alive:
                    slot.session.logout(0.2)
                else:
                    slot.session.close()
            except (OSError, ValueError):
                slot.session.close()

    def __enter__(self) -> "ConnectionPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
