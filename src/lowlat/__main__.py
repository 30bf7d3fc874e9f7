"""Command line: ``lowlat bench [--quick] [--json PATH] [--only SECTION ...]``."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time

from ._benchkit import Progress, Row, format_table

# Each section module exposes STEPS (how many progress steps it reports) and
# run(quick: bool, progress: Progress) -> list[Row].
SECTIONS = {
    "core": "lowlat._bench_core",
    "hist": "lowlat._bench_hist",
    "shm": "lowlat._bench_shm",
}


def _bench(args: argparse.Namespace) -> int:
    import lowlat

    names = args.only or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"lowlat bench: unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    modules = [importlib.import_module(SECTIONS[n]) for n in names]
    progress = Progress(sum(m.STEPS for m in modules))
    started = time.perf_counter()
    rows: list[Row] = []
    for module in modules:
        rows.extend(module.run(args.quick, progress))
    progress.close()
    elapsed = time.perf_counter() - started
    header = (
        f"lowlat {lowlat.__version__} bench ({'quick' if args.quick else 'full'}), backend live: {lowlat.BACKEND}, "
        f"Python {platform.python_version()}, {platform.machine()}, {elapsed:.1f} s; "
        "medians of repeats, warm-up, gc off, empty-loop cost subtracted; ratio = value / first row of its group (for MB/s rows, higher is better)"
    )
    print(header)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"header": header, "quick": args.quick, "rows": [r.as_dict() for r in rows]}, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lowlat", description="lowlat command line")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run the side-by-side benchmark")
    bench.add_argument("--quick", action="store_true", help="fewer, shorter repeats (under 20 s)")
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bench.add_argument("--only", nargs="+", metavar="SECTION", help=f"run only these sections: {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    if args.command == "bench":
        return _bench(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
