"""The one-process tick-to-trade path: feed -> decode -> book -> signal -> risk -> encode -> send.

A small, readable assembly meant to be copied and changed. :class:`Pipeline` takes a backend's
stages (:func:`lowlat.pipeline.backends.path_backend`), a strategy callable and the exchange's
address, and :meth:`Pipeline.run` drives a feed through them, stamping every stage into its own
recorder:

=================  =========================================================================
``decode``         parse start -> its record parsed (``itch.Message.parse``)
``book``           record parsed -> book updated (``Book.apply`` on the raw message)
``signal``         book updated -> the strategy callable returned
``risk``           strategy returned -> risk check done (orders only)
``encode``         risk done -> the SoupBinTCP + OUCH Enter Order bytes ready
``software``       the message's arrival -> the order's bytes ready (tick to trade without ``send``)
``send``           bytes ready -> ``socket.send`` returned
``tick_to_trade``  the message's arrival -> ``socket.send`` returned
``ack``            ``socket.send`` returned -> the exchange's Accepted/Rejected read
=================  =========================================================================

"Arrival" is the moment the loop takes the message from the feed: from memory or a file, just
before it is parsed (the decode stage's own start); from UDP, when ``recv`` returned the packet
(tick to trade of later messages of a packet includes the time spent on earlier ones, as it would
in production; their decode stage is their own parse only).

**Keeping the order path warm.** The strategy sends about one order per 2,000 messages; in
between, the book and the strategy run millions of instructions and push the risk engine's and
the encoder's code and data out of the caches, so a cold order pays microseconds of misses at
exactly the wrong moment. Every ``warm_every`` messages (default :data:`WARM_EVERY`; 0: never)
while no order is in flight, the path runs the last order sent -- and, in turn, the last order of
:data:`WARM_SPREAD` other instruments traded so far, whose risk entries and symbols the next order
may need -- through ``RiskEngine.preview`` (``check``'s code, counting nothing) and the encoder
(into the packet buffer the next real order overwrites), everything short of the order's ``send``
-- the technique trading firms use to keep a rarely taken path hot -- then sends a SoupBinTCP
Client Heartbeat on the order session (:meth:`OrderGateway.warm`: at most one per 100 µs, fewer
when they cost a wake-up of the exchange), which runs the kernel's send path for that very socket
and the exchange's end of it, and reads whatever the exchange sent, which brings the session
socket's state back from the exchange's CPU, where its answers last touched it. The exchange receives the heartbeats (the protocol's own no-op);
against a venue that counts them, choose ``warm_every`` with that in mind. Its cost is in the
throughput figure; the stage histograms hold real orders only.

Bad input never stops a run: a message whose length prefix overruns its packet or disagrees with
its type, or whose type is not ITCH 5.0, is counted in ``corrupt`` and logged with its byte offset
(the rest of that packet is skipped: its framing can no longer be trusted). A strategy that raises
stops the run: :class:`StrategyError` carries the traceback and the figures so far. The exchange
dropping the session ends the run with the unacknowledged orders listed (or reconnects, when
``reconnect=True``). Ctrl-C (``KeyboardInterrupt``) ends it with the figures so far.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any, Callable, Iterable

from .backends import DEFAULT_RISK_LIMITS, PathBackend, path_backend
from .budget import STAGE_NAMES, Figures
from .gateway import SIDE_CODE, ConnectionLost, OrderGateway
from .strategy import ImbalanceStrategy

__all__ = ["Pipeline", "StrategyError", "Chunk", "WARM_EVERY"]

log = logging.getLogger("lowlat.pipeline")

#: A piece of feed: ``(data, start, end, arrival_ns)``. ``data[start:end]`` holds whole messages
#: each behind a 2-byte big-endian length (the file form; also a MoldUDP64 packet's blocks);
#: ``arrival_ns`` is the packet's receive stamp, or None to stamp each message as it is taken.
Chunk = tuple

_POLL_EVERY = 4096  # messages between session upkeep polls when no order is in flight
_NEVER = 1 << 62

#: Messages between two warm-ups of the order path (:meth:`Pipeline._warm`) when no order is in flight.
WARM_EVERY = 64
#: Instruments whose order-path data each warm-up also touches, in turn (see :meth:`Pipeline._warm`).
WARM_SPREAD = 4


def _no_preview(*_args: Any) -> int:  # a risk check without a what-if form (the seed's): nothing to warm
    return 0


class StrategyError(RuntimeError):
    """The strategy callable raised; ``traceback_text`` is its traceback, ``figures`` the run so far."""

    def __init__(self, message: str, traceback_text: str, figures: Figures | None = None) -> None:
        super().__init__(message)
        self.traceback_text = traceback_text
        self.figures = figures


class RunEnding:
    """How a run's loop ends, for both layouts: around the loop (``with``), Ctrl-C, a strategy
    error or a lost session stop it with ``figures.stopped_by`` saying which; anything else goes
    through. After the session is closed, :meth:`result` returns the figures or re-raises the
    strategy's error with them attached."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self.strategy_error: StrategyError | None = None

    def __enter__(self) -> "RunEnding":
        return self

    def __exit__(self, kind: Any, error: Any, _traceback: Any) -> bool:
        if kind is None:
            return False
        if issubclass(kind, KeyboardInterrupt):
            self.figures.stopped_by = "interrupt"
        elif issubclass(kind, StrategyError):
            self.figures.stopped_by = "strategy error"
            self.strategy_error = error
        elif issubclass(kind, ConnectionLost):
            self.figures.stopped_by = f"connection lost: {error}"
        else:
            return False
        return True

    def result(self) -> Figures:
        if self.strategy_error is not None:
            self.strategy_error.figures = self.figures
            raise self.strategy_error
        return self.figures


