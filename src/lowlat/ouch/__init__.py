"""NASDAQ OUCH 4.2 order entry codec, compiled with a pure-Python twin (``lowlat.ouch.BACKEND``).

Encode client messages into a caller's preallocated buffer (``encode_enter_order``...), decode
into reusable records (``ExchangeMessage``, ``ClientMessage``), or a whole length-prefixed buffer
into numpy arrays (``decode_batch``). Layouts and framing live in :mod:`lowlat.ouch.spec`.
"""

from .._backend import select as _select
from . import spec
from .spec import MESSAGES, PRICE_SCALE, frame

_impl, BACKEND = _select("lowlat.ouch")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = ["BACKEND", "MESSAGES", "PRICE_SCALE", "frame", "spec", *_impl.__all__]
del _select
