"""Tick to trade: the seed's latency budget, measured end to end.

A small assembly of lowlat's parts -- ITCH decoding and the L3 book, a strategy callable, pre-trade
risk, OUCH encoding, a SoupBinTCP session to the exchange simulator -- that stamps every stage
into its own ``LatencyHistogram`` and prints the seed's budget table against them:

* :class:`Pipeline` (:mod:`lowlat.pipeline.core`): the one-process layout;
* :func:`run_two_process` (:mod:`lowlat.pipeline.twoproc`): a feed-handler process passing book
  updates through a ``ShmRecordRing`` to the strategy process that holds the order session;
* feeds (:mod:`lowlat.pipeline.feeds`): synthetic, a user's ITCH file, MoldUDP64 over UDP;
* backends (:mod:`lowlat.pipeline.backends`): ``cython``, ``python`` and the seed's plain-Python
  baseline ``seed`` (:mod:`lowlat.pipeline.seed`);
* the strategy interface and the shipped example (:mod:`lowlat.pipeline.strategy`);
* the budget, the table, JSON and HdrHistogram logs (:mod:`lowlat.pipeline.budget`);
* ``main(argv)`` (:mod:`lowlat.pipeline.cli`), the ``lowlat pipeline`` command.

Plain Python by design: every stage's hot part is compiled in its own module.
"""

from .backends import DEFAULT_RISK_LIMITS, PIPELINE_BACKENDS, path_backend
from .budget import STAGES, Figures, budget_table, read_hlog, write_hlog
from .core import Pipeline, StrategyError
from .exchange import ExchangeProcess
from .feeds import UdpFeed, file_feed, start_replayer, synthetic_feed
from .strategy import ImbalanceStrategy, Order
from .twoproc import TopOfBook, run_two_process

__all__ = ["Pipeline", "StrategyError", "Order", "ImbalanceStrategy", "STAGES", "Figures", "budget_table",
           "write_hlog", "read_hlog", "PIPELINE_BACKENDS", "DEFAULT_RISK_LIMITS", "path_backend", "ExchangeProcess",
           "synthetic_feed", "file_feed", "UdpFeed", "start_replayer", "run_two_process", "TopOfBook"]
