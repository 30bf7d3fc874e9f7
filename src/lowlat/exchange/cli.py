"""``lowlat exchange [--host H] [--port P] [--fix-port F]``: run the simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading

__all__ = ["main", "build_parser"]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the simulator's options to ``parser`` (a new one when None) and return it."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="lowlat exchange", description="run the exchange simulator")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one, printed)")
    parser.add_argument("--fix-port", type=int, default=None,
                        help="also accept FIX 4.2/4.4 sessions on this port (0: a free one, printed)")
    parser.add_argument("--application", choices=("ouch", "echo"), default="ouch",
                        help="what answers the orders (default ouch: a price-time book)")
    parser.add_argument("--heartbeat-interval", type=float, default=1.0, help="seconds between heartbeats")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds of client silence before closing")
    parser.add_argument("--busy-poll", action="store_true",
                        help="spin on the sockets instead of sleeping in epoll: a client's send never has to wake "
                             "the simulator (as with an exchange gateway on its own core); takes a whole CPU")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every message received")
    parser.add_argument("--gc", action="store_true",
                        help="keep Python's cyclic garbage collector on (off by default: its pauses show in p99)")
    return parser


def make_application(name: str):
    """The application ``name`` (``"ouch"`` or ``"echo"``)."""
    from .simulator import EchoApplication

    if name == "echo":
        return EchoApplication()
    from .ouch_book import OuchExchange

    return OuchExchange()


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; print the address it listens on first."""
    from .simulator import ExchangeSimulator

    args = build_parser().parse_args(argv)
    if not args.gc:
        # The simulator is the latency reference its clients measure against: a cyclic collection
        # over a book of tens of thousands of orders is a multi-millisecond stall in every client's
        # p99 (measured here). Nothing it keeps forms reference cycles; refcounting frees the rest.
        gc.disable()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.fix_port is not None and args.application != "ouch":
        print("lowlat exchange: --fix-port needs --application ouch (FIX orders go to the book)", file=sys.stderr)
        return 2
    simulator = ExchangeSimulator(args.host, args.port, application=make_application(args.application),
                                  heartbeat_interval=args.heartbeat_interval, timeout=args.timeout,
                                  fix_port=args.fix_port, busy_poll=args.busy_poll).start()
    host, port = simulator.address
    line = f"lowlat exchange listening on {host}:{port}"
    if args.fix_port is not None:
        line += f" (SoupBinTCP), FIX on {host}:{simulator.fix_address[1]}"
    print(line, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0
