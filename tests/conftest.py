"""One suite, two backends: every test takes the implementation from the ``impl`` fixture."""

import importlib
import os

import pytest

BACKENDS = ["cython", "python"]
_MODULES = {"cython": "lowlat._core", "python": "lowlat._pure"}


def pytest_addoption(parser):
    parser.addoption("--no-c-extensions", action="store_true", help="skip the compiled backend")


def _require_extensions():
    return os.environ.get("LOWLAT_REQUIRE_EXTENSIONS", "") not in ("", "0")


def load_backend(name):
    """Import one backend module; a missing compiled core fails when it is required."""
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError:
        if name == "cython" and not _require_extensions():
            pytest.skip("lowlat._core is not built")
        raise


@pytest.fixture(
    scope="session",
    params=[pytest.param("cython", marks=pytest.mark.c_extension), "python"],
)
def impl(request):
    """The backend module under test: ``lowlat._core`` or ``lowlat._pure``."""
    if request.param == "cython" and request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions")
    return load_backend(request.param)


@pytest.fixture(scope="session")
def backends():
    """Both backend modules, for differential tests."""
    return [load_backend(name) for name in BACKENDS]


def run_producer_consumer(producer, consumer, timeout=150.0):
    """Run ``producer`` and ``consumer`` in two real threads, switching often; fail on a hang."""
    import sys
    import threading

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # interleave the two threads finely, not in 5 ms slices
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
    finally:
        sys.setswitchinterval(old)
    assert not any(t.is_alive() for t in threads), "producer/consumer threads hung"


def counted_class():
    """Return a fresh class whose ``alive`` attribute counts its live instances (to test freeing)."""

    class Probe:
        alive = 0

        def __init__(self):
            Probe.alive += 1
            self.pool = None  # room for a back-reference

        def __del__(self):
            Probe.alive -= 1

    return Probe
