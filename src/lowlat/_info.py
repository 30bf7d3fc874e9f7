"""What ``lowlat info`` reports: the live backend and why, the clocks, the machine, the versions.

Plain Python, read from the standard library, ``/proc`` and ``/sys``; every field degrades to
``None`` (or an empty list) where the platform does not say.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

_CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
_CACHES = "/sys/devices/system/cpu/cpu0/cache"


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def cpu_model() -> str:
    """Return the CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def caches() -> list[dict[str, Any]]:
    """Return cpu0's caches as ``{"level", "type", "bytes"}``, smallest level first (Linux only)."""
    found: list[dict[str, Any]] = []
    try:
        entries = sorted(e for e in os.listdir(_CACHES) if e.startswith("index"))
    except OSError:
        return found
    for entry in entries:
        size = _read(f"{_CACHES}/{entry}/size")
        level = _read(f"{_CACHES}/{entry}/level")
        kind = _read(f"{_CACHES}/{entry}/type")
        if not size or not level:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1].upper(), 1)
        number = size[:-1] if size[-1].isalpha() else size
        found.append({"level": int(level), "type": kind, "bytes": int(number) * scale})
    return found


def tsc() -> dict[str, Any]:
    """Return whether the compiled queues stamp with the TSC, and its rate (recalibrated now)."""
    from ._backend import load

    try:
        core = load("lowlat.containers", "cython")
    except ImportError:
        return {"used": False, "ghz": None, "why": "the compiled core is not built"}
    uses, ns_per_tick = core._calibrate_ticks()
    why = "" if uses else "LOWLAT_NO_TSC is set, the clock source is not 'tsc', or the counter is unusable"
    return {"used": bool(uses), "ghz": (1.0 / ns_per_tick) if uses else None, "why": why}


def versions() -> dict[str, str | None]:
    """Return the versions of Python, numpy, Cython (if importable) and lowlat."""
    import lowlat

    found: dict[str, str | None] = {"python": platform.python_version(), "lowlat": lowlat.__version__}
    for name in ("numpy", "Cython", "matplotlib"):
        try:
            found[name.lower()] = __import__(name).__version__
        except ImportError:
            found[name.lower()] = None
    return found


def machine_info() -> dict[str, Any]:
    """Return everything ``lowlat info`` prints, as one JSON-ready dict."""
    import lowlat
    from ._backend import WHY_NOT_COMPILED

    available: int | None  # os.cpu_count() may not know
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count()
    clock = time.get_clock_info("perf_counter")
    return {
        "backend": lowlat.BACKEND,
        "why_not_compiled": dict(WHY_NOT_COMPILED),
        "clock_source": _read(_CLOCKSOURCE),
        "perf_counter": {"implementation": clock.implementation, "resolution_ns": clock.resolution * 1e9},
        "tsc": tsc(),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_available": available,
        "caches": caches(),
        "system": f"{platform.system()} {platform.release()}",
        "versions": versions(),
    }


def _size(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def describe(info: dict[str, Any]) -> list[str]:
    """Return ``info`` as ``key: value`` lines for a terminal."""
    why = "; ".join(f"{k}: {v}" for k, v in info["why_not_compiled"].items()) or "-"
    tsc_line = f"used, {info['tsc']['ghz']:.3f} GHz" if info["tsc"]["used"] else f"not used ({info['tsc']['why']})"
    cache_line = ", ".join(f"L{c['level']} {c['type'].lower() if c['type'] else ''} {_size(c['bytes'])}".replace("  ", " ")
                           for c in info["caches"]) or "unknown"
    v = info["versions"]
    return [
        f"backend: {info['backend']}",
        f"why the compiled core did not load: {why}",
        f"clock source: {info['clock_source'] or 'unknown'} (perf_counter: {info['perf_counter']['implementation']})",
        f"TSC stamps: {tsc_line}",
        f"CPU: {info['cpu']} ({info['machine']}), {info['cores']} cores, {info['cores_available']} available",
        f"caches: {cache_line}",
        f"system: {info['system']}",
        "versions: " + ", ".join(f"{k} {val or 'not installed'}" for k, val in v.items()),
    ]
