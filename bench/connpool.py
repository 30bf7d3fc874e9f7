"""Experiment 9, connection pooling (seed section 7): waiting for lowlat's network layer.

The seed's pool measured ``time.sleep`` standing in for a network. The honest experiment runs over
real loopback TCP with lowlat's sessions and ``ConnectionPool``, which land with the orders issue;
until then this section is skipped, not faked.
"""

from __future__ import annotations

from ._harness import Progress, Row

TITLE = "Connection pooling over loopback TCP"
SEED = "section 7, benchmark_connection_pooling"
SEED_SAYS = ("The seed's pool saved the 'setup latency' its SimulatedConnection slept for: a measurement of "
             "time.sleep, not of a network.")
SKIP = "waits for the orders issue (lowlat's sessions and ConnectionPool over real loopback TCP)"
STEPS = 0


def run(quick: bool, progress: Progress) -> list[Row]:
    """Return no rows: the section is skipped until its contender exists (see ``SKIP``)."""
    return []
