"""Order sessions on real TCP: SoupBinTCP 3.0 (with OUCH 4.2 on top), FIX, and a connection pool.

The protocols are sans-I/O state machines (:mod:`lowlat.net.soupbintcp`): they take bytes and the
time and return events and bytes to send, so they are tested byte by byte. The socket layer
(:mod:`lowlat.net.connection`) is a thin wrapper: TCP_NODELAY, busy-poll or selector waits, whole
sends under a lock. :class:`ConnectionPool` keeps logged-in sessions ready for order threads.
"""

from .connection import ConnectionLost, HeartbeatTimeoutError, LoginRejectedError, SoupConnection, Transport
from .soupbintcp import ProtocolError, SequenceGapError, SoupClient, SoupServer

__all__ = ["ConnectionLost", "HeartbeatTimeoutError", "LoginRejectedError", "ProtocolError", "SequenceGapError",
           "SoupClient", "SoupServer", "SoupConnection", "Transport"]
