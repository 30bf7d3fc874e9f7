"""lowlat's side-by-side benchmarks: one experiment per file, shipped as ``lowlat.bench``.

Each section module (``queues``, ``timers``...) has ``STEPS`` (its progress steps), ``TITLE``,
``SEED`` (the seed lesson's cell it reproduces, or "" when it reproduces none), ``SEED_SAYS`` (what
the seed concluded) and ``run(quick, progress) -> list[Row]``; optionally ``conclude(rows) -> str``
(what this run's figures show) and ``SKIP`` (why the section cannot run yet: it is then reported as
skipped, never faked). The harness is :mod:`lowlat.bench._harness`; ``lowlat bench`` runs them.

To add a section, write the module and add one line to :data:`SECTIONS`.
"""

#: Section name -> module, in the order the seed's lesson takes them. The one place to register.
SECTIONS: dict[str, str] = {
    "timers": "lowlat.bench.timers",  # seed 2, In [2]: timing methods
    "tracker": "lowlat.bench.tracker",  # seed 2, In [3]: LatencyTracker
    "memory": "lowlat.bench.memory",  # seed 3, In [5]: memory access patterns
    "layout": "lowlat.bench.layout",  # seed 3, In [6]: struct of arrays vs array of structs
    "queues": "lowlat.bench.queues",  # seed 4, In [7]: ring buffer vs queues
    "pools": "lowlat.bench.pools",  # seed 4, In [8]: object pool vs allocation
    "async": "lowlat.bench.async_sync",  # seed 5, In [9]-[10]: async vs sync
    "msgqueues": "lowlat.bench.msgqueues",  # seed 6: message queues
    "connpool": "lowlat.bench.connpool",  # seed 7: connection pooling over loopback TCP
    "batching": "lowlat.bench.batching",  # seed 8: batch vs single processing
    "adaptive": "lowlat.bench.adaptive",  # seed 8: adaptive batching under load
    "budget": "lowlat.bench.budget",  # seed intro: the latency budget (waits for the pipeline issue)
    "itch": "lowlat.bench.itch",  # seed intro's budget row: market data parsing (ITCH 5.0 and the book)
    "orders": "lowlat.bench.orders",  # seed intro's budget rows: risk check, OUCH encode/decode
    "fix": "lowlat.bench.fix",  # FIX 4.4 encode/parse against simplefix (and quickfix)
    "histogram": "lowlat.bench.histogram",  # LatencyHistogram against hdrhistogram
    "shm": "lowlat.bench.shm",  # two processes over shared memory
}

#: Names earlier releases used for groups of sections (``lowlat bench --only core`` still works).
ALIASES: dict[str, tuple[str, ...]] = {"core": ("queues", "pools"), "hist": ("histogram", "tracker")}
