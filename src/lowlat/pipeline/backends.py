"""What each backend supplies to the path: clock, decoder record, book, risk, encoder, recorders.

``cython`` and ``python`` take every stage from ``lowlat._backend.load(concept, backend)`` (the
compiled or the pure half of ``lowlat.itch``, ``lowlat.book``, ``lowlat.risk``, ``lowlat.ouch``
and the histogram); ``seed`` takes the plain-Python classes of :mod:`lowlat.pipeline.seed`. The
path itself (:mod:`lowlat.pipeline.core`) is the same code for all three.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from .._backend import BACKENDS, load

__all__ = ["PIPELINE_BACKENDS", "PathBackend", "path_backend", "DEFAULT_RISK_LIMITS"]

#: The backends a pipeline runs on: the project's, then the seed's plain-Python baseline.
PIPELINE_BACKENDS: tuple[str, ...] = (*BACKENDS, "seed")

#: Risk limits of a run unless the caller gives its own: generous enough that the example
#: strategy's orders pass, tight enough that a runaway strategy is stopped (quantity, notional,
#: a 10% collar around the first price seen per instrument, position).
DEFAULT_RISK_LIMITS = {"max_order_quantity": 10_000, "max_order_notional": 10_000 * 100_000 * 10_000,
                       "price_collar_bps": 1_000, "max_position": 10_000_000}


@dataclass
class PathBackend:
    """The stage implementations of one backend (see the module docstring)."""

    name: str
    now_ns: Callable[[], int]
    make_record: Callable[[], Any]
    make_book: Callable[[], Any]
    make_risk: Callable[[dict], Any]
    make_encoder: Callable[[], Callable[[str, str, int, str, int], Any]]
    make_recorder: Callable[[str], Any]
    histogram_class: Any
    ouch: Any  # the ouch module that decodes the exchange's answers
    add_instrument: Callable[[Any, int, int], None]

    def to_histogram(self, recorder: Any) -> Any:
        """A ``LatencyHistogram`` of what ``recorder`` holds (the seed's tracker is converted)."""
        if isinstance(recorder, self.histogram_class):
            return recorder
        histogram = self.histogram_class()
        for value in recorder.latencies_ns:
            histogram.record(max(int(value), 1))
        return histogram


def _risk_engine(risk_module: Any) -> Callable[[dict], Any]:
    def make(limits: dict) -> Any:
        return risk_module.RiskEngine(**limits)

    return make


def _add_risk_instrument(risk: Any, instrument: int, reference_price: int) -> None:
    risk.add_instrument(instrument, reference_price=reference_price)


def _add_seed_instrument(risk: Any, instrument: int, reference_price: int) -> None:
    risk.reference.setdefault(instrument, reference_price)


def path_backend(name: str) -> PathBackend:
    """Return the stages of backend ``name`` (one of :data:`PIPELINE_BACKENDS`); ``ImportError``
    when the compiled half is not built, ``ValueError`` for an unknown name."""
    if name not in PIPELINE_BACKENDS:
        raise ValueError(f"backend must be one of {PIPELINE_BACKENDS}, got {name!r}")
    if name == "seed":
        from . import seed

        core = load("lowlat", "python")
        return PathBackend(
            name=name, now_ns=time.perf_counter_ns, make_record=seed.SeedMessage, make_book=seed.SeedBook,
            make_risk=lambda limits: seed.SeedRiskCheck(**{k: v for k, v in limits.items()
                                                           if k in ("max_order_quantity", "max_order_notional",
                                                                    "price_collar_bps", "max_position")}),
            make_encoder=lambda: seed.seed_encode_enter_order, make_recorder=seed.SeedLatencyTracker,
            histogram_class=core.LatencyHistogram, ouch=load("lowlat.ouch", "python"),
            add_instrument=_add_seed_instrument)
    core = load("lowlat", name)
    itch = load("lowlat.itch", name)
    book = load("lowlat.book", name)
    ouch = load("lowlat.ouch", name)
    return PathBackend(
        name=name, now_ns=core.now_ns, make_record=itch.Message, make_book=book.Book,
        make_risk=_risk_engine(load("lowlat.risk", name)), make_encoder=ouch.EnterOrderPacket,
        make_recorder=lambda _name: core.LatencyHistogram(), histogram_class=core.LatencyHistogram, ouch=ouch,
        add_instrument=_add_risk_instrument)
