"""``lowlat exchange [--host H] [--port P]``: run the simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

__all__ = ["main", "build_parser"]


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the simulator's options to ``parser`` (a new one when None) and return it."""
    if parser is None:
        parser = argparse.ArgumentParser(prog="lowlat exchange", description="run the exchange simulator")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one, printed)")
    parser.add_argument("--application", choices=("ouch", "echo"), default="ouch",
                        help="what answers the orders (default ouch: a price-time book)")
    parser.add_argument("--heartbeat-interval", type=float, default=1.0, help="seconds between heartbeats")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds of client silence before closing")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every message received")
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
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    simulator = ExchangeSimulator(args.host, args.port, application=make_application(args.application),
                                  heartbeat_interval=args.heartbeat_interval, timeout=args.timeout).start()
    host, port = simulator.address
    print(f"lowlat exchange listening on {host}:{port}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0
