"""Experiment 12, the latency budget (seed's introduction): waiting for the pipeline.

The seed's table budgets parsing < 1 us, signal < 5 us, risk < 2 us, encoding < 1 us and network
< 10 us for a 20 us tick-to-trade. Filling it with lowlat's measured stage figures needs the
tick-to-trade pipeline, which lands with the pipeline issue; until then this section is skipped.
"""

from __future__ import annotations

from ._harness import Progress, Row

TITLE = "The latency budget, measured"
SEED = "introduction, Latency Budget Example (Typical HFT System)"
SEED_SAYS = "The seed gives a tick-to-trade budget of < 20 us split over five stages, with no measurement."
SKIP = "waits for the pipeline issue (lowlat's measured stage figures, tick to trade)"
STEPS = 0


def run(quick: bool, progress: Progress) -> list[Row]:
    """Return no rows: the section is skipped until its stages exist (see ``SKIP``)."""
    return []
