"""Command line: ``lowlat bench [--quick] [--json PATH] [--report DIR] [--only SECTION ...]``,
``lowlat info [--json]``, ``lowlat exchange [--port P] ...``, ``lowlat pipeline ...`` and
``lowlat --version``.

The benchmarks themselves live in :mod:`lowlat.bench` (the repository's ``bench/`` folder, shipped
in the wheel); this module only parses options, checks the output paths before any work and prints.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
import time


def _writable_file(path: str) -> str | None:
    """Return why ``path`` cannot be written as a file, or None when it can (nothing is left behind)."""
    if os.path.isdir(path):
        return "is a directory"
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    if not existed:
        os.remove(path)
    return None


def _writable_dir(path: str) -> str | None:
    """Create ``path`` if needed; return why it cannot hold the report, or None when it can."""
    if os.path.exists(path) and not os.path.isdir(path):
        return "exists and is not a directory"
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if os.access(path, os.W_OK) else "is not writable"


def _check_outputs(args: argparse.Namespace) -> str | None:
    if args.json:
        why = _writable_file(args.json)
        if why:
            return f"cannot write --json {args.json!r}: {why}"
    if args.report:
        why = _writable_dir(args.report)
        if why:
            return f"cannot write --report {args.report!r}: {why}"
    return None


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import lowlat
    from lowlat._info import machine_info

    from .bench import SECTIONS
    from .bench._harness import format_table
    from .bench._runner import json_rows, resolve, run_sections, summary

    if args.list:
        from .bench import ALIASES

        print("\n".join(SECTIONS))
        print("aliases: " + ", ".join(f"{name} = {' '.join(parts)}" for name, parts in ALIASES.items()))
        return 0
    try:
        names = resolve(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    problem = _check_outputs(args)
    if problem:
        parser.error(problem)
    started_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    started = time.perf_counter()
    info = machine_info()
    results = run_sections(names, args.quick)
    elapsed = time.perf_counter() - started
    rows = [row for result in results for row in result.rows]
    header = (
        f"lowlat {lowlat.__version__} bench ({'quick' if args.quick else 'full'}), backend live: {lowlat.BACKEND}, "
        f"{info['cpu']}, Python {info['versions']['python']}, {elapsed:.1f} s; medians of repeats, warm-up, gc off, "
        "empty-loop cost subtracted; spread = half the range of the repeats; ratio = value / the group's reference "
        "row (marked *); ^ = higher is better; MET/MISSED judge the row's target in this run"
    )
    print(header)
    print(format_table(rows))
    for result in results:
        if result.skipped:
            print(f"\n{result.name}: skipped, {result.skipped}")
        elif result.seed_says and result.conclusion:
            print(f"\n{result.name} (seed {result.seed}):\n  the seed: {result.seed_says}\n  this run: {result.conclusion}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"header": header, "quick": args.quick, "date": started_at, "machine": info,
                       "sections": summary(results), "rows": json_rows(rows)}, fh, indent=2)
        print(f"\nwrote {args.json}")
    if args.report:
        from .bench.report import machine_lines, write_report

        html_path, md_path = write_report(args.report, results, info,
                                          machine_lines(info, started_at, args.quick, elapsed))
        print(f"wrote {html_path} and {md_path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from lowlat._info import describe, machine_info

    info = machine_info()
    print(json.dumps(info, indent=2) if args.json else "\n".join(describe(info)))
    return 0


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from lowlat import __version__

    parser = argparse.ArgumentParser(prog="lowlat", description="lowlat command line")
    parser.add_argument("--version", action="version", version=f"lowlat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run the side-by-side benchmark")
    bench.add_argument("--quick", action="store_true", help="shorter loops: the whole run in under a minute")
    bench.add_argument("--json", metavar="PATH", help="also write every row as JSON (checked before any work)")
    bench.add_argument("--report", metavar="DIR", help="also write DIR/index.html and DIR/report.md with plots")
    bench.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections (see --list)")
    bench.add_argument("--list", action="store_true", help="print the section names and exit")
    info = sub.add_parser("info", help="show the live backend, why, the clocks, the CPU and the versions")
    info.add_argument("--json", action="store_true", help="print the same as JSON")
    for name, (_, summary) in _DELEGATED.items():
        sub.add_parser(name, help=summary, add_help=False)  # its own parser reads the rest (see main)
    return parser, {"bench": bench, "info": info}


#: Subcommands whose module parses its own options: name -> (module with main(argv), summary).
_DELEGATED = {
    "exchange": ("lowlat.exchange.cli", "run the exchange simulator on loopback until Ctrl-C (see --help)"),
    "pipeline": ("lowlat.pipeline.cli", "run the tick-to-trade pipeline and print the latency budget (see --help)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _DELEGATED:
        return importlib.import_module(_DELEGATED[argv[0]][0]).main(argv[1:])
    parser, subparsers = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # An option the subcommand does not know: its own usage, not the top-level one.
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "bench":
        return _bench(args, subparsers["bench"])
    return _info(args)


if __name__ == "__main__":
    sys.exit(main())
