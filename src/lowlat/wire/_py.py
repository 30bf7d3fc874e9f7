"""The pure-Python half of :mod:`lowlat.wire`: the order path through the layers
(:mod:`lowlat.wire.layered`), unchanged."""

from __future__ import annotations

from .layered import Checkout, enter_order, send_order, wait_for

__all__ = ["Checkout", "enter_order", "send_order", "wait_for"]
