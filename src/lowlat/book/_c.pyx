# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled L3 order book: the twin of :mod:`lowlat.book._py` (same names, signatures, errors).

Layout, all in C memory that grows without moving what it holds:

* orders: a pool of ``Order`` records (free list) in fixed blocks that never move, found by
  reference through an open-addressing hash map (linear probing, backward-shift deletion, load
  <= 1/2) that grows incrementally: entries of the old table move a few per insert;
* levels: a pool of ``Level`` records (fixed blocks too), each the head and tail of a doubly
  linked list of its orders in time priority, with the level's shares and order count;
* per (instrument, side): a sorted array of level indices with the best level last (bids
  ascending, asks descending), so the top of book is one index away and a level is found by
  binary search; levels are inserted and removed near the top, where the shift is short.

Every index comes from this module's own bookkeeping, never from input: ``boundscheck`` is off
module-wide. Inputs (references, locates, prices, shares) are plain integers, checked for range.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport INT64_MAX, INT64_MIN, int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove, memset

cimport numpy as cnp
import numpy as np

from ..itch import spec as _spec
from .common import BOOK_TYPES, BUY as _BUY, DEPTH_DTYPE, SELL as _SELL, side_code

cnp.import_array()

__all__ = ["Book"]

DEF BUY = 66
DEF SELL = 83
DEF EMPTY = -1
DEF TOMBSTONE = -2
DEF BLOCK_SHIFT = 14
DEF BLOCK_SIZE = 16384
DEF BLOCK_MASK = 16383
DEF MAX_BLOCKS = 131072     # 2**31 entries
DEF MIGRATE_STEPS = 8
DEF LOOKAHEAD = 16
DEF LOOKAHEAD_BATCH = 48

cdef extern from *:
    void __builtin_prefetch(const void* p) noexcept nogil


cdef struct Order:
    uint64_t ref
    uint32_t price
    uint32_t shares
    int32_t level
    int32_t prev
    int32_t next
    uint16_t locate
    uint8_t side


cdef struct Level:
    uint64_t shares
    uint32_t price
    uint32_t count
    int32_t head
    int32_t tail


cdef struct LevelRef:
    uint32_t price      # kept beside the index so a binary search reads one contiguous array
    int32_t level


cdef struct SideBook:
    LevelRef* levels    # best last
    int32_t count
    int32_t capacity


