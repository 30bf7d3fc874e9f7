"""Pre-trade risk checks (SEC 15c3-5, MiFID II RTS 6), compiled with a pure-Python twin.

``RiskEngine(...).check(instrument_id, side, quantity, price, now_ns)`` returns a reason code, 0
when the order passes; :mod:`lowlat.risk.config` names every code (``Reason``, ``reason_name``,
``reason_message``) and checks every limit. ``lowlat.risk.BACKEND`` says which half is live.
"""

from .._backend import select as _select
from . import config
from .config import BUY, REASONS, SELL, Reason, reason_message, reason_name

_impl, BACKEND = _select("lowlat.risk")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = ["BACKEND", "BUY", "REASONS", "Reason", "SELL", "config", "reason_message", "reason_name", *_impl.__all__]
del _select
