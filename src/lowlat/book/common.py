"""What both order-book backends share: the depth dtype, side codes and the batch merge order."""

from __future__ import annotations

import numpy as np

__all__ = ["BOOK_TYPES", "DEPTH_DTYPE", "BUY", "SELL", "merged_book_messages", "side_code", "unsigned"]

#: The ITCH message types that change an order book, in the order the batch loop reads them.
BOOK_TYPES = ("A", "F", "E", "C", "X", "D", "U")

#: One row of :meth:`Book.depth`: price (wire integer, 4 implied decimals), shares, orders.
# Aligned (shares at offset 8): the compiled book stores each field through a typed pointer, and an
# 8-byte store to an address that is not a multiple of 8 is undefined behaviour in C.
DEPTH_DTYPE = np.dtype([("price", "u4"), ("shares", "u8"), ("orders", "u4")], align=True)

BUY = 66  # ord("B")
SELL = 83  # ord("S")


def side_code(side) -> int:
    """Return 66 (buy) or 83 (sell) for ``side`` given as ``"B"``/``"S"``, bytes or the code."""
    if isinstance(side, str):
        code = ord(side) if len(side) == 1 else -1
    elif isinstance(side, (bytes, bytearray)):
        code = side[0] if len(side) == 1 else -1
    elif isinstance(side, int):
        code = side
    else:
        raise TypeError(f"side must be 'B' or 'S', got {type(side).__name__}")
    if code != BUY and code != SELL:
        raise ValueError(f"side must be 'B' or 'S', got {side!r}")
    return code


def unsigned(value, bits: int) -> int:
    """Check ``value`` is an int in [0, 2**bits): ``TypeError`` / ``OverflowError`` as C would raise."""
    if not isinstance(value, int):
        raise TypeError(f"an integer is required, got {type(value).__name__}")
    if value < 0 or value >> bits:
        raise OverflowError(f"{value} does not fit in an unsigned {bits}-bit integer")
    return value


def merged_book_messages(batch) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(type index into BOOK_TYPES, row)`` of every book message of ``batch`` by position."""
    kinds, rows, positions = [], [], []
    for k, t in enumerate(BOOK_TYPES):
        arr = batch.get(t)
        if arr is None or not len(arr):
            continue
        kinds.append(np.full(len(arr), k, dtype=np.int8))
        rows.append(np.arange(len(arr), dtype=np.int64))
        positions.append(arr["position"])
    if not kinds:
        return np.empty(0, np.int8), np.empty(0, np.int64)
    order = np.argsort(np.concatenate(positions), kind="stable")
    return np.concatenate(kinds)[order], np.concatenate(rows)[order]