cdef inline uint16_t _be16(const unsigned char* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline uint32_t _be32(const unsigned char* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline uint64_t _be64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>_be32(p) << 32) | _be32(p + 4)


cdef inline size_t _hash(uint64_t key) noexcept nogil:
    # ITCH order references rise through the day, so the low bits are kept in place: consecutive
    # live orders land in neighbouring slots (cache lines), and the high bits are folded in so
    # references far apart still spread. Adversarial references cost probe length, never safety.
    return <size_t>(key ^ (key >> 23) ^ (key >> 47))


cdef size_t NO_SLOT = <size_t>-1   # a slot index that no table has: "not known"


cdef struct Slot:
    uint64_t key
    int64_t index      # EMPTY when free; 8 bytes so a slot is 16 and four share a cache line


cdef Slot* _new_table(size_t size) noexcept nogil:
    cdef Slot* slots = <Slot*>malloc(size * sizeof(Slot))
    cdef size_t i
    if slots != NULL:
        for i in range(size):
            slots[i].index = EMPTY
    return slots


cdef int _SIZES[256]
for _m in _spec.MESSAGES:
    _SIZES[ord(_m.type)] = _m.size


cdef object _I64 = np.dtype(np.int64)
cdef object _U64 = np.dtype(np.uint64)
cdef object _U32 = np.dtype(np.uint32)
cdef object _U16 = np.dtype(np.uint16)
cdef object _U8 = np.dtype(np.uint8)


cdef char* _column(list keep, object arr, str name, object dtype, Py_ssize_t* stride) except NULL:
    # Base pointer and stride of one field of a non-empty batch array: the field itself when it
    # is a 1-D aligned column of the native dtype (or of one-byte strings for the side), else a
    # contiguous converted copy. ``keep`` holds what the pointer points into.
    cdef cnp.ndarray c
    col = arr[name]
    if not (isinstance(col, np.ndarray) and col.ndim == 1 and col.flags.aligned
            and (col.dtype == dtype or (col.dtype.kind == "S" and col.dtype.itemsize == 1 and dtype.itemsize == 1))):
        col = np.ascontiguousarray(col).view(dtype) if col.dtype.kind == "S" else np.ascontiguousarray(col, dtype=dtype)
    c = col
    keep.append(c)
    stride[0] = cnp.PyArray_STRIDES(c)[0] if cnp.PyArray_NDIM(c) == 1 else dtype.itemsize
    return cnp.PyArray_BYTES(c)


cdef inline int64_t _i64(const char* base, Py_ssize_t stride, Py_ssize_t r) noexcept nogil:
    return (<const int64_t*>(base + r * stride))[0]


cdef inline uint64_t _u64(const char* base, Py_ssize_t stride, Py_ssize_t r) noexcept nogil:
    return (<const uint64_t*>(base + r * stride))[0]


cdef inline uint32_t _u32(const char* base, Py_ssize_t stride, Py_ssize_t r) noexcept nogil:
    return (<const uint32_t*>(base + r * stride))[0]


cdef inline uint16_t _u16(const char* base, Py_ssize_t stride, Py_ssize_t r) noexcept nogil:
    return (<const uint16_t*>(base + r * stride))[0]


cdef inline uint8_t _u8(const char* base, Py_ssize_t stride, Py_ssize_t r) noexcept nogil:
    return (<const uint8_t*>(base + r * stride))[0]


@cython.final
cdef class Book:
    """Full-depth (L3) order book for every instrument of an ITCH feed.

    Orders are keyed by reference number and carry instrument (stock locate), side, price (the
    wire's integer, 4 implied decimals) and shares; levels aggregate them per side in time
    priority. ``add``, ``execute``, ``cancel``, ``delete`` and ``replace`` follow ITCH 5.0 (a
    replace keeps instrument and side, takes the new reference and loses priority). Gaps of real
    feeds never raise: an unknown reference is counted in ``unknown_references``, an execution
    or cancel beyond the order's shares in ``over_executions`` (the order is removed), a reused
    reference in ``duplicate_references``, an add with zero shares or a bad side in
    ``invalid_messages``; the book stays consistent. Nothing is preset: instruments, orders and
    prices grow as needed. Best bid/ask cost one lookup whatever the depth. One thread at a time.
    """

    # Orders and levels live in fixed-size blocks that never move: growing adds a block (no copy,
    # no pause proportional to the book) and an index maps to block[index >> BLOCK_SHIFT].
    cdef Order** _order_blocks
    cdef int32_t _order_block_count
    cdef int32_t _order_free
    cdef int64_t _live

    cdef Level** _level_blocks
    cdef int32_t _level_block_count
    cdef int32_t _level_free

    # The reference -> order map. Growing allocates a table twice the size and then moves the old
    # table's entries a few per insert (_migrate), so no single call rehashes the whole map.
    cdef Slot* _slots
    cdef size_t _mask
    cdef Slot* _old_slots       # NULL unless a migration is under way
    cdef size_t _old_mask
    cdef size_t _cursor         # next old slot to move

    cdef SideBook* _sides       # 2 per locate: [2 * locate] bids, [2 * locate + 1] asks
    cdef int32_t _locates

    cdef int64_t _unknown, _over, _duplicate, _invalid, _applied

    def __cinit__(self):
        self._order_blocks = NULL
        self._level_blocks = NULL
        self._order_block_count = 0
        self._level_block_count = 0
        self._slots = NULL
        self._old_slots = NULL
        self._sides = NULL
        self._order_free = EMPTY
        self._level_free = EMPTY
        self._locates = 0
        self._grow_orders()
        self._grow_levels()
        self._slots = _new_table(1024)
        if self._slots == NULL:
            raise MemoryError()
        self._mask = 1023

    def __dealloc__(self):
        cdef int32_t i
        if self._sides != NULL:
            for i in range(2 * self._locates):
                free(self._sides[i].levels)
        free(self._sides)
        if self._order_blocks != NULL:
            for i in range(self._order_block_count):
                free(self._order_blocks[i])
        free(self._order_blocks)
        if self._level_blocks != NULL:
            for i in range(self._level_block_count):
                free(self._level_blocks[i])
        free(self._level_blocks)
        free(self._slots)
        free(self._old_slots)

    # --- storage ------------------------------------------------------------------------------

    cdef inline Order* _order(self, int32_t index) noexcept nogil:
        return &self._order_blocks[index >> BLOCK_SHIFT][index & BLOCK_MASK]

    cdef inline Level* _level(self, int32_t index) noexcept nogil:
        return &self._level_blocks[index >> BLOCK_SHIFT][index & BLOCK_MASK]

    cdef int _grow_orders(self) except -1:
        cdef int32_t n = self._order_block_count, i, base
        cdef Order** blocks
        cdef Order* block
        if n >= MAX_BLOCKS:
            raise MemoryError("lowlat.book: more than 2**31 orders")
        blocks = <Order**>realloc(self._order_blocks, (n + 1) * sizeof(Order*))
        if blocks == NULL:
            raise MemoryError()
        self._order_blocks = blocks
        block = <Order*>malloc(BLOCK_SIZE * sizeof(Order))
        if block == NULL:
            raise MemoryError()
        blocks[n] = block
        self._order_block_count = n + 1
        base = n << BLOCK_SHIFT
        for i in range(BLOCK_SIZE - 1, -1, -1):
            block[i].next = self._order_free
            self._order_free = base + i
        return 0

    cdef int _grow_levels(self) except -1:
        cdef int32_t n = self._level_block_count, i, base
        cdef Level** blocks
        cdef Level* block
        if n >= MAX_BLOCKS:
            raise MemoryError("lowlat.book: more than 2**31 levels")
        blocks = <Level**>realloc(self._level_blocks, (n + 1) * sizeof(Level*))
        if blocks == NULL:
            raise MemoryError()
        self._level_blocks = blocks
        block = <Level*>malloc(BLOCK_SIZE * sizeof(Level))
        if block == NULL:
            raise MemoryError()
        blocks[n] = block
        self._level_block_count = n + 1
        base = n << BLOCK_SHIFT
        for i in range(BLOCK_SIZE - 1, -1, -1):
            block[i].head = self._level_free
            self._level_free = base + i
        return 0

    cdef int _start_growth(self) except -1:
        cdef size_t size = (self._mask + 1) * 2
        cdef Slot* slots
        while self._old_slots != NULL:  # the previous migration must end first (rare: see _migrate)
            self._migrate(1 << 20)
        slots = _new_table(size)
        if slots == NULL:
            raise MemoryError()
        self._old_slots = self._slots
        self._old_mask = self._mask
        self._cursor = 0
        self._slots = slots
        self._mask = size - 1
        return 0

    cdef void _migrate(self, size_t steps) noexcept nogil:
        # Move up to ``steps`` old slots into the new table. A growth starts when the live count
        # reaches half the table; the new table is twice as big, so the next growth is at least
        # old_size / 2 inserts away, and MIGRATE_STEPS >= 2 per insert empties the old table first.
        cdef Slot* old = self._old_slots
        cdef Slot* slot
        cdef size_t h
        while steps and self._cursor <= self._old_mask:
            slot = &old[self._cursor]
            if slot.index >= 0:
                h = _hash(slot.key) & self._mask
                while self._slots[h].index != EMPTY:
                    h = (h + 1) & self._mask
                self._slots[h] = slot[0]
                slot.index = TOMBSTONE
            self._cursor += 1
            steps -= 1
        if self._cursor > self._old_mask:
            free(old)
            self._old_slots = NULL

    cdef inline int32_t _find_old(self, uint64_t ref) noexcept nogil:
        # The old table takes no inserts: tombstones keep its probe chains whole until it is freed.
        cdef size_t h = _hash(ref) & self._old_mask
        cdef Slot* slot
        while True:
            slot = &self._old_slots[h]
            if slot.index == EMPTY:
                return EMPTY
            if slot.index >= 0 and slot.key == ref:
                return <int32_t>slot.index
            h = (h + 1) & self._old_mask

    cdef inline void _prefetch(self, uint64_t ref) noexcept nogil:
        __builtin_prefetch(&self._slots[_hash(ref) & self._mask])

    cdef inline int32_t _find(self, uint64_t ref) noexcept nogil:
        cdef size_t h = _hash(ref) & self._mask
        cdef Slot* slot
        while True:
            slot = &self._slots[h]
            if slot.index == EMPTY:
                if self._old_slots != NULL:
                    return self._find_old(ref)
                return EMPTY
            if slot.key == ref:
                return <int32_t>slot.index
            h = (h + 1) & self._mask

    cdef inline void _map_put(self, uint64_t ref, int32_t index) noexcept nogil:
        cdef size_t h = _hash(ref) & self._mask
        while self._slots[h].index != EMPTY:
            h = (h + 1) & self._mask
        self._slots[h].key = ref
        self._slots[h].index = index

    cdef inline int32_t _find_slot(self, uint64_t ref, size_t* where) noexcept nogil:
        # _find that also gives the entry's slot in the current table (NO_SLOT when the entry is
        # in the old table or absent), so a removal that follows need not probe again.
        cdef size_t h = _hash(ref) & self._mask
        cdef Slot* slot
        while True:
            slot = &self._slots[h]
            if slot.index == EMPTY:
                where[0] = NO_SLOT
                if self._old_slots != NULL:
                    return self._find_old(ref)
                return EMPTY
            if slot.key == ref:
                where[0] = h
                return <int32_t>slot.index
            h = (h + 1) & self._mask

    cdef void _map_remove(self, uint64_t ref, size_t h) noexcept nogil:
        # ``h``: the entry's slot in the current table when known (from _find_slot), else NO_SLOT.
        # Backward-shift deletion: no tombstones, so probes stay short however many orders churn.
        cdef size_t mask = self._mask
        cdef size_t j, home
        cdef Slot* slots = self._slots
        if h == NO_SLOT:
            h = _hash(ref) & mask
            while slots[h].index != EMPTY and slots[h].key != ref:
                h = (h + 1) & mask
            if slots[h].index == EMPTY:
                if self._old_slots != NULL:
                    self._remove_old(ref)
                return
        j = h
        while True:
            j = (j + 1) & mask
            if slots[j].index == EMPTY:
                break
            home = _hash(slots[j].key) & mask
            # Move j back into the hole h unless its home lies cyclically in (h, j].
            if (j > h and (home <= h or home > j)) or (j < h and (home <= h and home > j)):
                slots[h] = slots[j]
                h = j
        slots[h].index = EMPTY

    cdef void _remove_old(self, uint64_t ref) noexcept nogil:
        cdef size_t h = _hash(ref) & self._old_mask
        cdef Slot* slot
        while True:
            slot = &self._old_slots[h]
            if slot.index == EMPTY:
                return
            if slot.index >= 0 and slot.key == ref:
                slot.index = TOMBSTONE
                return
            h = (h + 1) & self._old_mask

    cdef SideBook* _side(self, uint16_t locate, uint8_t side) except NULL:
        cdef int32_t n = self._locates, grown_n, i
        cdef SideBook* grown
        if locate >= n:
            grown_n = n * 2 if n else 64
            while grown_n <= locate:
                grown_n *= 2
            grown = <SideBook*>realloc(self._sides, 2 * grown_n * sizeof(SideBook))
            if grown == NULL:
                raise MemoryError()
            memset(grown + 2 * n, 0, 2 * (grown_n - n) * sizeof(SideBook))
            self._sides = grown
            self._locates = grown_n
        return &self._sides[2 * locate + (0 if side == BUY else 1)]

    cdef inline SideBook* _side_if_any(self, uint16_t locate, uint8_t side) noexcept:
        if locate >= self._locates:
            return NULL
        return &self._sides[2 * locate + (0 if side == BUY else 1)]

    cdef inline int32_t _search(self, SideBook* s, uint32_t price, bint bid) noexcept:
        # Index of the first level not "better-sorted" than price: bids ascending, asks descending.
        # Branch-free: asks compare with every bit flipped (which reverses the order), and each
        # halving step is a conditional move, so a search costs no mispredicted branch.
        cdef uint32_t flip = 0 if bid else 0xFFFFFFFF
        cdef uint32_t key = price ^ flip
        cdef int32_t base = 0, n = s.count, half
        cdef LevelRef* levels = s.levels
        if n == 0:
            return 0
        while n > 1:
            half = n >> 1
            base = base + half if (levels[base + half].price ^ flip) < key else base
            n -= half
        return base + ((levels[base].price ^ flip) < key)

    # --- the operations -----------------------------------------------------------------------

    cdef int _insert(self, uint64_t ref, uint16_t locate, uint8_t side, uint32_t price, uint32_t shares) except -1:
        cdef int32_t index, li, pos
        cdef Order* o
        cdef Level* lv
        cdef SideBook* s
        cdef bint bid = side == BUY
        # One probe both answers "already live?" and finds the free slot the new entry takes,
        # unless the table changes below (a migration step or a growth), which re-probes.
        cdef size_t h = _hash(ref) & self._mask
        cdef Slot* slots = self._slots
        while slots[h].index != EMPTY:
            if slots[h].key == ref:
                self._duplicate += 1
                return 0
            h = (h + 1) & self._mask
        if self._old_slots != NULL and self._find_old(ref) != EMPTY:
            self._duplicate += 1
            return 0
        if shares == 0 or (side != BUY and side != SELL):
            self._invalid += 1
            return 0
        s = self._side(locate, side)
        pos = self._search(s, price, bid)
        if pos < s.count and s.levels[pos].price == price:
            li = s.levels[pos].level
        else:
            if self._level_free == EMPTY:
                self._grow_levels()
            if s.count == s.capacity:
                self._grow_side(s)
            li = self._level_free
            lv = self._level(li)
            self._level_free = lv.head
            lv.price = price
            lv.shares = 0
            lv.count = 0
            lv.head = EMPTY
            lv.tail = EMPTY
            memmove(s.levels + pos + 1, s.levels + pos, (s.count - pos) * sizeof(LevelRef))
            s.levels[pos].price = price
            s.levels[pos].level = li
            s.count += 1
        if self._order_free == EMPTY:
            self._grow_orders()
        if self._old_slots != NULL:
            self._migrate(MIGRATE_STEPS)
            h = <size_t>-1
        if <size_t>(self._live + 1) * 2 > self._mask + 1:
            self._start_growth()
            h = <size_t>-1
        index = self._order_free
        o = self._order(index)
        self._order_free = o.next
        o.ref = ref
        o.price = price
        o.shares = shares
        o.locate = locate
        o.side = side
        o.level = li
        lv = self._level(li)
        o.prev = lv.tail
        o.next = EMPTY
        if lv.tail != EMPTY:
            self._order(lv.tail).next = index
        else:
            lv.head = index
        lv.tail = index
        lv.count += 1
        lv.shares += shares
        if h == <size_t>-1:
            self._map_put(ref, index)
        else:
            self._slots[h].key = ref
            self._slots[h].index = index
        self._live += 1
        return 1

    cdef int _grow_side(self, SideBook* s) except -1:
        cdef int32_t capacity = s.capacity * 2 if s.capacity else 16
        cdef LevelRef* grown = <LevelRef*>realloc(s.levels, capacity * sizeof(LevelRef))
        if grown == NULL:
            raise MemoryError()
        s.levels = grown
        s.capacity = capacity
        return 0

    cdef void _remove(self, int32_t index, size_t slot) noexcept:
        cdef Order* o = self._order(index)
        cdef int32_t li = o.level, pos
        cdef Level* lv = self._level(li)
        cdef SideBook* s
        if o.prev != EMPTY:
            self._order(o.prev).next = o.next
        else:
            lv.head = o.next
        if o.next != EMPTY:
            self._order(o.next).prev = o.prev
        else:
            lv.tail = o.prev
        lv.count -= 1
        lv.shares -= o.shares
        if lv.count == 0:
            s = &self._sides[2 * o.locate + (0 if o.side == BUY else 1)]
            pos = self._search(s, lv.price, o.side == BUY)
            memmove(s.levels + pos, s.levels + pos + 1, (s.count - pos - 1) * sizeof(LevelRef))
            s.count -= 1
            lv.head = self._level_free
            self._level_free = li
        self._map_remove(o.ref, slot)
        o.next = self._order_free
        self._order_free = index
        self._live -= 1

    cdef uint32_t _reduce(self, uint64_t ref, uint32_t shares) noexcept:
        cdef size_t slot
        cdef int32_t index = self._find_slot(ref, &slot)
        cdef Order* o
        cdef uint32_t done
        if index == EMPTY:
            self._unknown += 1
            return 0
        o = self._order(index)
        if shares >= o.shares:
            if shares > o.shares:
                self._over += 1
            done = o.shares
            self._remove(index, slot)
            return done
        o.shares -= shares
        self._level(o.level).shares -= shares
        return shares

    cdef int _delete(self, uint64_t ref) noexcept:
        cdef size_t slot
        cdef int32_t index = self._find_slot(ref, &slot)
        if index == EMPTY:
            self._unknown += 1
            return 0
        self._remove(index, slot)
        return 1

    cdef int _replace(self, uint64_t ref, uint64_t new_ref, uint32_t shares, uint32_t price) except -1:
        cdef size_t slot
        cdef int32_t index = self._find_slot(ref, &slot)
        cdef uint16_t locate
        cdef uint8_t side
        if index == EMPTY:
            self._unknown += 1
            return 0
        locate = self._order(index).locate
        side = self._order(index).side
        self._remove(index, slot)
        return self._insert(new_ref, locate, side, price, shares)

    # --- counters ----------------------------------------------------------------------------

    @property
    def unknown_references(self):
        """Messages naming an order reference the book does not hold (ignored)."""
        return self._unknown

    @property
    def over_executions(self):
        """Executions or cancels of more shares than the order had (the order is removed)."""
        return self._over

    @property
    def duplicate_references(self):
        """Adds or replaces whose new reference is already live (the new order is ignored)."""
        return self._duplicate

    @property
    def invalid_messages(self):
        """Adds with zero shares or a side other than B/S (ignored)."""
        return self._invalid

    @property
    def messages(self):
        """Book messages applied (A, F, E, C, X, D, U), whatever their outcome."""
        return self._applied

    def __len__(self):
        return self._live

    def __contains__(self, order_reference_number):
        if not isinstance(order_reference_number, int) or not 0 <= order_reference_number < 2**64:
            return False
        return self._find(order_reference_number) != EMPTY

    # --- updates (the public, Python-called forms) --------------------------------------------

    def add(self, uint16_t stock_locate, uint64_t order_reference_number, side, uint32_t price, uint32_t shares):
        """Add an order at the back of its level's queue; False when ignored (counted).

        ``side``: ``"B"`` or ``"S"`` (str, bytes or the code 66/83); anything else ``ValueError``.
        """
        cdef int code = side_code(side)
        self._applied += 1
        return self._insert(order_reference_number, stock_locate, code, price, shares) == 1

    def execute(self, uint64_t order_reference_number, uint32_t shares):
        """Execute ``shares`` of an order (ITCH E/C); return the shares taken from the book."""
        self._applied += 1
        return self._reduce(order_reference_number, shares)

    def cancel(self, uint64_t order_reference_number, uint32_t shares):
        """Cancel ``shares`` of an order (ITCH X); return the shares taken from the book."""
        self._applied += 1
        return self._reduce(order_reference_number, shares)

    def delete(self, uint64_t order_reference_number):
        """Delete an order (ITCH D); False (counted) when the reference is unknown."""
        self._applied += 1
        return self._delete(order_reference_number) == 1

    def replace(self, uint64_t order_reference_number, uint64_t new_order_reference_number, uint32_t shares, uint32_t price):
        """Replace an order (ITCH U): same instrument and side, new reference, back of the queue.

        False (counted) when the original is unknown or the new reference is already live; in
        the second case the original is still removed.
        """
        self._applied += 1
        return self._replace(order_reference_number, new_order_reference_number, shares, price) == 1

    def apply(self, message, Py_ssize_t offset=0):
        """Apply one raw ITCH message (no length prefix) at ``message[offset:]``.

        Book messages (A, F, E, C, X, D, U) update the book and return True; every other type is
        ignored and returns False. ``message`` may be bytes-like or a :class:`lowlat.itch.Message`
        record. ``ValueError`` naming the byte offset when the data is shorter than the type.
        """
        cdef Py_buffer view
        if not isinstance(message, (bytes, bytearray, memoryview)) and hasattr(message, "to_bytes"):
            message = message.to_bytes()
        PyObject_GetBuffer(message, &view, PyBUF_SIMPLE)
        try:
            return self._apply_raw(<const unsigned char*>view.buf, view.len, offset)
        finally:
            PyBuffer_Release(&view)

    cdef object _apply_raw(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t offset):
        cdef int code, size
        if offset < 0 or offset >= n:
            raise ValueError(f"offset {offset} is outside the data (length {n})")
        code = p[offset]
        size = _SIZES[code]
        if size == 0 or not (code == 65 or code == 70 or code == 69 or code == 67 or code == 88 or code == 68 or code == 85):
            return False
        if offset + size > n:
            raise ValueError(f"truncated message at byte offset {offset}: type {chr(code)!r} needs {size} bytes, {n - offset} left")
        p += offset
        self._applied += 1
        if code == 65 or code == 70:
            self._insert(_be64(p + 11), _be16(p + 1), p[19], _be32(p + 32), _be32(p + 20))
        elif code == 68:
            self._delete(_be64(p + 11))
        elif code == 85:
            self._replace(_be64(p + 11), _be64(p + 19), _be32(p + 27), _be32(p + 31))
        else:
            self._reduce(_be64(p + 11), _be32(p + 19))
        return True

    def apply_batch(self, batch):
        """Apply every book message of a decoded :class:`lowlat.itch.Batch` in stream order.

        The batch must hold the book types it has (A, F, E, C, X, D, U) with their ``position``
        columns; other types are ignored. Return the number of book messages applied.
        """
        # Columns are read in place (base pointer and stride of each field of the structured
        # array) when their dtype already is the native one; anything else is converted once.
        cdef char* pos[7]
        cdef char* ref[7]
        cdef char* ref2[7]
        cdef char* shares[7]
        cdef char* price[7]
        cdef char* locate[7]
        cdef char* side[7]
        cdef Py_ssize_t pos_s[7]
        cdef Py_ssize_t ref_s[7]
        cdef Py_ssize_t ref2_s[7]
        cdef Py_ssize_t shares_s[7]
        cdef Py_ssize_t price_s[7]
        cdef Py_ssize_t locate_s[7]
        cdef Py_ssize_t side_s[7]
        cdef Py_ssize_t size[7]
        cdef Py_ssize_t head[7]
        cdef int k, best
        cdef int64_t best_pos, p, prev = 0, lo, hi
        cdef Py_ssize_t total = 0, r, step
        keep = []

        for k in range(7):
            t = BOOK_TYPES[k]
            arr = batch.get(t)
            size[k] = 0 if arr is None else len(arr)
            head[k] = 0
            if size[k] == 0:
                continue
            total += size[k]
            pos[k] = _column(keep, arr, "position", _I64, &pos_s[k])
            if t == "U":
                ref[k] = _column(keep, arr, "original_order_reference_number", _U64, &ref_s[k])
                ref2[k] = _column(keep, arr, "new_order_reference_number", _U64, &ref2_s[k])
            else:
                ref[k] = _column(keep, arr, "order_reference_number", _U64, &ref_s[k])
            if t in ("A", "F", "U"):
                shares[k] = _column(keep, arr, "shares", _U32, &shares_s[k])
                price[k] = _column(keep, arr, "price", _U32, &price_s[k])
            if t in ("A", "F"):
                locate[k] = _column(keep, arr, "stock_locate", _U16, &locate_s[k])
                side[k] = _column(keep, arr, "buy_sell_indicator", _U8, &side_s[k])
            if t in ("E", "C"):
                shares[k] = _column(keep, arr, "executed_shares", _U32, &shares_s[k])
            if t == "X":
                shares[k] = _column(keep, arr, "cancelled_shares", _U32, &shares_s[k])
        # The stream order of the messages, as (type, row) per step. Positions of a decoded batch
        # are distinct and rise within each type, so when they span little more than the batch
        # each message is put at its own position (one pass, no comparison of seven heads; the
        # few positions of other types stay empty, kind -1); otherwise, or at the first position
        # that breaks this, a seven-way merge by position (ties to the earlier type), which
        # gives the same order in the first case.
        cdef int8_t[::1] kinds
        cdef Py_ssize_t[::1] rows
        cdef Py_ssize_t steps = 0
        cdef bint placed = False
        if total:
            lo = INT64_MAX
            hi = INT64_MIN
            for k in range(7):
                if size[k]:
                    lo = min(lo, _i64(pos[k], pos_s[k], 0))
                    hi = max(hi, _i64(pos[k], pos_s[k], size[k] - 1))
            if lo > INT64_MIN and hi >= lo and <uint64_t>hi - <uint64_t>lo < <uint64_t>(4 * total + 4096):
                steps = <Py_ssize_t>(<uint64_t>hi - <uint64_t>lo) + 1
                kinds = np.full(steps, -1, dtype=np.int8)
                rows = np.empty(steps, dtype=np.intp)
                placed = True
                for k in range(7):
                    prev = lo - 1
                    for r in range(size[k]):
                        p = _i64(pos[k], pos_s[k], r)
                        if p <= prev or p > hi or kinds[p - lo] >= 0:  # not a plain decoded batch
                            placed = False
                            break
                        kinds[p - lo] = k
                        rows[p - lo] = r
                        prev = p
                    if not placed:
                        break
        if not placed:
            steps = total
            kinds = np.empty(total, dtype=np.int8)
            rows = np.empty(total, dtype=np.intp)
            for step in range(total):
                best = -1
                best_pos = 0
                for k in range(7):
                    if head[k] < size[k] and (best < 0 or _i64(pos[k], pos_s[k], head[k]) < best_pos):
                        best = k
                        best_pos = _i64(pos[k], pos_s[k], head[k])
                kinds[step] = best
                rows[step] = head[best]
                head[best] += 1
        # The updates, prefetching ahead the batch's record (its first touch) and the hash slot
        # of the message LOOKAHEAD steps ahead. Prefetching the order records too (a second
        # probe of the map per message) measured slower than the misses it saves.
        for step in range(steps):
            if step + LOOKAHEAD_BATCH < steps:
                k = kinds[step + LOOKAHEAD_BATCH]
                if k >= 0:
                    r = rows[step + LOOKAHEAD_BATCH]
                    __builtin_prefetch(ref[k] + r * ref_s[k])
                    __builtin_prefetch(pos[k] + r * pos_s[k] + pos_s[k] - 1)
            if step + LOOKAHEAD < steps:
                k = kinds[step + LOOKAHEAD]
                if k >= 0:
                    self._prefetch(_u64(ref[k], ref_s[k], rows[step + LOOKAHEAD]))
            best = kinds[step]
            if best < 0:
                continue
            r = rows[step]
            if best <= 1:
                self._insert(_u64(ref[best], ref_s[best], r), _u16(locate[best], locate_s[best], r),
                             _u8(side[best], side_s[best], r), _u32(price[best], price_s[best], r),
                             _u32(shares[best], shares_s[best], r))
            elif best <= 4:
                self._reduce(_u64(ref[best], ref_s[best], r), _u32(shares[best], shares_s[best], r))
            elif best == 5:
                self._delete(_u64(ref[best], ref_s[best], r))
            else:
                self._replace(_u64(ref[best], ref_s[best], r), _u64(ref2[best], ref2_s[best], r),
                              _u32(shares[best], shares_s[best], r), _u32(price[best], price_s[best], r))
        self._applied += total
        return total

    # --- queries -----------------------------------------------------------------------------

    cdef object _best(self, uint16_t locate, uint8_t side):
        cdef SideBook* s = self._side_if_any(locate, side)
        cdef Level* lv
        if s == NULL or s.count == 0:
            return None
        lv = self._level(s.levels[s.count - 1].level)
        return (lv.price, lv.shares, lv.count)

    def best_bid(self, uint16_t stock_locate):
        """Return ``(price, shares, orders)`` of the best bid of ``stock_locate``, or None. O(1)."""
        return self._best(stock_locate, BUY)

    def best_ask(self, uint16_t stock_locate):
        """Return ``(price, shares, orders)`` of the best ask of ``stock_locate``, or None. O(1)."""
        return self._best(stock_locate, SELL)

    def depth(self, uint16_t stock_locate, side, Py_ssize_t levels=10):
        """Return the best ``levels`` levels of one side as a :data:`DEPTH_DTYPE` array, best first."""
        cdef int code = side_code(side)
        cdef SideBook* s
        cdef Py_ssize_t i, n
        cdef Level* lv
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        s = self._side_if_any(stock_locate, code)
        n = 0 if s == NULL else min(levels, s.count)
        out = np.empty(n, dtype=DEPTH_DTYPE)
        cdef uint32_t[:] prices = out["price"]
        cdef uint64_t[:] shares = out["shares"]
        cdef uint32_t[:] orders = out["orders"]
        for i in range(n):
            lv = self._level(s.levels[s.count - 1 - i].level)
            prices[i] = lv.price
            shares[i] = lv.shares
            orders[i] = lv.count
        return out

    def level_count(self, uint16_t stock_locate, side):
        """Return how many price levels one side of ``stock_locate`` has."""
        cdef SideBook* s = self._side_if_any(stock_locate, side_code(side))
        return 0 if s == NULL else s.count

    def orders_at(self, uint16_t stock_locate, side, uint32_t price):
        """Return ``[(order_reference_number, shares), ...]`` at one level in time priority."""
        cdef int code = side_code(side)
        cdef SideBook* s = self._side_if_any(stock_locate, code)
        cdef int32_t pos, index
        out = []
        if s == NULL:
            return out
        pos = self._search(s, price, code == BUY)
        if pos >= s.count or s.levels[pos].price != price:
            return out
        index = self._level(s.levels[pos].level).head
        while index != EMPTY:
            out.append((self._order(index).ref, self._order(index).shares))
            index = self._order(index).next
        return out

    def order(self, order_reference_number):
        """Return ``(stock_locate, side, price, shares)`` of a live order (side 'B'/'S'), or None."""
        cdef int32_t index
        cdef Order* o
        if not isinstance(order_reference_number, int) or not 0 <= order_reference_number < 2**64:
            return None
        index = self._find(order_reference_number)
        if index == EMPTY:
            return None
        o = self._order(index)
        return (o.locate, chr(o.side), o.price, o.shares)

    def totals(self, uint16_t stock_locate):
        """Return ``(bid_orders, bid_shares, ask_orders, ask_shares)`` of ``stock_locate``. O(levels)."""
        cdef SideBook* s
        cdef int32_t i
        cdef uint64_t orders, shares
        out = []
        for code in (BUY, SELL):
            s = self._side_if_any(stock_locate, code)
            orders = 0
            shares = 0
            if s != NULL:
                for i in range(s.count):
                    orders += self._level(s.levels[i].level).count
                    shares += self._level(s.levels[i].level).shares
            out.append(orders)
            out.append(shares)
        return tuple(out)

    def instruments(self):
        """Return the sorted stock locates that have at least one live order."""
        cdef int32_t locate
        return [locate for locate in range(self._locates)
                if self._sides[2 * locate].count or self._sides[2 * locate + 1].count]
