"""One suite, two backends: every test takes the implementation from the ``impl`` fixture."""

import os

import pytest

from lowlat._backend import BACKENDS, env_flag, load


def pytest_addoption(parser):
    parser.addoption("--no-c-extensions", action="store_true", help="skip the compiled backend")


def _require_extensions():
    return env_flag("LOWLAT_REQUIRE_EXTENSIONS")


def load_backend(name, concept="lowlat"):
    """Import ``concept``'s module for backend ``name``; a missing compiled half fails when required."""
    try:
        return load(concept, name)
    except ImportError:
        if name == "cython" and not _require_extensions():
            pytest.skip(f"the compiled half of {concept} is not built")
        raise


@pytest.fixture(
    scope="session",
    params=[pytest.param(name, marks=pytest.mark.c_extension) if name == "cython" else name for name in BACKENDS],
)
def backend_name(request):
    """Each backend's name in turn (``"cython"``, ``"python"``); take concept modules through it."""
    if request.param == "cython" and request.config.getoption("--no-c-extensions"):
        pytest.skip("--no-c-extensions")
    return request.param


@pytest.fixture(scope="session")
def impl(backend_name):
    """Every name ``lowlat`` exports, from one backend (containers, histogram, shared-memory rings)."""
    return load_backend(backend_name)


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
