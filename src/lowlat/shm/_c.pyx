# cython: language_level=3, binding=False, always_allow_keywords=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Shared-memory rings, compiled: ShmRing and ShmRecordRing, the twins of :mod:`lowlat.shm._py`."""
#
# The layout, the protocol, the argument checks and the error messages live in lowlat.shm.layout,
# the source of truth; this file implements the same protocol over a raw pointer into the segment,
# with C11-style acquire/release atomics (GCC __atomic builtins), so either backend can sit at
# either end of one segment. Nothing here trusts the segment: header fields are validated (by
# shm.layout.read_header) before use and kept in this object, and every position or length read from
# shared memory is range-checked before it decides a copy, so a hostile or corrupt segment raises
# ValueError instead of reading or writing outside the mapping.

cimport cython
from lowlat._clock cimport monotonic_ns as _now
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
from posix.unistd cimport getpid

cimport numpy as cnp
import numpy as _shm_np

from lowlat.shm import layout as _layout

__all__ = ["ShmRing", "ShmRecordRing"]

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>
    #include <sched.h>
    #include <time.h>

    static inline uint64_t lowlat_shm_load_acquire(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void lowlat_shm_store_release(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    /* Role slots only (claimed once per attach); the hot path never compare-and-swaps. */
    static inline int lowlat_shm_cas(uint64_t *p, uint64_t expected, uint64_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    /* Tell the core we are spinning: frees pipeline resources for the sibling hyperthread. */
    static inline void lowlat_shm_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
    #endif
    }
    static inline void lowlat_shm_yield(void) { sched_yield(); }
    static inline int lowlat_shm_load_flag(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void lowlat_shm_store_flag(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void lowlat_shm_sleep_ns(int64_t ns) {
        struct timespec ts;
        ts.tv_sec = (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        nanosleep(&ts, NULL);
    }
    """
    uint64_t lowlat_shm_load_acquire(const uint64_t *p) noexcept nogil
    void lowlat_shm_store_release(uint64_t *p, uint64_t v) noexcept nogil
    int lowlat_shm_cas(uint64_t *p, uint64_t expected, uint64_t desired) noexcept nogil
    void lowlat_shm_relax() noexcept nogil
    void lowlat_shm_yield() noexcept nogil
    int lowlat_shm_load_flag(const int *p) noexcept nogil
    void lowlat_shm_store_flag(int *p, int v) noexcept nogil
    void lowlat_shm_sleep_ns(int64_t ns) noexcept nogil


cdef inline uint64_t _record_size(uint64_t length) noexcept nogil:
    # lowlat.shm.layout.record_size in C: the length word, then the payload padded to 8 bytes.
    return (length + 15) & ~(<uint64_t>7)


# Mirrors of the constants in lowlat.shm.layout (checked equal at import below).
cdef enum:
    _SHM_BASE_HEADER = 512
    _SHM_PRODUCER = 1
    _SHM_CONSUMER = 2
    _SHM_W_PRODUCER_PID = 16
    _SHM_W_CONSUMER_PID = 17
    _SHM_W_PRODUCER_POSITION = 32
    _SHM_W_CONSUMER_POSITION = 48
    _SHM_WAIT_SPIN = 0
    _SHM_WAIT_YIELD = 1
    _SHM_SPIN_POLLS = 2000
    _SHM_YIELD_POLLS = 200
    _SHM_SLEEP_MIN_NS = 10000
    _SHM_SLEEP_MAX_NS = 1000000
    # Longest stretch spent waiting without the GIL before checking for signals (Ctrl-C).
    _SHM_SLICE_NS = 20000000

cdef uint64_t _SHM_PADDING = 0xFFFFFFFFFFFFFFFFULL

assert (_layout.BASE_HEADER, _layout.PRODUCER, _layout.CONSUMER, _layout.W_PRODUCER_PID, _layout.W_CONSUMER_PID,
        _layout.W_PRODUCER_POSITION, _layout.W_CONSUMER_POSITION, _layout.WAIT_SPIN, _layout.WAIT_YIELD,
        _layout.SPIN_POLLS, _layout.YIELD_POLLS, _layout.SLEEP_MIN_NS, _layout.SLEEP_MAX_NS,
        _layout.PADDING) == (
        _SHM_BASE_HEADER, _SHM_PRODUCER, _SHM_CONSUMER, _SHM_W_PRODUCER_PID, _SHM_W_CONSUMER_PID,
        _SHM_W_PRODUCER_POSITION, _SHM_W_CONSUMER_POSITION, _SHM_WAIT_SPIN, _SHM_WAIT_YIELD,
        _SHM_SPIN_POLLS, _SHM_YIELD_POLLS, _SHM_SLEEP_MIN_NS, _SHM_SLEEP_MAX_NS, _SHM_PADDING), \
    "lowlat.shm._c is out of step with lowlat.shm.layout"
assert all(_record_size(n) == _layout.record_size(n) for n in (0, 1, 7, 8, 9, 4095)), \
    "lowlat.shm._c sizes records unlike lowlat.shm.layout.record_size"


cdef struct _ShmWaiter:
    int strategy
    int64_t deadline
    int64_t polls
    int64_t sleep_ns


cdef inline void _shm_waiter_init(_ShmWaiter *waiter, int strategy, int64_t budget_ns) noexcept nogil:
    waiter.strategy = strategy
    waiter.deadline = _now() + budget_ns
    waiter.polls = 0
    waiter.sleep_ns = _SHM_SLEEP_MIN_NS


cdef inline bint _shm_pause(_ShmWaiter *waiter, int64_t now) noexcept nogil:
    # One pause of the spin -> yield -> sleep strategy; False once the deadline has passed.
    if now >= waiter.deadline:
        return False
    waiter.polls += 1
    if waiter.polls <= _SHM_SPIN_POLLS or waiter.strategy == _SHM_WAIT_SPIN:
        lowlat_shm_relax()
    elif waiter.strategy == _SHM_WAIT_YIELD or waiter.polls <= _SHM_SPIN_POLLS + _SHM_YIELD_POLLS:
        lowlat_shm_yield()
    else:
        lowlat_shm_sleep_ns(min(waiter.sleep_ns, waiter.deadline - now))
        waiter.sleep_ns = min(waiter.sleep_ns * 2, <int64_t>_SHM_SLEEP_MAX_NS)
    return True


cdef bint _shm_wait_change(const uint64_t *position, uint64_t seen, _ShmWaiter *waiter, const int *closing) noexcept nogil:
    # Wait (without the GIL) until the other side moves its position away from ``seen``. Return
    # False when the deadline passed first; True when it moved, a slice ended (signal check due)
    # or another thread started closing this end (the caller re-checks before touching memory).
    cdef int64_t now = _now()
    cdef int64_t slice_end = now + _SHM_SLICE_NS
    while lowlat_shm_load_acquire(position) == seen and not lowlat_shm_load_flag(closing):
        if not _shm_pause(waiter, now):
            return False
        now = _now()
        if now >= slice_end:
            return True
    return True


cdef inline int64_t _shm_budget(object timeout) except -1:
    # A wait budget in ns (0: do not wait); float seconds take the fast path, anything else the
    # pure backend's checks (same errors, same words).
    cdef double seconds
    if timeout is None:
        return 0
    if type(timeout) is float:
        seconds = timeout
        if 0.0 <= seconds < 1e9:
            return <int64_t>(seconds * 1e9)
    return _layout.timeout_ns(timeout)


cdef inline int _shm_get_buffer(object data, Py_buffer *view, str name, bint writable) except -1:
    # Borrow ``data``'s bytes; raise the pure backend's TypeError (same words) when it cannot lend them.
    try:
        PyObject_GetBuffer(data, view, PyBUF_WRITABLE if writable else PyBUF_SIMPLE)
    except (TypeError, ValueError, BufferError):
        _layout.bytes_view(data, name, writable)
        raise TypeError(f"{name} must be a C-contiguous bytes-like object") from None
    return 0


@cython.auto_pickle(False)
cdef class _ShmSegment:
    """Shared machinery of ShmRing and ShmRecordRing: the mapping, the role slot, close and unlink."""

    cdef object _shm
    cdef str _name
    cdef Py_buffer _view
    cdef bint _has_view
    cdef char *_base
    cdef char *_data
    cdef uint64_t *_producer_position
    cdef uint64_t *_consumer_position
    cdef uint64_t *_pid_slot
    cdef uint64_t _pid
    cdef int _role
    cdef int _role_held
    cdef int _waiters  # threads waiting without the GIL on this end (GIL-protected counter)
    cdef int _closing  # set by close(); read without the GIL by waiters
    cdef uint64_t _capacity
    cdef uint64_t _mask
    cdef uint64_t _pos
    cdef uint64_t _cached

    def __dealloc__(self):
        if self._has_view:
            if self._role and <uint64_t>getpid() == self._pid:  # not in a forked child
                lowlat_shm_cas(self._pid_slot, self._pid, 0)
            PyBuffer_Release(&self._view)
            self._has_view = False

    cdef int _map(self, object shm, int role, bint force, str kind, Py_ssize_t needed) except -1:
        # Borrow the mapping (which keeps it alive and mapped until close) and claim the role slot.
        cdef uint64_t holder
        self._shm = shm
        self._name = _layout.segment_name(shm)
        self._role_held = role
        PyObject_GetBuffer(shm.buf, &self._view, PyBUF_WRITABLE)
        self._has_view = True
        if self._view.len < needed:
            raise ValueError(f"segment {self._name!r} is inconsistent: mapped {self._view.len} bytes, needs {needed}")
        self._base = <char *>self._view.buf
        self._producer_position = <uint64_t *>(self._base + 8 * _SHM_W_PRODUCER_POSITION)
        self._consumer_position = <uint64_t *>(self._base + 8 * _SHM_W_CONSUMER_POSITION)
        self._pid_slot = <uint64_t *>(self._base + 8 * (_SHM_W_PRODUCER_PID if role == _SHM_PRODUCER else _SHM_W_CONSUMER_PID))
        self._pid = <uint64_t>getpid()
        # The pure backend's protocol (lowlat.shm.layout.role_lock): check-then-write under the segment's
        # flock, so a pure attach racing this one sees the slot taken. The compare-and-swap keeps
        # the slot consistent against an older build that claims without the lock.
        with _layout.role_lock(shm):
            while True:
                holder = lowlat_shm_load_acquire(self._pid_slot)
                error = _layout.role_refusal(kind, role, holder, force)
                if error is not None:
                    raise error
                if lowlat_shm_cas(self._pid_slot, holder, self._pid):
                    break
        self._role = role
        return 0

    cdef int _unmap_on_error(self) except -1:
        if self._has_view:
            # Give the role back (a forked child that inherited this object must not).
            if self._role and <uint64_t>getpid() == self._pid:
                lowlat_shm_cas(self._pid_slot, self._pid, 0)
            self._role = 0
            PyBuffer_Release(&self._view)
            self._has_view = False
        self._data = NULL
        self._base = NULL
        return 0

    cdef object _closed_error(self, int needed):
        if self._shm is None or self._role == 0 or self._closing:
            return ValueError(f"{type(self).__name__} {self._name!r} is closed")
        return RuntimeError(
            f"this is the {_layout.ROLE_NAMES[self._role]} end of {type(self).__name__} {self._name!r}; "
            f"only the {_layout.ROLE_NAMES[needed]} may call this"
        )

    cdef inline int _require(self, int needed) except -1:
        # Called again right before touching the mapping whenever Python code (a conversion, a
        # buffer export, a signal handler) ran since the last check and might have closed this end.
        if self._role != needed or self._closing:
            raise self._closed_error(needed)
        return 0

    @property
    def name(self):
        """The segment's name: pass it to ``attach`` in the other process."""
        return self._name

    @property
    def role(self):
        """``"producer"`` or ``"consumer"``: the role this end holds (kept after ``close``)."""
        return _layout.ROLE_NAMES[self._role_held]

    @property
    def closed(self):
        """Whether ``close()`` has been called."""
        return self._shm is None

    def close(self):
        """Release the role and unmap the segment; later calls raise ``ValueError``. Idempotent.

        The segment itself stays (and keeps its contents) until someone calls ``unlink()``.
        """
        if self._shm is None:
            return
        shm = self._shm
        # A thread waiting without the GIL reads the mapping: make it leave before unmapping.
        lowlat_shm_store_flag(&self._closing, 1)
        while self._waiters > 0:
            with nogil:
                lowlat_shm_yield()
        self._unmap_on_error()
        self._shm = None
        shm.close()

    def unlink(self):
        """Remove the segment's name so no one else can attach; callable before or after ``close()``.

        Normally the creator calls this once both ends have attached (or at shutdown); any end may,
        e.g. to clean up after a creator that died. Mapped ends keep working until they close.
        Raise ``FileNotFoundError`` if the name is already gone.
        """
        _layout.unlink_segment(self._name)

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: pass its .name and attach() in the other process")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


@cython.final
@cython.auto_pickle(False)
cdef class ShmRing(_ShmSegment):
    """ShmRing(*args, **kwargs)
--

A single-producer single-consumer ring of variable-length byte messages in shared memory.

    One process holds the producer role and only it may ``put``; one process holds the consumer role
    and only it may ``get``. Nothing on the hot path takes a lock or makes a system call: the
    producer copies a message into the ring and publishes its position, the consumer copies it out
    and publishes its own. Make one with ``ShmRing.create()`` and open it elsewhere with
    ``ShmRing.attach(name)``. Messages are delivered in order, each exactly once, intact.
    """

    cdef uint64_t _max_message
    cdef uint64_t _length
    cdef int _strategy

    def __init__(self, *args, **kwargs):
        raise TypeError(f"use {type(self).__name__}.create() or {type(self).__name__}.attach() to make one")

    @classmethod
    def create(cls, name=None, capacity_bytes=1 << 20, *, max_message=None, role="producer", wait_strategy="spin"):
        """Create a ring segment and return its ``role`` end (the producer by default).

        ``capacity_bytes`` (rounded up to a power of two, at least 64) is the data area; each message
        takes 8 bytes plus its length rounded up to 8. ``max_message`` (default and maximum
        ``capacity // 2 - 8``) is the longest payload accepted. The segment is created with
        permissions 0600 under ``name`` (a random ``lowlat_...`` name when None, read it from
        ``.name``); ``FileExistsError`` if the name is taken. A name is 1 to 255 characters from
        ``A-Z a-z 0-9 _ . -`` after one optional leading ``/``, and not ``.`` or ``..``
        (``ValueError`` otherwise, here and in ``attach``). ``wait_strategy`` is what ``put``/``get``
        do while waiting for a timeout: ``"spin"`` (busy-poll), ``"yield"`` (spin, then yield the
        CPU) or ``"backoff"`` (spin, yield, then sleep with exponential backoff up to 1 ms).
        """
        code = _layout.role_code(role)
        strategy = _layout.wait_code(wait_strategy)
        capacity = _layout.capacity_bytes_of(capacity_bytes)
        limit = _layout.max_message_of(max_message, capacity)
        shm = _layout.open_segment(name, True, _SHM_BASE_HEADER + capacity)
        cdef ShmRing ring
        try:
            _layout.write_header(shm.buf, _layout.KIND_BYTES, _SHM_BASE_HEADER, capacity, limit, b"")
            ring = ShmRing.__new__(ShmRing)
            ring._setup(shm, code, False, strategy)
        except BaseException:
            shm.close()
            _layout.unlink_segment(_layout.segment_name(shm))
            raise
        return ring

    @classmethod
    def attach(cls, name, role="consumer", *, force=False, wait_strategy="spin"):
        """Open the ring segment ``name`` made by ``create`` (in any process) and return its ``role`` end.

        Raise ``FileNotFoundError`` if there is no such segment; ``ValueError`` saying which, if it is
        not a lowlat ring, has another layout version or is inconsistent; ``RuntimeError`` naming the
        pid if a live process holds ``role``. A role whose holder died is taken over only with
        ``force=True``. Attaching never registers the segment with the resource tracker, so this
        process exiting does not unlink it.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        code = _layout.role_code(role)
        strategy = _layout.wait_code(wait_strategy)
        shm = _layout.open_segment(name, False)
        cdef ShmRing ring
        try:
            ring = ShmRing.__new__(ShmRing)
            ring._setup(shm, code, bool(force), strategy)
        except BaseException:
            shm.close()
            raise
        return ring

    cdef int _setup(self, object shm, int role, bint force, int strategy) except -1:
        header_size, capacity, max_message, _ = _layout.read_header(shm, _layout.KIND_BYTES)
        self._name = _layout.segment_name(shm)
        self._capacity = capacity
        self._mask = self._capacity - 1
        self._max_message = max_message
        self._strategy = strategy
        try:
            self._map(shm, role, force, "ShmRing", header_size + capacity)
            self._data = self._base + <Py_ssize_t>header_size
            if role == _SHM_PRODUCER:
                self._pos = lowlat_shm_load_acquire(self._producer_position)
                self._cached = lowlat_shm_load_acquire(self._consumer_position)
                if self._pos - self._cached > self._capacity or (self._pos | self._cached) & 7:
                    raise _layout.corrupt("positions out of range")
            else:
                self._pos = lowlat_shm_load_acquire(self._consumer_position)
                self._cached = lowlat_shm_load_acquire(self._producer_position)
                if self._cached - self._pos > self._capacity or (self._pos | self._cached) & 7:
                    raise _layout.corrupt("positions out of range")
        except BaseException:
            self._unmap_on_error()
            self._shm = None
            raise
        return 0

    @property
    def capacity(self):
        """Size of the data area in bytes (a power of two)."""
        return self._capacity

    @property
    def max_message(self):
        """The longest payload ``put`` accepts, in bytes."""
        return self._max_message

    @property
    def wait_strategy(self):
        """How ``put``/``get`` wait when given a timeout: ``"spin"``, ``"yield"`` or ``"backoff"``."""
        return _layout.WAIT_NAMES[self._strategy]

    def __repr__(self):
        state = "closed" if self._shm is None else "open"
        return f"<ShmRing {self._name!r} {_layout.ROLE_NAMES[self._role_held]} capacity={self._capacity} {state}>"

    def __len__(self):
        """Return how many bytes are published and not yet consumed: messages with their 8-byte length
        words and padding (a snapshot, from either end; 0 when empty, at most ``capacity``)."""
        if self._shm is None:
            raise ValueError(f"ShmRing {self._name!r} is closed")
        cdef uint64_t consumed = lowlat_shm_load_acquire(self._consumer_position)
        cdef uint64_t produced = lowlat_shm_load_acquire(self._producer_position)
        if produced - consumed > self._capacity:
            raise _layout.corrupt(f"positions out of range (producer {produced}, consumer {consumed})")
        return produced - consumed

    # -- producer ---------------------------------------------------------------------------------

    cdef int64_t _claim_space(self, uint64_t record) except -2:
        # Return the offset where a record of ``record`` bytes goes (writing the padding word first
        # if it would straddle the end), or -1 when the ring is full now. The consumer's position is
        # read from its shared line only when the cached copy says full (rigtorp's technique).
        cdef uint64_t pos = self._pos
        cdef uint64_t offset = pos & self._mask
        cdef uint64_t contiguous = self._capacity - offset
        cdef uint64_t need = record if record <= contiguous else contiguous + record
        cdef uint64_t consumed
        if pos + need - self._cached > self._capacity:
            consumed = lowlat_shm_load_acquire(self._consumer_position)
            if pos - consumed > self._capacity or consumed & 7:
                raise _layout.corrupt(f"consumer position {consumed} is out of range (producer at {pos})")
            self._cached = consumed
            if pos + need - consumed > self._capacity:
                return -1
        if record > contiguous:
            (<uint64_t *>(self._data + offset))[0] = _SHM_PADDING
            self._pos = pos + contiguous
            return 0
        return <int64_t>offset

    cdef int64_t _wait_space(self, uint64_t record, int64_t budget_ns) except -2:
        cdef _ShmWaiter waiter
        cdef int64_t offset
        cdef bint moved
        cdef uint64_t seen
        cdef const uint64_t *position = self._consumer_position
        cdef const int *closing = &self._closing
        _shm_waiter_init(&waiter, self._strategy, budget_ns)
        while True:
            seen = self._cached
            self._waiters += 1
            with nogil:
                moved = _shm_wait_change(position, seen, &waiter, closing)
            self._waiters -= 1
            self._require(_SHM_PRODUCER)
            offset = self._claim_space(record)
            if offset >= 0 or not moved:
                return offset
            PyErr_CheckSignals()
            self._require(_SHM_PRODUCER)

    cdef bint _put_raw(self, const char *source, Py_ssize_t length, object timeout) except -1:
        cdef uint64_t record
        cdef int64_t offset
        cdef int64_t budget = _shm_budget(timeout)
        self._require(_SHM_PRODUCER)
        if <uint64_t>length > self._max_message:
            raise ValueError(f"data is {length} bytes; this ring's max_message is {self._max_message}")
        record = _record_size(length)
        offset = self._claim_space(record)
        if offset < 0:
            if budget == 0:
                return False
            offset = self._wait_space(record, budget)
            if offset < 0:
                return False
        (<uint64_t *>(self._data + offset))[0] = <uint64_t>length
        memcpy(self._data + offset + 8, source, length)
        self._pos += record
        # Publish: the release store orders the record's bytes before the new position.
        lowlat_shm_store_release(self._producer_position, self._pos)
        return True

    def put(self, data, timeout=None):
        """Copy one message into the ring and publish it; return False if it does not fit.

        Producer only. ``data`` is any C-contiguous bytes-like object of at most ``max_message``
        bytes (longer: ``ValueError``; not bytes-like: ``TypeError``). When the ring is full,
        return False at once (``timeout=None`` or 0), or wait up to ``timeout`` seconds
        (``float('inf')``: forever) with the ring's wait strategy, then return False with nothing
        written. O(len(data)).
        """
        cdef Py_buffer view
        if self._role != _SHM_PRODUCER:
            raise self._closed_error(_SHM_PRODUCER)
        if type(data) is bytes:
            return self._put_raw(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), timeout)
        _shm_get_buffer(data, &view, "data", False)
        try:
            return self._put_raw(<const char *>view.buf, view.len, timeout)
        finally:
            PyBuffer_Release(&view)

    def put_many(self, messages):
        """Copy as many leading messages as fit, publish them once, and return how many were put.

        Producer only; never waits. Every message is checked first (``TypeError`` or ``ValueError``
        as for ``put``, and then nothing is written), so the count is exact. One position store
        publishes the whole batch, the Disruptor's batching effect.
        """
        cdef Py_ssize_t index, count = 0, length
        cdef Py_buffer view
        cdef uint64_t record
        cdef int64_t offset
        cdef const char *source
        if self._role != _SHM_PRODUCER:
            raise self._closed_error(_SHM_PRODUCER)
        if not isinstance(messages, (list, tuple)):
            raise TypeError(f"messages must be a list or tuple of bytes-like objects, not {type(messages).__name__}")
        items = tuple(messages)  # a stable snapshot: the checks below hold for the copy loop
        count = 0
        for index in range(len(items)):
            data = items[index]
            if type(data) is bytes:
                length = PyBytes_GET_SIZE(data)
            else:
                _shm_get_buffer(data, &view, f"messages[{index}]", False)
                length = view.len
                PyBuffer_Release(&view)
            if <uint64_t>length > self._max_message:
                raise ValueError(f"messages[{index}] is {length} bytes; this ring's max_message is {self._max_message}")
        self._require(_SHM_PRODUCER)
        try:
            for index in range(len(items)):
                data = items[index]
                if type(data) is bytes:
                    source = PyBytes_AS_STRING(data)
                    length = PyBytes_GET_SIZE(data)
                    record = _record_size(length)
                    offset = self._claim_space(record)
                    if offset < 0:
                        break
                    (<uint64_t *>(self._data + offset))[0] = <uint64_t>length
                    memcpy(self._data + offset + 8, source, length)
                else:
                    _shm_get_buffer(data, &view, f"messages[{index}]", False)
                    try:
                        self._require(_SHM_PRODUCER)
                        length = view.len
                        if <uint64_t>length > self._max_message:  # the object changed size since the check
                            raise ValueError(f"messages[{index}] is {length} bytes; this ring's max_message is {self._max_message}")
                        record = _record_size(length)
                        offset = self._claim_space(record)
                        if offset >= 0:
                            (<uint64_t *>(self._data + offset))[0] = <uint64_t>length
                            memcpy(self._data + offset + 8, view.buf, length)
                    finally:
                        PyBuffer_Release(&view)
                    if offset < 0:
                        break
                self._pos += record
                count += 1
        finally:
            if count and self._role == _SHM_PRODUCER:
                lowlat_shm_store_release(self._producer_position, self._pos)
        return count

    # -- consumer ---------------------------------------------------------------------------------

    cdef int64_t _next(self) except -2:
        # Return the offset of the next message (its length in self._length), or -1 when empty.
        # The producer's position is read from its shared line only when the cache says empty.
        cdef uint64_t pos = self._pos
        cdef uint64_t produced, offset, length, skip, record
        while True:
            if pos == self._cached:
                produced = lowlat_shm_load_acquire(self._producer_position)
                if produced - pos > self._capacity or produced & 7:
                    self._pos = pos
                    raise _layout.corrupt(f"producer position {produced} is out of range (consumer at {pos})")
                self._cached = produced
                if produced == pos:
                    self._pos = pos
                    return -1
            offset = pos & self._mask
            length = (<const uint64_t *>(self._data + offset))[0]
            if length == _SHM_PADDING:
                skip = self._capacity - offset
                if skip > self._cached - pos:
                    self._pos = pos
                    raise _layout.corrupt(f"padding at offset {offset} runs past the published data")
                pos += skip
                continue
            if length > self._max_message:
                self._pos = pos
                raise _layout.corrupt(
                    f"message length {length} at offset {offset} exceeds max_message {self._max_message}"
                )
            record = _record_size(length)
            if record > self._cached - pos or offset + record > self._capacity:
                self._pos = pos
                raise _layout.corrupt(f"message at offset {offset} runs past the published data")
            self._pos = pos
            self._length = length
            return <int64_t>offset

    cdef int64_t _wait_message(self, int64_t budget_ns) except -2:
        cdef _ShmWaiter waiter
        cdef int64_t offset
        cdef bint moved
        cdef uint64_t seen
        cdef const uint64_t *position = self._producer_position
        cdef const int *closing = &self._closing
        _shm_waiter_init(&waiter, self._strategy, budget_ns)
        while True:
            seen = self._cached
            self._waiters += 1
            with nogil:
                moved = _shm_wait_change(position, seen, &waiter, closing)
            self._waiters -= 1
            self._require(_SHM_CONSUMER)
            offset = self._next()
            if offset >= 0 or not moved:
                return offset
            PyErr_CheckSignals()
            self._require(_SHM_CONSUMER)

    cdef int64_t _next_or_wait(self, object timeout) except -2:
        cdef int64_t budget = _shm_budget(timeout)
        cdef int64_t offset
        self._require(_SHM_CONSUMER)
        offset = self._next()
        if offset >= 0 or budget == 0:
            return offset
        return self._wait_message(budget)

    cdef inline void _consume(self) noexcept:
        self._pos += _record_size(self._length)
        # Hand the space back: the release store orders our reads of the record before it.
        lowlat_shm_store_release(self._consumer_position, self._pos)

    def get(self, timeout=None):
        """Remove the oldest message and return it as ``bytes``; None when there is none.

        Consumer only. When the ring is empty, return None at once (``timeout=None`` or 0), or wait
        up to ``timeout`` seconds (``float('inf')``: forever) with the ring's wait strategy.
        Allocates the returned bytes; ``get_into`` does not. O(message length).
        """
        if self._role != _SHM_CONSUMER:
            raise self._closed_error(_SHM_CONSUMER)
        cdef int64_t offset = self._next_or_wait(timeout)
        if offset < 0:
            return None
        message = PyBytes_FromStringAndSize(self._data + offset + 8, <Py_ssize_t>self._length)
        self._consume()
        return message

    def get_into(self, buffer, timeout=None):
        """Copy the oldest message into ``buffer``, remove it, and return its length; -1 when empty.

        Consumer only; allocates nothing. ``buffer`` is a writable C-contiguous bytes-like object
        (``TypeError`` otherwise); its first ``length`` bytes are overwritten. If the next message
        is longer than ``buffer``, raise ``ValueError`` and leave the message in the ring. Waits
        like ``get`` when ``timeout`` is given.
        """
        cdef Py_buffer view
        cdef int64_t offset
        cdef Py_ssize_t length
        if self._role != _SHM_CONSUMER:
            raise self._closed_error(_SHM_CONSUMER)
        _shm_get_buffer(buffer, &view, "buffer", True)
        try:
            offset = self._next_or_wait(timeout)
            if offset < 0:
                return -1
            length = <Py_ssize_t>self._length
            if length > view.len:
                raise ValueError(f"buffer has {view.len} bytes; the next message has {length} (left in the ring)")
            memcpy(view.buf, self._data + offset + 8, length)
            self._consume()
            return length
        finally:
            PyBuffer_Release(&view)

    def get_many(self, max_messages=None):
        """Remove up to ``max_messages`` messages (all that are published when None) and return them.

        Consumer only; never waits (an empty list when the ring is empty). With None the call still
        ends: it takes at most one ring's worth even if the producer keeps publishing. The consumer
        position is stored once for the whole batch.
        """
        cdef Py_ssize_t limit = -1, taken = 0
        cdef int64_t offset
        if self._role != _SHM_CONSUMER:
            raise self._closed_error(_SHM_CONSUMER)
        if max_messages is not None:
            requested = _layout.as_int(max_messages, "max_messages")
            if requested < 0:
                raise ValueError(f"max_messages must be >= 0 or None, got {requested}")
            limit = min(requested, self._capacity)  # no more messages than 8-byte records fit
        messages = []
        self._require(_SHM_CONSUMER)
        cdef uint64_t start = self._pos
        try:
            # None: what is published, but never more than one ring's worth (a bounded call).
            while (taken < limit) if limit >= 0 else (self._pos - start < self._capacity):
                offset = self._next()
                if offset < 0:
                    break
                messages.append(PyBytes_FromStringAndSize(self._data + offset + 8, <Py_ssize_t>self._length))
                self._pos += _record_size(self._length)
                taken += 1
        finally:
            if taken:
                lowlat_shm_store_release(self._consumer_position, self._pos)
        return messages


@cython.final
@cython.auto_pickle(False)
cdef class ShmRecordRing(_ShmSegment):
    """ShmRecordRing(*args, **kwargs)
--

A single-producer single-consumer ring of fixed-size numpy records in shared memory.

    ``RecordRing``'s interface across processes: the producer ``write``s whole arrays (or
    ``push``es one record), the consumer ``read``s them back in order as new arrays (or
    ``read_into`` its own, or ``pop``s one). The dtype is recorded in the segment's header, so
    ``attach`` rebuilds it. Batches are copied with at most two block copies and published once.
    """

    cdef object _dtype
    cdef Py_ssize_t _itemsize
    cdef object _stamp_name  # the last ``push(stamp=)`` field name checked, and its offset
    cdef Py_ssize_t _stamp_at
    cdef object _out_descr  # the last ``read_into`` dtype found equal to ours (checked once)

    def __init__(self, *args, **kwargs):
        raise TypeError(f"use {type(self).__name__}.create() or {type(self).__name__}.attach() to make one")

    @classmethod
    def create(cls, dtype, capacity, name=None, *, role="producer"):
        """Create a record ring segment for ``capacity`` records of ``dtype``; return its ``role`` end.

        ``capacity`` is rounded up to a power of two (1 to 2**30). ``dtype`` is any numpy dtype
        without Python objects (``TypeError`` otherwise). Naming and permissions as for
        ``ShmRing.create``.
        """
        code = _layout.role_code(role)
        record_dtype = _layout.record_dtype_of(dtype)
        records = _layout.record_capacity_of(capacity)
        descriptor = _layout.encode_dtype(record_dtype)
        # Positive operands only: the module may be compiled with cdivision=True (C division).
        header_size = _SHM_BASE_HEADER + (len(descriptor) + 127) // 128 * 128
        shm = _layout.open_segment(name, True, header_size + records * record_dtype.itemsize)
        cdef ShmRecordRing ring
        try:
            _layout.write_header(shm.buf, _layout.KIND_RECORDS, header_size, records, record_dtype.itemsize, descriptor)
            ring = ShmRecordRing.__new__(ShmRecordRing)
            ring._setup(shm, code, False, None)
        except BaseException:
            shm.close()
            _layout.unlink_segment(_layout.segment_name(shm))
            raise
        return ring

    @classmethod
    def attach(cls, name, role="consumer", *, dtype=None, force=False):
        """Open the record ring segment ``name`` and return its ``role`` end.

        The dtype is rebuilt from the header; if ``dtype`` is given and differs, raise ``TypeError``.
        Other errors and ``force`` as for ``ShmRing.attach``.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        code = _layout.role_code(role)
        expected = None if dtype is None else _layout.record_dtype_of(dtype)
        shm = _layout.open_segment(name, False)
        cdef ShmRecordRing ring
        try:
            ring = ShmRecordRing.__new__(ShmRecordRing)
            ring._setup(shm, code, bool(force), expected)
        except BaseException:
            shm.close()
            raise
        return ring

    cdef int _setup(self, object shm, int role, bint force, object expected) except -1:
        header_size, capacity, itemsize, descriptor = _layout.read_header(shm, _layout.KIND_RECORDS)
        self._name = _layout.segment_name(shm)
        dtype = _layout.decode_dtype(descriptor)
        if dtype.itemsize != itemsize or dtype.hasobject:
            raise ValueError(f"segment {self._name!r} is inconsistent: dtype {dtype} does not match itemsize {itemsize}")
        if expected is not None and expected != dtype:
            raise TypeError(f"segment {self._name!r} holds records of dtype {dtype}, not {expected}")
        self._dtype = dtype
        self._itemsize = itemsize
        self._capacity = capacity
        self._mask = self._capacity - 1
        try:
            self._map(shm, role, force, "ShmRecordRing", header_size + capacity * itemsize)
            self._data = self._base + <Py_ssize_t>header_size
            if role == _SHM_PRODUCER:
                self._pos = lowlat_shm_load_acquire(self._producer_position)
                self._cached = lowlat_shm_load_acquire(self._consumer_position)
                if self._pos - self._cached > self._capacity:
                    raise _layout.corrupt("positions out of range")
            else:
                self._pos = lowlat_shm_load_acquire(self._consumer_position)
                self._cached = lowlat_shm_load_acquire(self._producer_position)
                if self._cached - self._pos > self._capacity:
                    raise _layout.corrupt("positions out of range")
        except BaseException:
            self._unmap_on_error()
            self._shm = None
            raise
        return 0

    @property
    def capacity(self):
        """How many records the ring holds (a power of two)."""
        return self._capacity

    @property
    def dtype(self):
        """The dtype of the records, as recorded in the segment."""
        return self._dtype

    def __repr__(self):
        state = "closed" if self._shm is None else "open"
        return (
            f"<ShmRecordRing {self._name!r} {_layout.ROLE_NAMES[self._role_held]} dtype={self._dtype} "
            f"capacity={self._capacity} {state}>"
        )

    def __len__(self):
        """Return how many records are published and not yet consumed (a snapshot; either end)."""
        if self._shm is None:
            raise ValueError(f"ShmRecordRing {self._name!r} is closed")
        cdef uint64_t consumed = lowlat_shm_load_acquire(self._consumer_position)
        cdef uint64_t produced = lowlat_shm_load_acquire(self._producer_position)
        if produced - consumed > self._capacity:
            raise _layout.corrupt(f"positions out of range (producer {produced}, consumer {consumed})")
        return produced - consumed

    # -- producer ---------------------------------------------------------------------------------

    cdef uint64_t _free(self, uint64_t wanted) except? 0xFFFFFFFFFFFFFFFF:
        # How many records fit now; the consumer's line is read only when the cache says too few.
        cdef uint64_t consumed
        if self._capacity - (self._pos - self._cached) < wanted:
            consumed = lowlat_shm_load_acquire(self._consumer_position)
            if self._pos - consumed > self._capacity:
                raise _layout.corrupt(f"consumer position {consumed} is out of range (producer at {self._pos})")
            self._cached = consumed
        return self._capacity - (self._pos - self._cached)

    cdef void _copy_in(self, const char *source, uint64_t count) noexcept:
        cdef uint64_t offset = self._pos & self._mask
        cdef uint64_t first = min(count, self._capacity - offset)
        memcpy(self._data + offset * self._itemsize, source, first * self._itemsize)
        if count > first:
            memcpy(self._data, source + first * self._itemsize, (count - first) * self._itemsize)
        self._pos += count
        lowlat_shm_store_release(self._producer_position, self._pos)

    def push(self, record, stamp=None):
        """Copy one record (anything ``numpy.asarray(record, dtype)`` accepts) into the ring.

        Producer only. Return False when the ring is full. O(itemsize). ``stamp`` names an int64
        field (``TypeError``/``ValueError`` otherwise, even when full) that is set, in the ring's
        copy only, to ``time.perf_counter_ns()`` (CLOCK_MONOTONIC, ``lowlat.now_ns``'s clock) as
        the last write before the record is published: a publish time that leaves out the
        conversion of ``record``, so the consumer can measure the hop through the ring alone.
        """
        cdef Py_buffer view
        cdef Py_ssize_t stamp_at = -1
        cdef int64_t now
        cdef char *slot
        if self._role != _SHM_PRODUCER:
            raise self._closed_error(_SHM_PRODUCER)
        if stamp is not None:
            if stamp is not self._stamp_name:
                self._stamp_at = _layout.stamp_offset(self._dtype, stamp)
                self._stamp_name = stamp
            stamp_at = self._stamp_at
        value = _shm_np.asarray(record, dtype=self._dtype)
        if value.ndim != 0:
            raise ValueError(f"record must be a single record of dtype {self._dtype}, got shape {value.shape}")
        self._require(_SHM_PRODUCER)
        if self._free(1) == 0:
            return False
        PyObject_GetBuffer(value, &view, PyBUF_SIMPLE)
        try:
            if view.len != self._itemsize:
                raise ValueError(f"record converted to {view.len} bytes, expected {self._itemsize}")
            if stamp_at < 0:
                self._copy_in(<const char *>view.buf, 1)
            else:
                # One record never wraps; the stamp is the last write before the release store, so
                # the time between it and the consumer's load is the ring's alone.
                slot = self._data + (self._pos & self._mask) * self._itemsize
                memcpy(slot, view.buf, self._itemsize)
                now = _now()
                memcpy(slot + stamp_at, &now, 8)
                self._pos += 1
                lowlat_shm_store_release(self._producer_position, self._pos)
        finally:
            PyBuffer_Release(&view)
        return True

    def write(self, array):
        """Copy as many leading records of ``array`` as fit, publish them once, and return how many.

        Producer only; never waits. ``array`` must be a one-dimensional ``numpy.ndarray`` of this
        ring's dtype (another dtype: ``TypeError``). At most two block copies. O(records copied).
        """
        cdef Py_buffer view
        cdef uint64_t count
        if self._role != _SHM_PRODUCER:
            raise self._closed_error(_SHM_PRODUCER)
        # Size, dtype and contiguity come from the array's C struct (an exact ndarray, or the plain
        # view _layout.real_array makes of a subclass), never from properties a subclass overrides.
        if type(array) is not _shm_np.ndarray:
            array = _layout.real_array(array, "array", self._dtype)
        dtype = array.dtype
        if dtype is not self._dtype and dtype != self._dtype:
            raise TypeError(f"array must have dtype {self._dtype}, got {dtype}")
        if array.ndim != 1:
            raise ValueError(f"array must be one-dimensional, got {array.ndim} dimensions")
        count = len(array)
        self._require(_SHM_PRODUCER)
        count = min(count, self._free(count))
        if count == 0:
            return 0
        if not array.flags.c_contiguous:
            array = _shm_np.ascontiguousarray(array[:count])
        PyObject_GetBuffer(array, &view, PyBUF_SIMPLE)
        try:
            self._require(_SHM_PRODUCER)
            if <uint64_t>view.len < count * <uint64_t>self._itemsize:
                raise ValueError("array's buffer is shorter than its shape says")
            self._copy_in(<const char *>view.buf, count)
        finally:
            PyBuffer_Release(&view)
        return count

    # -- consumer ---------------------------------------------------------------------------------

    cdef uint64_t _available(self, uint64_t wanted) except? 0xFFFFFFFFFFFFFFFF:
        # How many records are readable now; the producer's line is read only when the cache says too few.
        cdef uint64_t produced
        if self._cached - self._pos < wanted:
            produced = lowlat_shm_load_acquire(self._producer_position)
            if produced - self._pos > self._capacity:
                raise _layout.corrupt(f"producer position {produced} is out of range (consumer at {self._pos})")
            self._cached = produced
        return self._cached - self._pos

    cdef void _copy_out(self, char *target, uint64_t count) noexcept:
        cdef uint64_t offset = self._pos & self._mask
        cdef uint64_t first = min(count, self._capacity - offset)
        memcpy(target, self._data + offset * self._itemsize, first * self._itemsize)
        if count > first:
            memcpy(target + first * self._itemsize, self._data, (count - first) * self._itemsize)
        self._pos += count
        lowlat_shm_store_release(self._consumer_position, self._pos)

    cdef object _take(self, uint64_t count):
        cdef Py_buffer view
        out = _shm_np.empty(count, dtype=self._dtype)
        if count:
            PyObject_GetBuffer(out, &view, PyBUF_WRITABLE)
            try:
                self._require(_SHM_CONSUMER)
                self._copy_out(<char *>view.buf, count)
            finally:
                PyBuffer_Release(&view)
        return out

    def pop(self, default=None):
        """Remove the oldest record and return it (a numpy scalar, or a copied ``numpy.void``).

        Consumer only. Return ``default`` when the ring is empty.
        """
        if self._role != _SHM_CONSUMER:
            raise self._closed_error(_SHM_CONSUMER)
        if self._available(1) == 0:
            return default
        return self._take(1)[0]

    def read(self, max_records=None):
        """Remove up to ``max_records`` records (all published ones when None); return them as a new array.

        Consumer only; never waits (an empty array when the ring is empty). Oldest first.
        """
        cdef uint64_t available
        if self._role != _SHM_CONSUMER:
            raise self._closed_error(_SHM_CONSUMER)
        cdef uint64_t limit = self._capacity
        if max_records is not None:
            requested = _layout.as_int(max_records, "max_records")
            if requested < 0:
                raise ValueError(f"max_records must be >= 0 or None, got {requested}")
            limit = min(requested, self._capacity)
        self._require(_SHM_CONSUMER)
        available = min(self._available(limit), limit)
        return self._take(available)

    cdef uint64_t _wait_records(self, int64_t budget_ns) except? 0xFFFFFFFFFFFFFFFF:
        # Spin (without the GIL, checking for signals every slice) until the producer publishes or
        # the budget runs out; return how many records are readable then.
        cdef _ShmWaiter waiter
        cdef bint moved
        cdef uint64_t seen, available
        cdef const uint64_t *position = self._producer_position
        cdef const int *closing = &self._closing
        _shm_waiter_init(&waiter, _SHM_WAIT_SPIN, budget_ns)
        while True:
            seen = self._cached
            self._waiters += 1
            with nogil:
                moved = _shm_wait_change(position, seen, &waiter, closing)
            self._waiters -= 1
            self._require(_SHM_CONSUMER)
            available = self._available(1)
            if available or not moved:
                return available
            PyErr_CheckSignals()
            self._require(_SHM_CONSUMER)

    cdef cnp.ndarray _checked_out(self, object out):
        # The array's C struct decides (type, descr, ndim, flags), never attributes a subclass
        # overrides; anything that fails the fast check gets the shared check's error.
        cdef cnp.ndarray array
        if type(out) is not _shm_np.ndarray:
            out = _layout.real_array(out, "out", self._dtype)
        array = <cnp.ndarray>out
        descr = <object>cnp.PyArray_DESCR(array)
        if descr is not self._dtype and descr is not self._out_descr:
            if descr != self._dtype:
                raise TypeError(f"out must have dtype {self._dtype}, got {descr}")
            self._out_descr = descr
        if cnp.PyArray_ITEMSIZE(array) != self._itemsize:  # equal dtypes, so never; the copy relies on it
            raise TypeError(f"out must have dtype {self._dtype}, got {descr}")
        if cnp.PyArray_NDIM(array) != 1:
            raise ValueError(f"out must be one-dimensional, got {cnp.PyArray_NDIM(array)} dimensions")
        if not cnp.PyArray_ISWRITEABLE(array):
            raise ValueError("out must be writable")
        return array

    def read_into(self, out, timeout=None):
        """Move up to ``len(out)`` records into ``out`` (oldest first) and return how many.

        Consumer only. ``out`` must be a writable one-dimensional ``numpy.ndarray`` of this ring's
        dtype (another dtype: ``TypeError``; other shapes or read-only: ``ValueError``), as for
        ``RecordRing.read_into``; a C-contiguous ``out`` is filled in place with nothing allocated,
        a strided one (``a[::2]``) through one temporary array. When the ring is empty, return 0 at
        once (``timeout=None`` or 0), or busy-spin up to ``timeout`` seconds (``float('inf')``:
        forever) for the first record, then move what is there: the waiting loop runs inside the
        call (in C, without the GIL, in the compiled backend), so a record is seen within a few
        polls of its publication instead of a Python loop's turn.
        """
        cdef cnp.ndarray array
        cdef uint64_t count
        cdef int64_t budget
        if self._role != _SHM_CONSUMER:
            raise self._closed_error(_SHM_CONSUMER)
        budget = _shm_budget(timeout)
        array = self._checked_out(out)
        if not cnp.PyArray_IS_C_CONTIGUOUS(array):
            staged = _shm_np.empty(cnp.PyArray_DIM(array, 0), dtype=self._dtype)
            count = self.read_into(staged, timeout)
            array[:count] = staged[:count]
            return count
        count = <uint64_t>cnp.PyArray_DIM(array, 0)
        self._require(_SHM_CONSUMER)
        count = min(count, self._available(count))
        if count == 0:
            if budget == 0 or cnp.PyArray_DIM(array, 0) == 0:
                return 0
            if self._wait_records(budget) == 0:
                return 0
            # Another thread may have reshaped ``out`` while this one waited without the GIL.
            array = self._checked_out(array)
            if not cnp.PyArray_IS_C_CONTIGUOUS(array):
                raise ValueError("out was reshaped while read_into waited")
            count = <uint64_t>cnp.PyArray_DIM(array, 0)
            count = min(count, self._available(count))
            if count == 0:
                return 0
        # A C-contiguous base ndarray of our dtype: its data pointer spans dims[0] * itemsize bytes.
        self._copy_out(<char *>cnp.PyArray_DATA(array), count)
        return count
