"""The simulator's OUCH 4.2 application: validate orders, keep a price-time book per stock, fill.

``OuchExchange().on_message(username, payload)`` takes one Enter / Replace / Cancel / Modify Order and
returns the answers as ``(username, payload)`` pairs (sequenced messages for each user, the
counterparty of a fill included). The book is the :mod:`lowlat.venue` concept, compiled with a
pure-Python twin; this module re-exports the live backend's classes (``BACKEND`` says which). The
rules, simple and documented, are in :mod:`lowlat.venue.rules`.
"""

from __future__ import annotations

from ..venue import BACKEND, OuchExchange, RestingOrder
from ..venue.rules import DISPLAYS, MAX_PRICE, SELL_SIDES, SIDES

__all__ = ["OuchExchange", "RestingOrder", "BACKEND", "DISPLAYS", "MAX_PRICE", "SELL_SIDES", "SIDES"]