def _unique_names() -> tuple[str, str]:
    """A SoupBinTCP username and an order-token prefix no earlier run against the same exchange used."""
    stamp = int(time.time() * 1000) ^ (os.getpid() << 20)
    letters = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = ""
    for _ in range(6):
        stamp, digit = divmod(stamp, 36)
        text += letters[digit]
    return "P" + text[:5], text


class Pipeline:
    """The tick-to-trade path in one process (see the module docstring).

    ``backend`` is ``"cython"``, ``"python"`` or ``"seed"``; ``strategy`` any
    ``on_book_update(book, instrument) -> Order | None`` (default: :class:`ImbalanceStrategy`);
    ``exchange`` the ``(host, port)`` of a SoupBinTCP/OUCH exchange; ``risk_limits`` keyword
    arguments for the backend's risk engine (default :data:`DEFAULT_RISK_LIMITS`).
    One thread; a pipeline runs once.
    """

    def __init__(self, backend: str | PathBackend = "cython", strategy: Callable | None = None, *,
                 exchange: tuple[str, int], risk_limits: dict | None = None, reconnect: bool = False,
                 busy_poll: bool = False, progress: Callable[[Figures], None] | None = None,
                 layout: str = "one", feed_name: str = "synthetic", warm_every: int = WARM_EVERY) -> None:
        if isinstance(warm_every, bool) or not isinstance(warm_every, int):
            raise TypeError(f"warm_every must be an int, got {type(warm_every).__name__}")
        if warm_every < 0:
            raise ValueError(f"warm_every must be >= 0 (0: never), got {warm_every}")
        self.stages = backend if isinstance(backend, PathBackend) else path_backend(backend)
        self.strategy = strategy if strategy is not None else ImbalanceStrategy()
        self.exchange = exchange
        self.reconnect = reconnect
        self.progress = progress
        self.record = self.stages.make_record()
        self.book = self.stages.make_book()
        self.risk = self.stages.make_risk(dict(DEFAULT_RISK_LIMITS if risk_limits is None else risk_limits))
        self.encode = self.stages.make_encoder()
        self.recorders = {name: self.stages.make_recorder(name) for name in STAGE_NAMES if name != "hop"}
        self.figures = Figures(self.stages.name, layout, feed_name)
        self.directory: dict[int, str] = {}  # stock locate -> symbol, from Stock Directory messages
        self._risk_instruments: set[int] = set()
        username, self._token_prefix = _unique_names()
        self.gateway = OrderGateway(exchange, self.stages.ouch, self.recorders["ack"], self.stages.now_ns,
                                    username=username, risk=self.risk, busy_poll=busy_poll)
        self._risk_check = self.risk.check
        self._risk_preview = getattr(self.risk, "preview", None) or _no_preview
        self.warm_every = warm_every
        self._warm_order: Any = None  # the last order sent: what _warm runs
        self._warm_orders: dict[int, Any] = {}  # instrument -> its last order sent
        self._warm_rotation: list[int] = []  # the instruments of _warm_orders, in the order first seen
        self._warm_turn = 0
        self._now_ns = self.stages.now_ns
        self._order_sequence = 0
        self._next_token = ""
        self._prepare_token()
        self._since_poll = 0
        self._deadline: float | None = None

    # -- running ---------------------------------------------------------------------------------

    def run(self, feed: Iterable[Chunk], *, duration: float | None = None, drain_timeout: float = 2.0) -> Figures:
        """Drive ``feed`` through the path and return the figures (also on Ctrl-C, a lost session or
        the end of ``duration`` seconds). A strategy exception is re-raised as :class:`StrategyError`
        after the session is closed, with the figures so far attached."""
        figures = self.figures
        self.gateway.connect()
        started = time.perf_counter()
        self._deadline = None if duration is None else time.monotonic() + duration
        ending = RunEnding(figures)
        try:
            with ending:
                for data, start, end, arrival in feed:
                    if not self.process(data, start, end, arrival):
                        figures.stopped_by = "duration"
                        break
        finally:
            figures.elapsed_s = time.perf_counter() - started
            if hasattr(feed, "close"):
                feed.close()
        self.finish(drain_timeout)
        return ending.result()

    def finish(self, drain_timeout: float = 2.0) -> Figures:
        """Wait for outstanding answers, log out, and fill the figures' counts and histograms."""
        figures = self.figures
        gateway = self.gateway
        try:
            if gateway.alive:
                gateway.drain(drain_timeout)
        except (ConnectionLost, KeyboardInterrupt) as error:
            figures.notes.append(f"while waiting for acknowledgements: {error!r}")
        finally:
            try:
                gateway.close()
            except OSError:
                pass
        counts = figures.counts
        counts.update(sent=gateway.sent, send_failed=gateway.send_failures, acknowledged=gateway.accepted + gateway.rejected,
                      accepted=gateway.accepted, rejected=gateway.rejected, canceled=gateway.canceled,
                      executed=gateway.executed, unacknowledged=len(gateway.pending),
                      duplicate_answers=gateway.duplicate_answers, reconnects=counts.get("reconnects", 0))
        if gateway.pending:
            tokens = list(gateway.pending)
            shown = ", ".join(tokens[:10]) + (" ..." if len(tokens) > 10 else "")
            figures.notes.append(f"{len(tokens)} order(s) never acknowledged: {shown}")
        for name, recorder in self.recorders.items():
            figures.histograms[name] = self.stages.to_histogram(recorder)
        return figures

    # -- the hot path ----------------------------------------------------------------------------

    def process(self, data, offset: int, end: int, arrival: int | None) -> bool:
        """Run every message of ``data[offset:end]`` through the path; False when the duration is up."""
        now_ns = self.stages.now_ns
        record, parse = self.record, self.record.parse
        book, apply = self.book, self.book.apply
        strategy = self.strategy
        recorders = self.recorders
        decode_record = recorders["decode"].record
        book_record = recorders["book"].record
        signal_record = recorders["signal"].record
        counts = self.figures.counts
        gateway = self.gateway
        warm_every = self.warm_every or _NEVER
        messages = updates = 0
        try:
            while offset < end:
                if end - offset < 2:
                    self._corrupt(data, offset, "a length prefix cut short")
                    break
                length = (data[offset] << 8) | data[offset + 1]
                body = offset + 2
                offset = body + length
                if length == 0 or offset > end:
                    self._corrupt(data, body - 2, f"length {length} overruns the packet ({end - body} bytes left)")
                    break
                start = now_ns()
                t0 = start if arrival is None else arrival
                try:
                    size = parse(data, body)
                except ValueError as error:
                    self._corrupt(data, body, str(error))
                    break
                if size != length:
                    self._corrupt(data, body, f"length prefix {length} but type {chr(data[body])!r} is {size} bytes")
                    break
                t1 = now_ns()
                decode_record(t1 - start if t1 > start else 1)
                messages += 1
                if apply(data, body):
                    t2 = now_ns()
                    book_record(t2 - t1 if t2 > t1 else 1)
                    updates += 1
                    instrument = record.stock_locate
                    try:
                        order = strategy(book, instrument)
                    except Exception as error:
                        raise StrategyError(f"the strategy raised {error!r}", traceback.format_exc()) from error
                    t3 = now_ns()
                    if order is None:
                        signal_record(t3 - t2 if t3 > t2 else 1)
                    else:
                        try:
                            self._send(order, t0, t3)
                        finally:  # recorded after the send: off the order's path
                            signal_record(t3 - t2 if t3 > t2 else 1)
                elif data[body] == 82:  # R: Stock Directory, the symbol the orders need
                    self.directory[record.stock_locate] = record.stock.decode("ascii").rstrip()
                if gateway.pending:
                    self._poll()
                else:
                    self._since_poll += 1
                    if not self._since_poll % warm_every:
                        self._warm()
                    if self._since_poll >= _POLL_EVERY:
                        self._upkeep()
                        if self._deadline is not None and time.monotonic() >= self._deadline:
                            return False
        finally:
            counts["messages"] = counts.get("messages", 0) + messages
            counts["book_updates"] = counts.get("book_updates", 0) + updates
        return True

    def _send(self, order, t0: int, t3: int, live: bool = True) -> Any:
        """Risk-check, encode and send one order (stamps: arrival ``t0``, strategy returned ``t3``).

        Only what the order needs happens before ``send``; the counting and recording after it.
        ``live=False`` is the warm-up (:meth:`_warm`): the same code with ``RiskEngine.preview``
        for ``check``, stopping short of ``send`` and changing nothing; it returns the packet."""
        now_ns = self._now_ns
        instrument = order.instrument
        stock = self.directory.get(instrument)
        if stock is None:
            if live:
                self._count("orders", "unknown_instrument")
            return
        if instrument not in self._risk_instruments:  # once per instrument: its reference price
            if not live:
                return
            self.stages.add_instrument(self.risk, instrument, order.price)
            self._risk_instruments.add(instrument)
            t3 = now_ns()
        side = order.side
        code = (self._risk_check if live else self._risk_preview)(instrument, SIDE_CODE[side], order.shares,
                                                                   order.price)
        t4 = now_ns()
        if code and live:
            self.recorders["risk"].record(t4 - t3 if t4 > t3 else 1)
            self._count("orders", "risk_rejected")
            return
        token = self._next_token
        packet = self.encode(token, side, order.shares, stock, order.price)
        t5 = now_ns()
        if not live:
            return packet
        try:
            t6 = self.gateway.send(packet, token, order)
        except ConnectionLost:
            self._record_software(t0, t3, t4, t5)  # the stages before send ran; send_failed counts it
            self._count("orders")
            self._prepare_token()  # never reuse a token whose bytes may have left
            if not self._reconnect():
                raise
            return
        self._record_software(t0, t3, t4, t5)
        recorders = self.recorders
        recorders["send"].record(t6 - t5 if t6 > t5 else 1)
        recorders["tick_to_trade"].record(t6 - t0 if t6 > t0 else 1)
        self._count("orders")
        self._warm_order = order
        if self._warm_orders.get(instrument) is None:
            self._warm_rotation.append(instrument)
        self._warm_orders[instrument] = order
        self._prepare_token()

    def _record_software(self, t0: int, t3: int, t4: int, t5: int) -> None:
        recorders = self.recorders
        recorders["risk"].record(t4 - t3 if t4 > t3 else 1)
        recorders["encode"].record(t5 - t4 if t5 > t4 else 1)
        recorders["software"].record(t5 - t0 if t5 > t0 else 1)

    def _count(self, *names: str) -> None:
        counts = self.figures.counts
        for name in names:
            counts[name] = counts.get(name, 0) + 1

    def _warm(self) -> None:
        """Run the last order sent through :meth:`_send` short of ``send``, changing nothing: a risk
        ``preview`` (``check``'s code without counting the order) and an encode into the packet
        buffer the next real order overwrites, for the last order and, in turn, for the last order
        of ``WARM_SPREAD`` other instruments traded so far (their risk entries and symbols are
        data the next order may need); then a heartbeat on the order session
        (:meth:`OrderGateway.warm`) for the kernel's half; and read what the exchange sent (its
        answers last touched the session socket on its CPU). Between orders (one per ~2,000
        messages) the book and the strategy evict this code and its data from the caches; this
        keeps the next order from paying those misses (module docstring)."""
        if self._warm_order is None:
            return
        self._count("warm_ups")
        send = self._send
        send(self._warm_order, 0, 0, False)
        self.gateway.warm()
        # The per-instrument data (the risk engine's entry, the symbol) of every instrument traded
        # so far, a few per warm-up in turn: the next order may be for any of them.
        rotation, orders = self._warm_rotation, self._warm_orders
        turn = self._warm_turn
        for _ in range(min(WARM_SPREAD, len(rotation))):
            turn = turn + 1 if turn + 1 < len(rotation) else 0
            send(orders[rotation[turn]], 0, 0, False)
        self._warm_turn = turn
        self._poll()

    def _prepare_token(self) -> None:
        # The next order's token, formatted now: off the next order's tick-to-trade path.
        self._order_sequence += 1
        self._next_token = f"{self._token_prefix}{self._order_sequence:08d}"

    def _poll(self) -> None:
        try:
            self.gateway.poll()
        except ConnectionLost:
            if not self._reconnect():
                raise

    def _upkeep(self) -> None:
        self._since_poll = 0
        self._poll()
        if self.progress is not None:
            self.progress(self.figures)

    def _reconnect(self) -> bool:
        if not self.reconnect:
            return False
        counts = self.figures.counts
        counts["reconnects"] = counts.get("reconnects", 0) + 1
        log.warning("order session lost; reconnecting (%d unacknowledged)", len(self.gateway.pending))
        try:
            self.gateway.reconnect()
        except (ConnectionError, TimeoutError, OSError) as error:
            self.figures.notes.append(f"reconnect failed: {error!r}")
            return False
        return True

    def _corrupt(self, data, offset: int, why: str) -> None:
        counts = self.figures.counts
        counts["corrupt"] = counts.get("corrupt", 0) + 1
        log.warning("corrupt feed data at byte offset %d: %s; rest of the packet skipped", offset, why)
