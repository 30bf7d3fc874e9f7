# cython: language_level=3, binding=False
# cython: embedsignature=True, embedsignature.format=clinic
# cython: cdivision=True, boundscheck=False, wraparound=False
"""The compiled half of :mod:`lowlat.wire`: the twin of :mod:`lowlat.wire._py` (same names, signatures,
errors), which is the layered path of :mod:`lowlat.net` (:mod:`lowlat.wire.layered`).

One call per order and one per answer instead of the layers' dozen Python frames:

* ``send_order`` takes the session lock, frames the Unsequenced Data packet in a stack buffer and
  calls ``send`` on the socket's descriptor under the transport's send lock (a partial write is
  finished by ``Transport._send_rest``, still under that lock: two messages never interleave).
* ``wait_for`` waits in the connection's own mode -- a blocking ``recv`` bounded by
  ``SO_RCVTIMEO`` (selector mode on Linux), or a spin on a non-blocking ``recv`` (busy poll) -- with
  the GIL released, into a stack buffer; when what arrived is whole Sequenced Data and Server
  Heartbeat packets and no heartbeat is due, it counts their sequence numbers, decodes each answer
  with the session's ``_decode`` and returns the one waited for, leaving the rest where the layers
  would (later packets in the connection's inbox, other answers in ``session.messages``).
  Anything else goes to :func:`lowlat.wire.layered.resume` with what ``recv`` returned.

Every object is read from the session afresh after any call that can run Python (a lock acquire,
a decode), and the socket's descriptor is read from the socket object each time (-1 once closed).
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport memcpy

from lowlat._clock cimport monotonic_ns

cdef extern from *:
    """
    #include <sys/socket.h>
    #include <sys/time.h>
    #include <errno.h>
    #ifndef EWOULDBLOCK
    #define EWOULDBLOCK EAGAIN
    #endif
    #ifndef MSG_NOSIGNAL
    #define MSG_NOSIGNAL 0
    #endif
    #ifndef MSG_DONTWAIT
    #define MSG_DONTWAIT 0
    #endif
    static int lowlat_set_rcvtimeo(int fd, double seconds) {
        struct timeval tv;
        long long micros = (long long)(seconds * 1000000.0);
        if (micros < 1) micros = 1;  /* 0 would mean forever */
        tv.tv_sec = (long)(micros / 1000000);
        tv.tv_usec = (long)(micros % 1000000);
        return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    """
    ssize_t c_send "send"(int fd, const void *buf, size_t n, int flags) nogil
    ssize_t c_recv "recv"(int fd, void *buf, size_t n, int flags) nogil
    int lowlat_set_rcvtimeo(int fd, double seconds) nogil
    int MSG_NOSIGNAL
    int MSG_DONTWAIT
    int EWOULDBLOCK

__all__ = ["Checkout", "enter_order", "send_order", "wait_for"]

cdef enum:
    RECV_SIZE = 65536  # what Transport reads at once
    SEND_SIZE = 512  # the largest packet framed here; longer ones take the layered path
    KIND_S = 0x53  # b"S": Sequenced Data
    KIND_H = 0x48  # b"H": Server Heartbeat
    KIND_U = 0x55  # b"U": Unsequenced Data

cdef double MAX_RCVTIMEO = 0.25  # connection._MAX_RCVTIMEO: a blocked recv looks at the clock this often
cdef double SPIN_SLICE = 0.01  # a spinning recv takes the GIL back this often, for signals
cdef double SEND_TIMEOUT = 5.0  # Transport.send's default

# Bound on first use: lowlat.net imports this module while it is being imported itself.
cdef object _ACTIVE = None
cdef object _SequencedData = None
cdef object _ConnectionLost = None
cdef object _layered = None
cdef object _encode_enter_order = None


cdef int _bind() except -1:
    global _ACTIVE, _SequencedData, _ConnectionLost, _layered, _encode_enter_order
    from lowlat import ouch
    from lowlat.net import connection, soupbintcp
    from lowlat.wire import layered
    _encode_enter_order = ouch.encode_enter_order
    _SequencedData = soupbintcp.SequencedData
    _ConnectionLost = connection.ConnectionLost
    _layered = layered
    _ACTIVE = soupbintcp.SessionState.ACTIVE
    return 0


cdef inline double _monotonic() noexcept nogil:
    return <double>monotonic_ns() * 1e-9


@cython.final
cdef class _Route:
    """What the order path uses of one session, looked up once: the objects its ``__init__`` sets
    and nothing replaces (the connection, its client, lock and inbox, the pending dict, the answer
    list and record), the bound methods it calls on them, and those of the connection's current
    transport (looked up again whenever ``connection.transport`` is another object)."""

    cdef object connection, client, reader_buffer, inbox, pending, messages, record
    cdef object lock_acquire, lock_release
    cdef object transport, send_acquire, send_release, fileno
    cdef bint kernel_wait, busy_poll


cdef _Route _route_of(session):
    cdef _Route fresh
    route = getattr(session, "_route", None)
    if type(route) is _Route:
        return <_Route>route
    fresh = _Route.__new__(_Route)
    connection = session.connection
    fresh.connection = connection
    fresh.client = connection.client
    fresh.reader_buffer = connection.client._reader._buffer
    fresh.inbox = connection.inbox
    fresh.pending = session.pending
    fresh.messages = session.messages
    fresh.record = session._record
    lock = connection._lock
    fresh.lock_acquire = lock.acquire
    fresh.lock_release = lock.release
    try:
        session._route = fresh
    except AttributeError:  # a session that cannot keep it: looked up again next time
        pass
    return fresh


cdef inline object _transport_of(_Route route):
    """The connection's transport now (None when closed), its methods looked up when it changed."""
    transport = route.connection.transport
    if transport is not route.transport:
        if transport is not None:
            send_lock = transport._send_lock
            route.send_acquire = send_lock.acquire
            route.send_release = send_lock.release
            route.fileno = transport.sock.fileno
            route.kernel_wait = transport._kernel_wait
            route.busy_poll = transport.busy_poll
        route.transport = transport
    return transport


@cython.binding(True)
def enter_order(session, token, side, shares, stock, price, *, time_in_force=99999, firm="", display="Y",
                capacity="A", intermarket_sweep="N", minimum_quantity=0, cross_type="N", customer_type=" "):
    """Send Enter Order; ``price`` is an int with 4 implied decimals (:func:`~lowlat.net.ouch.price_to_int`);
    ``time_in_force`` 99999 is ``TIF_SYSTEM_HOURS``. Field errors are ``lowlat.ouch``'s
    (``TypeError``/``ValueError`` naming the field). ``OuchSession.enter_order`` is this function."""
    if _ACTIVE is None:
        _bind()
    buffer = session._enter
    _encode_enter_order(buffer, 0, token, side, shares, stock, price, time_in_force, firm, display, capacity,
                        intermarket_sweep, minimum_quantity, cross_type, customer_type)
    _send_order(session, "O", token, bytes(buffer))


def send_order(session, kind, token, payload):
    """Record ``payload`` as pending under ``(kind, token)`` (before its bytes: a failed send is
    pending), then send it as Unsequenced Data on ``session.connection``; a ``ConnectionLost``
    carries ``unacknowledged``."""
    if _ACTIVE is None:
        _bind()
    _send_order(session, kind, token, payload)


cdef int _send_order(session, kind, token, payload) except -1:
    cdef char packet[SEND_SIZE]
    cdef Py_ssize_t size, total, sent
    cdef const char *raw
    cdef int saved
    cdef _Route route
    if type(payload) is not bytes or len(payload) > SEND_SIZE - 3:
        _layered.send_order(session, kind, token, payload)
        return 0
    route = _route_of(session)
    client = route.client
    if _transport_of(route) is None or client.state is not _ACTIVE:
        _layered.send_order(session, kind, token, payload)  # its errors, not ours
        return 0
    route.pending[(kind, token)] = payload
    route.lock_acquire()
    try:
        transport = _transport_of(route)  # again: the acquire may have let another thread close it
        if transport is None or client.state is not _ACTIVE:
            transport = None  # the layered path, outside the lock, raises what it raises
        else:
            client.last_sent = _monotonic()
            size = len(payload)
            total = size + 3
            packet[0] = <char>((size + 1) >> 8)
            packet[1] = <char>((size + 1) & 0xFF)
            packet[2] = <char>KIND_U
            raw = payload
            memcpy(&packet[3], raw, size)
            release = route.send_release  # the lock taken is the one released, whatever happens meanwhile
            route.send_acquire()
            try:
                sent = c_send(route.fileno(), packet, total, MSG_DONTWAIT | MSG_NOSIGNAL)
                if sent != total:
                    if sent < 0:
                        saved = errno
                        if saved != EAGAIN and saved != EWOULDBLOCK and saved != EINTR:
                            error = OSError(saved, _strerror(saved))
                            raise _ConnectionLost(f"send failed: {error}") from error
                        sent = 0
                    transport._send_rest(PyBytes_FromStringAndSize(packet, total), sent, SEND_TIMEOUT)
            finally:
                release()
    except BaseException as error:
        if isinstance(error, _ConnectionLost):  # SoupConnection.send closes, send_order says what was lost
            route.connection.close()
            error.unacknowledged = session.unacknowledged()
        raise
    finally:
        route.lock_release()
    if transport is None:
        _layered.send_order(session, kind, token, payload)
    return 0


cdef dict _decode(_Route route, bytes payload):
    """``OuchSession._decode``: the answer as a dict, and the pending order it answers cleared."""
    record = route.record
    record.decode(payload)
    message = record.as_dict()
    pending = route.pending
    if pending:
        kind = message["type"]
        if kind == "A":
            pending.pop(("O", message["order_token"]), None)
        elif kind == "J":
            if pending.pop(("O", message["order_token"]), None) is None:
                pending.pop(("U", message["order_token"]), None)
        elif kind == "U":
            pending.pop(("U", message["replacement_order_token"]), None)
        elif kind == "C":
            pending.pop(("X", message["order_token"]), None)
        elif kind == "M":
            pending.pop(("M", message["order_token"]), None)
    return message


cdef str _strerror(int number):
    import os
    return os.strerror(number)


cdef Py_ssize_t _receive(object transport, int fd, char *buffer, double deadline, bint spin) except -3:
    """One wait in the connection's mode: bytes read (> 0), 0 for a closed peer, -1 when nothing
    came by ``deadline``, -2 for an error (``errno`` says which)."""
    cdef Py_ssize_t n
    cdef double remaining, wait, stint
    cdef int saved
    while True:
        if spin:
            stint = _monotonic() + SPIN_SLICE
            if stint > deadline:
                stint = deadline
            with nogil:
                while True:
                    n = c_recv(fd, buffer, RECV_SIZE, MSG_DONTWAIT)
                    if n >= 0 or (errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR):
                        break
                    if _monotonic() >= stint:
                        break
            if n >= 0:
                return n
            if errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                return -2
            PyErr_CheckSignals()  # a handler's exception propagates from here
            if _monotonic() >= deadline:
                return -1
            continue
        remaining = deadline - _monotonic()
        if remaining <= 0:
            n = c_recv(fd, buffer, RECV_SIZE, MSG_DONTWAIT)
        else:
            wait = remaining if remaining < MAX_RCVTIMEO else MAX_RCVTIMEO
            set_to = transport._rcvtimeo
            if wait < set_to or wait > 2 * set_to:  # else the one set will do
                if lowlat_set_rcvtimeo(fd, wait) < 0:
                    return -2
                transport._rcvtimeo = wait
            with nogil:
                n = c_recv(fd, buffer, RECV_SIZE, 0)
        if n >= 0:
            return n
        saved = errno
        if saved == EINTR:
            PyErr_CheckSignals()
            continue
        if saved == EAGAIN or saved == EWOULDBLOCK:
            if remaining <= 0:
                return -1
            continue
        return -2  # errno is still ``saved``: nothing ran since


cdef bint _simple(const unsigned char *data, Py_ssize_t size) noexcept nogil:
    """Whole Sequenced Data and (empty) Server Heartbeat packets, nothing else."""
    cdef Py_ssize_t position = 0, length
    cdef unsigned char kind
    while position < size:
        if size - position < 3:
            return False
        length = (<Py_ssize_t>data[position] << 8) | data[position + 1]
        kind = data[position + 2]
        if length == 0 or position + 2 + length > size:
            return False
        if not (kind == KIND_S or (kind == KIND_H and length == 1)):
            return False
        position += 2 + length
    return True


@cython.binding(True)
def wait_for(session, token, types="AJUC", timeout=5.0):
    """Return the first answer for ``token`` (its order token, or a Replaced's replacement token)
    whose type is in ``types``, as a dict; other answers are kept for ``receive``. ``TimeoutError``
    after ``timeout`` seconds, ``ConnectionLost`` (with ``unacknowledged``) when the connection
    died. ``OuchSession.wait_for`` is this function."""
    cdef char buffer[RECV_SIZE]
    cdef const unsigned char *data = <const unsigned char *>buffer
    cdef double deadline, now, due, until
    cdef Py_ssize_t n, position, length, count, index
    cdef bint spin
    cdef int fd, saved
    cdef _Route route
    if _ACTIVE is None:
        _bind()
    route = _route_of(session)
    if route.messages:
        return _layered.wait_for(session, token, types, timeout)
    deadline = _monotonic() + timeout
    connection = route.connection
    client = route.client
    while True:
        if deadline - _monotonic() <= 0:
            raise TimeoutError(f"no {types!r} answer for token {token!r} in {timeout} s")
        transport = _transport_of(route)
        state = client.state
        if (transport is None or route.inbox or connection.ended or state is not _ACTIVE
                or route.reader_buffer or not (route.kernel_wait or route.busy_poll)):
            return _layered.wait_rest(session, token, types, timeout, deadline)
        spin = route.busy_poll
        # SoupConnection.service: wait no later than the session's next timer
        now = _monotonic()
        due = client.last_sent + client.heartbeat_interval
        until = client.last_received + client.timeout
        if until < due:
            due = until
        until = deadline
        if due < until:
            until = due if due > now else now
        fd = route.fileno()
        n = _receive(transport, fd, buffer, until, spin)
        if n == -2:
            saved = errno
            outcome = OSError(saved, _strerror(saved))
            return _layered.resume(session, token, types, timeout, deadline, state, due, outcome)
        if n == -1:
            return _layered.resume(session, token, types, timeout, deadline, state, due, None)
        now = _monotonic()
        if n == 0 or not _simple(data, n) or now >= due or client.state is not state:
            outcome = PyBytes_FromStringAndSize(buffer, n)
            return _layered.resume(session, token, types, timeout, deadline, state, due, outcome)
        # The simple case, as SoupConnection._took and SoupClient would have it: under the session
        # lock, the silence timer and the sequence numbers; then the answers one by one.
        count = 0
        position = 0
        while position < n:
            length = (<Py_ssize_t>data[position] << 8) | data[position + 1]
            if data[position + 2] == KIND_S:
                count += 1
            position += 2 + length
        route.lock_acquire()
        try:
            client.last_received = now
            first = client.next_sequence
            client.next_sequence = first + count
        finally:
            route.lock_release()
        matched = None
        index = 0
        position = 0
        try:
            while position < n:
                length = (<Py_ssize_t>data[position] << 8) | data[position + 1]
                if data[position + 2] == KIND_S:
                    payload = PyBytes_FromStringAndSize(buffer + position + 3, length - 1)
                    if matched is None:
                        message = _decode(route, payload)
                        answered = message.get("order_token")
                        if answered is None:
                            answered = message.get("replacement_order_token")
                        if answered == token and message["type"] in types:
                            matched = message
                        else:
                            route.messages.append(message)
                    else:  # after the answer: left in the inbox, as the layers leave them
                        route.inbox.append(_SequencedData(first + index, payload))
                    index += 1
                position += 2 + length
        except BaseException:
            # a decode failed: the packets after it go to the inbox, as the layers would have them
            position += 2 + length
            index += 1
            while position < n:
                length = (<Py_ssize_t>data[position] << 8) | data[position + 1]
                if data[position + 2] == KIND_S:
                    route.inbox.append(_SequencedData(first + index,
                                                           PyBytes_FromStringAndSize(buffer + position + 3, length - 1)))
                    index += 1
                position += 2 + length
            raise
        if matched is not None:
            return matched


cdef class Checkout:
    """``ConnectionPool.session()``: take a free session on entering the ``with`` block (the pool's
    ``_take`` when none is free), give it back on leaving (the pool's ``_give_back`` unless it is
    alive and still checked out). An ``__exit__`` without its ``__enter__``, or a second one,
    raises ``AttributeError``."""

    cdef object _pool, _timeout, _slot

    def __init__(self, pool, timeout):
        self._pool = pool
        self._timeout = timeout
        self._slot = None

    def __enter__(self):
        pool = self._pool
        lock = pool._lock
        lock.acquire()  # the usual case inline: a free session, taken without further calls
        try:
            if not pool._closed:
                for slot in pool._slots:
                    if slot.state == "idle":
                        slot.state = "busy"
                        self._slot = slot
                        return slot.session
        finally:
            lock.release()
        slot = pool._take(self._timeout)
        self._slot = slot
        return slot.session

    def __exit__(self, *exc):
        slot = self._slot
        self._slot = None
        pool = self._pool
        if slot.session.alive:  # the usual case inline: back to idle (see the pool's _give_back)
            lock = pool._lock
            lock.acquire()
            try:
                if slot.state == "busy":
                    slot.state = "idle"
                    if pool._waiting:
                        pool._condition.notify()
                    return None
            finally:
                lock.release()
        pool._give_back(slot)  # the slot it took: no lookup by session needed
        return None
