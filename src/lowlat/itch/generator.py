"""A deterministic synthetic ITCH 5.0 feed: what tests and benchmarks decode and replay.

NASDAQ's sample files cannot be downloaded everywhere, so the package ships a generator. The feed
looks like a trading day in miniature: system events opening and closing the day, a stock
directory and trading action per instrument, then order flow concentrated on a few busy
instruments (Zipf-like) -- adds with and without MPID, partial cancels, deletes, executions with
and without price, replaces -- with consistent order references (an order is only modified while
it lives, never executed or cancelled beyond its shares), plus a sprinkle of every other message
type. Same ``seed``, same bytes.
"""

from __future__ import annotations

import math
from bisect import bisect_left
import random
import struct

from . import spec
from .framing import frame

__all__ = ["generate", "generate_messages", "stock_name"]


def _packer(message_type: str) -> struct.Struct:
    fmt = ">cHHHI"
    for f in spec.by_type(message_type).fields:
        fmt += f"{f.width}s" if f.kind == spec.ALPHA else {2: "H", 4: "I", 8: "Q"}[f.width]
    packer = struct.Struct(fmt)
    assert packer.size == spec.by_type(message_type).size
    return packer


_PACK = {t: _packer(t).pack for t in spec.TYPES}
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CODES = {t: t.encode("ascii") for t in spec.TYPES}


def stock_name(index: int) -> bytes:
    """Return the 8-byte, space-padded ticker of synthetic instrument ``index`` (0-based)."""
    letters = ""
    i = index
    for _ in range(4):
        letters += _LETTERS[i % 26]
        i //= 26
    return letters.encode("ascii").ljust(8, b" ")


