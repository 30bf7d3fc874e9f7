"""The exchange simulator's OUCH 4.2 book, compiled with a pure-Python twin (``lowlat.venue.BACKEND``).

``OuchExchange`` keeps a price-time book per stock and answers Enter / Replace / Cancel / Modify
Order byte for byte alike in both halves (:mod:`lowlat.venue.rules` has the rules);
``OuchExchange.serve`` is the simulator's fused read of one SoupBinTCP connection (receive, log,
answer, send in one call). :mod:`lowlat.exchange.ouch_book` re-exports the live backend's classes.
"""

from .._backend import select as _select
from . import rules

_impl, BACKEND = _select("lowlat.venue")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = ["BACKEND", "rules", *_impl.__all__]
del _select
