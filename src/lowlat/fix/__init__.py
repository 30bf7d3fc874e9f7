"""FIX 4.2 / 4.4 order and session messages: a per-session encoder and a validating stream reader.

Sans-I/O (bytes in, bytes out, the caller passes the time), compiled when ``lowlat.fix._c`` is
built, else its pure-Python twin; :data:`BACKEND` says which. :mod:`lowlat.fix.spec` holds the
tags, message types, enums and required tags both share.
"""

from .._backend import select as _select
from . import spec
from .spec import (
    FIX42,
    FIX44,
    CxlRejResponseTo,
    ExecType,
    FixError,
    MsgType,
    OrdStatus,
    OrdType,
    Reason,
    Side,
    Tag,
    TimeInForce,
    checksum,
    required_tags,
)

_impl, BACKEND = _select("lowlat.fix")
FixEncoder = _impl.FixEncoder
FixMessage = _impl.FixMessage
FixReader = _impl.FixReader

__all__ = [
    "BACKEND",
    *_impl.__all__,
    "FIX42",
    "FIX44",
    "CxlRejResponseTo",
    "ExecType",
    "FixError",
    "MsgType",
    "OrdStatus",
    "OrdType",
    "Reason",
    "Side",
    "Tag",
    "TimeInForce",
    "checksum",
    "required_tags",
    "spec",
]
del _select
