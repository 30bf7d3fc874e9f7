"""Order sessions on real TCP: SoupBinTCP 3.0 (with OUCH 4.2 on top), FIX 4.2/4.4, and a connection pool.

The protocols are sans-I/O state machines (:mod:`lowlat.net.soupbintcp`,
:mod:`lowlat.net.fix_session`): they take bytes and the time and return events and bytes to send,
so they are tested byte by byte. The socket layer (:mod:`lowlat.net.connection`) is a thin
wrapper: TCP_NODELAY, busy-poll or selector waits, whole sends under a lock. The order sessions
(:class:`OuchSession`, :class:`FixOrderSession`) track every order until the exchange answers it,
and :class:`ConnectionPool` keeps logged-in sessions ready for order threads.
"""

from .connection import ConnectionLost, HeartbeatTimeoutError, LoginRejectedError, SoupConnection, Transport
from .fix_orders import FixOrderSession
from .fix_session import FixSession
from .ouch import OuchSession, PendingOrder
from .pool import ConnectionPool, LostOrders, PoolExhausted, PoolHealth
from .soupbintcp import ProtocolError, SequenceGapError, SoupClient, SoupServer

__all__ = ["ConnectionLost", "HeartbeatTimeoutError", "LoginRejectedError", "ProtocolError", "SequenceGapError",
           "SoupClient", "SoupServer", "SoupConnection", "Transport", "FixSession", "FixOrderSession",
           "OuchSession", "PendingOrder", "ConnectionPool", "PoolHealth", "LostOrders", "PoolExhausted"]
