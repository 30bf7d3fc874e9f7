"""The hot path of an OUCH order session on its socket, compiled with a pure-Python twin
(``lowlat.wire.BACKEND``).

:class:`lowlat.net.OuchSession` sends every order and waits for every answer through these two
functions. ``send_order(session, kind, token, payload)`` records the order as pending and writes it
as one SoupBinTCP Unsequenced Data packet; ``wait_for(session, token, types, timeout)`` reads until
the answer for ``token`` arrives. The pure half is the layered path of :mod:`lowlat.net`
(:mod:`lowlat.wire.layered`). The compiled half does the same in one call: it frames the packet
and calls ``send`` on the socket itself, and reads with its own ``recv`` (the GIL released while it
waits, in the connection's wait mode) straight into a buffer, splitting the SoupBinTCP packets
there. Whenever a read is not the simple case -- anything but whole Sequenced Data and Server
Heartbeat packets, a heartbeat due, a timeout, a closed or failed connection -- it hands what it
read to :func:`lowlat.wire.layered.resume`, so every rare path is the layered one, byte for byte.
"""

from .._backend import select as _select
from . import layered

_impl, BACKEND = _select("lowlat.wire")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = ["BACKEND", "layered", *_impl.__all__]
del _select
