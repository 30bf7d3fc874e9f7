"""An exchange simulator to talk to on loopback (``lowlat exchange --port P``, or import it in tests).

:class:`ExchangeSimulator` speaks SoupBinTCP 3.0 with an application behind it (OUCH 4.2 against a
price-time book, or an echo), and misbehaves on request; see :mod:`lowlat.exchange.simulator`.
"""

from .simulator import EchoApplication, ExchangeSimulator, Received
from .cli import main

__all__ = ["ExchangeSimulator", "EchoApplication", "Received", "main"]