def generate_messages(count: int = 1_000_000, *, seed: int = 0, instruments: int = 100) -> list[bytes]:
    """Return ``count`` raw ITCH 5.0 messages (no framing) of a synthetic day; see the module doc.

    Stock locates are 1..``instruments``; order references are unique and increasing; timestamps
    never decrease. Every message type appears when ``count`` is a few thousand or more.
    """
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    if not isinstance(instruments, int) or instruments < 1:
        raise ValueError(f"instruments must be a positive int, got {instruments!r}")
    rng = random.Random(seed)
    rand = rng.random

    def randrange(start: int, stop: int) -> int:
        # random.randrange costs 4x this; the feed only needs a fair, seeded draw.
        return start + int(rand() * (stop - start))
    out: list[bytes] = []
    append = out.append
    clock = [34_200_000_000_000 - 19_800_000_000_000]  # 04:00 in ns since midnight

    def header(message_type: str, locate: int):
        ts = clock[0] = clock[0] + int(rand() * 2_000)
        return _CODES[message_type], locate, int(rand() * 8), ts >> 32, ts & 0xFFFFFFFF

    names = [stock_name(i) for i in range(instruments)]
    # Busy instruments first: weight 1/(rank+1).
    weights = [1.0 / (i + 1) for i in range(instruments)]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    mids = [randrange(10, 500) * 10_000 for _ in range(instruments)]
    live_refs: list[list[int]] = [[] for _ in range(instruments)]
    orders: dict[int, list] = {}  # ref -> [instrument, side, price, shares, index in live_refs]
    next_ref = [1000]
    match = [1]

    def emit(message: bytes) -> bool:
        append(message)
        return len(out) >= count

    def pick_instrument() -> int:
        return min(bisect_left(cumulative, rand() * total), instruments - 1)

    def remove(ref: int) -> None:
        inst, _side, _price, _shares, slot = orders.pop(ref)
        refs = live_refs[inst]
        last = refs.pop()
        if last != ref:
            refs[slot] = last
            orders[last][4] = slot

    def add(inst: int, side: bytes, price: int, shares: int) -> int:
        ref = next_ref[0]
        next_ref[0] += randrange(1, 4)
        orders[ref] = [inst, side, price, shares, len(live_refs[inst])]
        live_refs[inst].append(ref)
        return ref

    def order_price(inst: int, side: bytes) -> int:
        ticks = int(-2.857 * math.log(1.0 - rand()))  # exponential, mean ~2.4 ticks
        mid = mids[inst]
        return max(100, mid - 100 * (ticks + 1)) if side == b"B" else mid + 100 * (ticks + 1)

    def lot() -> int:
        return 100 * randrange(1, 10) if rand() < 0.9 else randrange(1, 1000)

    # Start of day.
    if emit(_PACK["S"](*header("S", 0), b"O")):
        return out
    if emit(_PACK["V"](*header("V", 0), 4_000_000_000_00, 3_500_000_000_00, 3_000_000_000_00)):
        return out
    for i in range(instruments):
        loc = i + 1
        for message in (
            _PACK["R"](*header("R", loc), names[i], b"Q", b"N", 100, b"N", b"C", b"Z ", b"P", b"N", b"N", b"2", b"N", 0, b"N"),
            _PACK["H"](*header("H", loc), names[i], b"T", b" ", b"    "),
            _PACK["Y"](*header("Y", loc), names[i], b"0"),
        ):
            if emit(message):
                return out
    if emit(_PACK["S"](*header("S", 0), b"S")) or emit(_PACK["S"](*header("S", 0), b"Q")):
        return out

    def rare(inst: int) -> bytes:
        loc = inst + 1
        kind = randrange(0, 13)
        mid = mids[inst]
        if kind == 0:
            return _PACK["L"](*header("L", loc), b"MMID", names[inst], b"Y", b"N", b"A")
        if kind == 1:
            return _PACK["W"](*header("W", 0), b"1")
        if kind == 2:
            return _PACK["K"](*header("K", loc), names[inst], 34_200 + randrange(0, 3600), b"A", mid)
        if kind == 3:
            return _PACK["J"](*header("J", loc), names[inst], mid, mid + 5_000, mid - 5_000, randrange(0, 4))
        if kind == 4:
            return _PACK["h"](*header("h", loc), names[inst], b"Q", b"H" if rand() < 0.5 else b"T")
        if kind == 5:
            m = match[0]
            match[0] += 1
            return _PACK["Q"](*header("Q", loc), randrange(0, 1_000_000), names[inst], mid, m, b"O")
        if kind == 6:
            return _PACK["B"](*header("B", loc), randrange(1, match[0]))
        if kind in (7, 8):
            return _PACK["I"](
                *header("I", loc), randrange(0, 100_000), randrange(0, 10_000), b"B", names[inst],
                mid + 100, mid - 100, mid, b"O", b"L",
            )
        if kind == 9:
            return _PACK["N"](*header("N", loc), names[inst], b"B")
        if kind == 10:
            return _PACK["O"](*header("O", loc), names[inst], b"Y", mid - 10_000, mid + 10_000, mid, randrange(0, 1 << 40), mid - 5_000, mid + 5_000)
        if kind == 11:
            return _PACK["H"](*header("H", loc), names[inst], b"T", b" ", b"    ")
        return _PACK["Y"](*header("Y", loc), names[inst], b"0")

    while True:
        inst = pick_instrument()
        loc = inst + 1
        refs = live_refs[inst]
        x = rand()
        if rand() < 0.01:
            mids[inst] = max(10_000, mids[inst] + 100 * randrange(-3, 4))
        if x < 0.004:
            message = rare(inst)
        elif x < 0.014:
            side = b"B" if rand() < 0.5 else b"S"
            m = match[0]
            match[0] += 1
            message = _PACK["P"](*header("P", loc), 0, side, lot(), names[inst], mids[inst], m)
        elif x < 0.45 or len(refs) < 4:
            side = b"B" if rand() < 0.5 else b"S"
            price = order_price(inst, side)
            shares = lot()
            ref = add(inst, side, price, shares)
            if rand() < 0.08:
                message = _PACK["F"](*header("F", loc), ref, side, shares, names[inst], price, b"MPID")
            else:
                message = _PACK["A"](*header("A", loc), ref, side, shares, names[inst], price)
        else:
            ref = refs[randrange(0, len(refs))]
            order = orders[ref]
            shares = order[3]
            if x < 0.80:
                remove(ref)
                message = _PACK["D"](*header("D", loc), ref)
            elif x < 0.87:
                if shares > 1:
                    cancelled = randrange(1, shares)
                    order[3] -= cancelled
                    message = _PACK["X"](*header("X", loc), ref, cancelled)
                else:
                    remove(ref)
                    message = _PACK["D"](*header("D", loc), ref)
            elif x < 0.95:
                remove(ref)
                side = order[1]
                price = order_price(inst, side)
                new_shares = lot()
                new_ref = add(inst, side, price, new_shares)
                message = _PACK["U"](*header("U", loc), ref, new_ref, new_shares, price)
            else:
                executed = shares if rand() < 0.5 else randrange(1, shares + 1)
                order[3] -= executed
                m = match[0]
                match[0] += 1
                if rand() < 0.2:
                    message = _PACK["C"](*header("C", loc), ref, executed, m, b"Y", order[2] + 100 * randrange(-1, 2))
                else:
                    message = _PACK["E"](*header("E", loc), ref, executed, m)
                if order[3] == 0:
                    remove(ref)
        append(message)
        if len(out) >= count:
            return out


def generate(count: int = 1_000_000, *, seed: int = 0, instruments: int = 100) -> bytes:
    """Return :func:`generate_messages` in the file form (2-byte big-endian length, message)."""
    return frame(generate_messages(count, seed=seed, instruments=instruments))
