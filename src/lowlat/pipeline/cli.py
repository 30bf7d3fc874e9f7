"""``lowlat pipeline``: run a tick-to-trade scenario and print the seed's budget table against it.

::

    lowlat pipeline [--feed synthetic|FILE|udp] [--messages N] [--rate R] [--layout one|two]
                    [--backend cython|python|seed] [--duration S] [--exchange HOST:PORT]
                    [--json PATH] [--hlog PATH] [--reconnect] [--ring N] [--warm-every N]
                    [--exchange-busy-poll]

Starts the exchange simulator in its own process unless ``--exchange`` names one, shows progress on
stderr, and prints the table on stdout. Ctrl-C, a lost session and a raising strategy all end
the run cleanly with the figures so far (a raising strategy also prints its traceback and exits 1).
``--json`` and ``--hlog`` are checked for writability before any work starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .backends import PIPELINE_BACKENDS
from .budget import Figures, budget_table, write_hlog
from .core import WARM_EVERY



def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowlat pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--feed", default="synthetic",
                        help="synthetic (the generator), udp (MoldUDP64 on loopback from a replayer process, which "
                             "answers the receiver's retransmission requests for any gap; in --layout two the feed "
                             "handler is the receiver) or the path of an ITCH 5.0 file in NASDAQ's daily form "
                             "(default synthetic)")
    parser.add_argument("--messages", type=_positive_int, default=200_000,
                        help="feed messages (default 200,000; for a file: at most this many)")
    parser.add_argument("--rate", type=_positive_float, default=None,
                        help="feed rate in messages/s (default: as fast as possible)")
    parser.add_argument("--layout", choices=("one", "two"), default="one",
                        help="one process, or a feed-handler process (decoding any --feed) and a strategy process "
                             "over shared memory")
    parser.add_argument("--backend", choices=PIPELINE_BACKENDS, default="cython",
                        help="the stages' implementation: compiled, pure Python, or the seed's plain classes")
    parser.add_argument("--duration", type=_positive_float, default=None, help="stop after this many seconds")
    parser.add_argument("--exchange", type=_address, default=None,
                        help="HOST:PORT of a running exchange (default: start the simulator on 127.0.0.1)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--hlog", default=None, metavar="PATH",
                        help="also write every stage histogram in HdrHistogram's log format")
    parser.add_argument("--reconnect", action="store_true",
                        help="reconnect when the exchange drops the session (default: end the run)")
    parser.add_argument("--ring", type=_positive_int, default=4096,
                        help="two-process layout: shared-memory ring capacity in book updates (default 4096)")
    parser.add_argument("--threshold", type=float, default=0.8,
                        help="the example strategy's imbalance threshold (default 0.8)")
    parser.add_argument("--seed", type=int, default=1, help="synthetic feed seed (default 1)")
    parser.add_argument("--warm-every", type=_non_negative_int, default=WARM_EVERY, metavar="N",
                        help="run the order path short of send (risk preview + encode) and send the exchange a SoupBinTCP "
                             "heartbeat (at most one per 100 us) every N messages (two processes: book updates) between orders, to keep it in cache "
                             f"(default {WARM_EVERY}; 0: never)")
    parser.add_argument("--exchange-busy-poll", action="store_true",
                        help="start the simulator spinning on its sockets, as an exchange gateway on its own core: "
                             "on loopback a send otherwise pays for waking the sleeping simulator (takes a CPU)")
    parser.add_argument("--no-pin", action="store_true",
                        help="leave CPU placement to the scheduler (default: the order session gets one CPU, "
                             "the simulator, feed handler and replayer the others)")
    return parser


def _check_writable(path: str | None, option: str) -> str | None:
    if path is None:
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"{option}: directory {directory} does not exist"
    if os.path.isdir(path):
        return f"{option}: {path} is a directory"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{option}: {path} is not writable"
    if not os.path.exists(path) and not os.access(directory, os.W_OK):
        return f"{option}: cannot create files in {directory}"
    return None


class _Progress:
    def __init__(self, total: int | None) -> None:
        self.total = total
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.last = 0.0

    def __call__(self, figures: Figures) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5:
            return
        self.last = now
        counts = figures.counts
        done = counts.get("messages", 0)
        what = "messages"
        if not done and counts.get("received"):  # two processes: the feed handler counts its own
            done, what = counts["received"], "book updates"
        of = f"/{self.total:,}" if self.total and what == "messages" else ""
        line = (f"[{now - self.started:6.1f}s] {done:,}{of} {what}, {counts.get('orders', 0):,} orders, "
                f"{counts.get('corrupt', 0)} corrupt")
        sys.stderr.write(("\r\x1b[K" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _feed(args, now_ns, counts: dict, replayer_cpus):
    """The feed the arguments name, and a cleanup callable (the replayer process for udp)."""
    from . import feeds

    if args.feed == "synthetic":
        return feeds.synthetic_feed(args.messages, seed=args.seed, rate=args.rate), lambda: None
    if args.feed == "udp":
        feed = feeds.udp_feed(args.messages, seed=args.seed, rate=args.rate, now_ns=now_ns, counts=counts,
                              replayer_cpus=replayer_cpus)
        return feed, feed.close  # closing the feed stops the replayer
    return feeds.file_feed(args.feed, messages=args.messages, rate=args.rate), lambda: None


def main(argv: list[str] | None = None) -> int:
    """Run ``lowlat pipeline`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    for path, option in ((args.json, "--json"), (args.hlog, "--hlog")):
        problem = _check_writable(path, option)
        if problem:
            print(f"lowlat pipeline: {problem}", file=sys.stderr)
            return 2
    if args.feed not in ("synthetic", "udp") and not os.path.isfile(args.feed):
        print(f"lowlat pipeline: --feed {args.feed}: no such file (or use synthetic / udp)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="lowlat pipeline: %(message)s")
    from .backends import path_backend
    from .core import Pipeline, StrategyError
    from .exchange import ExchangeProcess, split_cpus
    from .strategy import ImbalanceStrategy

    try:
        stages = path_backend(args.backend)
    except ImportError as error:
        print(f"lowlat pipeline: backend {args.backend} is not built here ({error})", file=sys.stderr)
        return 2
    exchange = None
    status = 0
    progress = _Progress(args.messages)
    original_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        cpus = None if args.no_pin else split_cpus()
        if args.exchange is None:
            exchange = ExchangeProcess(busy_poll=args.exchange_busy_poll).start()
            address = exchange.address
            if cpus is not None:
                exchange.pin(cpus[1])
        else:
            address = args.exchange
        if cpus is not None:
            os.sched_setaffinity(0, cpus[0])  # after starting the simulator: children inherit it
        strategy = ImbalanceStrategy(args.threshold)
        feed_name = args.feed if args.feed in ("synthetic", "udp") else os.path.basename(args.feed)
        if args.layout == "two":
            from .twoproc import run_two_process

            figures = run_two_process(stages.name, strategy, exchange=address, messages=args.messages,
                                      feed=args.feed, seed=args.seed, rate=args.rate, capacity=args.ring,
                                      duration=args.duration, reconnect=args.reconnect, progress=progress,
                                      feed_cpus=None if cpus is None else cpus[1], warm_every=args.warm_every)
        else:
            pipeline = Pipeline(stages, strategy, exchange=address, reconnect=args.reconnect, progress=progress,
                                feed_name=feed_name, warm_every=args.warm_every)
            feed, stop_feed = _feed(args, stages.now_ns, pipeline.figures.counts, None if cpus is None else cpus[1])
            try:
                figures = pipeline.run(feed, duration=args.duration)
            except StrategyError as error:
                progress.close()
                print(f"lowlat pipeline: the strategy raised; run stopped\n{error.traceback_text}", file=sys.stderr)
                assert error.figures is not None  # Pipeline.run attaches them
                figures = error.figures
                status = 1
            finally:
                stop_feed()
    except KeyboardInterrupt:  # outside the feed loop (start-up, drain): nothing measured to print
        progress.close()
        print("lowlat pipeline: interrupted", file=sys.stderr)
        return 130
    except (ConnectionError, TimeoutError) as error:
        progress.close()
        print(f"lowlat pipeline: cannot reach the exchange: {error}", file=sys.stderr)
        return 1
    finally:
        if exchange is not None:
            exchange.stop()
        if original_cpus is not None and not args.no_pin:
            os.sched_setaffinity(0, original_cpus)  # main() may be called from a longer-lived program
    progress.close()
    print(budget_table(figures))
    if args.json:
        figures.write_json(args.json)
    if args.hlog:
        write_hlog(args.hlog, figures)
    if figures.stopped_by == "interrupt":
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
