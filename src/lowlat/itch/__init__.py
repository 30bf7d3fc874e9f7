"""NASDAQ TotalView-ITCH 5.0 decoding: batch (numpy), streaming and one message at a time.

The decoders come from the compiled ``lowlat.itch._c`` when it is importable, else from its
pure-Python twin ``lowlat.itch._py`` (same names, signatures, results and errors);
``lowlat.itch.BACKEND`` says which. Layouts live in :mod:`lowlat.itch.spec`, framings in
:mod:`lowlat.itch.framing`, the synthetic feed in :mod:`lowlat.itch.generator`.
"""

from .._backend import select as _select
from . import spec
from .framing import Batch, MoldHeader, encode_mold, frame, mold_header
from .generator import generate, generate_messages
from .spec import dtype_of, price_to_float

_impl, BACKEND = _select("lowlat.itch")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = [
    "BACKEND",
    "Batch",
    "MoldHeader",
    "dtype_of",
    "encode_mold",
    "frame",
    "generate",
    "generate_messages",
    "mold_header",
    "price_to_float",
    "spec",
    *_impl.__all__,
]
del _select
