"""The shared-memory rings' segment layout, protocol constants and checks, shared by both backends.

Both halves of :mod:`lowlat.shm` (``_c`` compiled, ``_py`` pure) import this module for every
constant, argument check, error message and header read, so either backend can sit at either end
of one segment and they refuse the same things in the same words.
Segment layout (native byte order, every field an aligned unsigned 64-bit word)::

    block 0 (bytes   0..127)  magic "LOWLATRG", layout version, kind (1 = ShmRing, 2 = ShmRecordRing),
                              header size, capacity (bytes, or records), max_message (or itemsize),
                              length of the dtype descriptor, a reserved word (0) -- written once
    block 1 (bytes 128..255)  producer pid, consumer pid                    -- role ownership
    block 2 (bytes 256..383)  producer position                             -- written by the producer only
    block 3 (bytes 384..511)  consumer position                             -- written by the consumer only
    bytes 512..               ShmRecordRing: the dtype descriptor (``repr`` of numpy's ``.npy`` descr)
    header size..             the data area (``capacity`` bytes, or ``capacity * itemsize`` bytes)

Each hot position sits alone on a 128-byte block, because two cores writing neighbouring words of
one cache line (or of the pair the adjacent-line prefetcher fetches together) would steal the line
from each other on every message. Positions are monotonically increasing counters (bytes for
``ShmRing``, records for ``ShmRecordRing``); the offset in the data area is the position modulo the
capacity, and ``producer position - consumer position`` is the amount in flight.

``ShmRing`` records are 8-byte aligned: an 8-byte length word, then the payload, padded to 8 bytes.
A message never straddles the end of the data area: when it would, the producer writes a padding
word (all ones) and the message starts again at offset 0. The producer writes records, then
publishes them by storing its position (release); the consumer loads that position (acquire), reads
the records, then stores its own position (release) to hand the space back. Each side keeps a cached
copy of the other's position and reads the shared line only when the cache says full or empty.

Memory ordering in this pure twin: it writes and reads the positions through a ``memoryview`` cast to
``'Q'``, which CPython turns into one aligned 8-byte ``memcpy`` -- a single load or store on x86-64
and ARM64, so a position is never torn. On x86-64 (total store order) program order then gives the
release/acquire ordering the protocol needs. On ARM64 the hardware may reorder plain stores, so the
pure backend is *not* guaranteed correct across processes there: use the compiled backend (which
issues real acquire/release instructions) on ARM64.
"""

from __future__ import annotations

import ast
import contextlib
import mmap
import os
import re
import secrets
from typing import Any, Iterator, Union

try:  # POSIX only; elsewhere the module imports and opening a segment raises OSError
    import fcntl

    import _posixshmem  # type: ignore[import-not-found]  # shm_open/shm_unlink, as shared_memory uses
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]
    _posixshmem = None

import numpy as np

from .. import _validate
from .._validate import as_int

# A bytes-like object: anything exporting a C-contiguous buffer (bytes, bytearray, memoryview, numpy array).
BytesLike = Union[bytes, bytearray, memoryview, Any]

MAGIC = int.from_bytes(b"LOWLATRG", "little")
VERSION = 1
KIND_BYTES = 1
KIND_RECORDS = 2
KIND_NAMES = {KIND_BYTES: "ShmRing", KIND_RECORDS: "ShmRecordRing"}
BLOCK = 128
BASE_HEADER = 4 * BLOCK
MAX_DESCRIPTOR = 1 << 16
PADDING = (1 << 64) - 1
MIN_CAPACITY_BYTES = 64
MAX_CAPACITY_BYTES = 1 << 40
MAX_CAPACITY_RECORDS = 1 << 30

# Word indices (u64) in the header.
W_MAGIC = 0
W_VERSION = 1
W_KIND = 2
W_HEADER_SIZE = 3
W_CAPACITY = 4
W_MAX_MESSAGE = 5  # ShmRing: longest payload; ShmRecordRing: itemsize
W_DESCRIPTOR_LENGTH = 6
W_PRODUCER_PID = 16
W_CONSUMER_PID = 17
W_PRODUCER_POSITION = 32
W_CONSUMER_POSITION = 48

PRODUCER = 1
CONSUMER = 2
ROLE_NAMES = {PRODUCER: "producer", CONSUMER: "consumer"}
ROLE_SLOTS = {PRODUCER: W_PRODUCER_PID, CONSUMER: W_CONSUMER_PID}

# Wait strategies (the Disruptor's busy-spin, yielding and sleeping strategies): every one polls
# SPIN_POLLS times first; "yield" then yields the CPU between polls; "backoff" yields YIELD_POLLS
# times, then sleeps, doubling from SLEEP_MIN_NS up to SLEEP_MAX_NS.
WAIT_SPIN = 0
WAIT_YIELD = 1
WAIT_BACKOFF = 2
WAIT_STRATEGIES = {"spin": WAIT_SPIN, "yield": WAIT_YIELD, "backoff": WAIT_BACKOFF}
WAIT_NAMES = {code: name for name, code in WAIT_STRATEGIES.items()}
SPIN_POLLS = 2000
YIELD_POLLS = 200
SLEEP_MIN_NS = 10_000
SLEEP_MAX_NS = 1_000_000
FOREVER_NS = 1 << 62


# ---------------------------------------------------------------------------------------------
# Helpers shared with the compiled backend (it imports them): segment handling, argument checks.
# ---------------------------------------------------------------------------------------------


def record_size(length: int) -> int:
    """Return the bytes a ``ShmRing`` message of ``length`` payload bytes takes in the data area.

    Its 8-byte length word, then the payload padded to 8 bytes, so every record (and every length
    word) stays 8-byte aligned.
    """
    return (length + 15) & ~7


def role_code(role: object) -> int:
    """Return the code of ``role`` (``"producer"`` or ``"consumer"``), or raise naming the argument."""
    if not isinstance(role, str):
        raise TypeError(f"role must be 'producer' or 'consumer', not {type(role).__name__}")
    if role == "producer":
        return PRODUCER
    if role == "consumer":
        return CONSUMER
    raise ValueError(f"role must be 'producer' or 'consumer', got {role!r}")


def wait_code(strategy: object) -> int:
    """Return the code of a wait strategy name (``"spin"``, ``"yield"`` or ``"backoff"``)."""
    if not isinstance(strategy, str):
        raise TypeError(f"wait_strategy must be 'spin', 'yield' or 'backoff', not {type(strategy).__name__}")
    try:
        return WAIT_STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"wait_strategy must be 'spin', 'yield' or 'backoff', got {strategy!r}") from None


def timeout_ns(timeout: object) -> int:
    """Return a wait budget in ns: 0 for ``None`` (do not wait), ``FOREVER_NS`` for ``inf``."""
    if timeout is None:
        return 0
    if isinstance(timeout, bool):
        raise TypeError("timeout must be None or a number of seconds, not bool")
    if not isinstance(timeout, (int, float)):
        # A real number (numpy scalars, Fraction, Decimal): it has __float__. Text does not count,
        # although float("1") would parse it.
        if isinstance(timeout, (str, bytes, bytearray)) or not hasattr(type(timeout), "__float__"):
            raise TypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
        timeout = float(timeout)  # type: ignore[arg-type]
    if not timeout >= 0:  # also refuses NaN
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
    if timeout >= FOREVER_NS / 1e9:
        return FOREVER_NS
    return int(timeout * 1e9)


def capacity_bytes_of(value: object) -> int:
    """Return ``capacity_bytes`` rounded up to a power of two, checking its range."""
    number = as_int(value, "capacity_bytes")
    if not MIN_CAPACITY_BYTES <= number <= MAX_CAPACITY_BYTES:
        raise ValueError(f"capacity_bytes must be between {MIN_CAPACITY_BYTES} and 2**40, got {number}")
    return 1 << (number - 1).bit_length()


def max_message_of(value: object, capacity: int) -> int:
    """Return the longest payload allowed: ``capacity // 2 - 8`` by default (so an empty ring always fits one)."""
    limit = capacity // 2 - 8
    if value is None:
        return limit
    number = as_int(value, "max_message")
    if not 0 <= number <= limit:
        raise ValueError(f"max_message must be between 0 and capacity // 2 - 8 = {limit}, got {number}")
    return number


def record_capacity_of(value: object) -> int:
    """Return a record capacity rounded up to a power of two (1 .. 2**30 records)."""
    return _validate.ring_capacity(value, "capacity")


def record_dtype_of(value: object) -> np.dtype:
    """Return ``value`` as a numpy dtype fit for raw copies between processes (no Python objects)."""
    return _validate.record_dtype(value)


def stamp_offset(dtype: np.dtype, stamp: object) -> int:
    """Return the byte offset in a record of ``dtype`` of the field ``stamp`` names (``push(stamp=)``).

    ``stamp`` must be a ``str`` (``TypeError``) naming a field of ``dtype`` (``ValueError``) whose
    type is a native 64-bit signed integer (``TypeError``): the field receives a clock reading in ns.
    """
    if not isinstance(stamp, str):
        raise TypeError(f"stamp must be None or a field name (str), not {type(stamp).__name__}")
    fields = dtype.fields
    if fields is None or stamp not in fields:
        raise ValueError(f"stamp: the records have no field {stamp!r}")
    field_type, offset = fields[stamp][:2]
    if field_type != _STAMP_TYPE:
        raise TypeError(f"stamp: field {stamp!r} must be a native int64 to hold a time in ns, not {field_type}")
    return int(offset)


_STAMP_TYPE = np.dtype(np.int64)


def encode_dtype(dtype: np.dtype) -> bytes:
    """Return the descriptor stored in the header: the ``repr`` of numpy's ``.npy`` descr of ``dtype``."""
    descriptor = repr(np.lib.format.dtype_to_descr(dtype)).encode("ascii")
    if len(descriptor) > MAX_DESCRIPTOR:
        raise ValueError(f"dtype descriptor is too long for the header ({len(descriptor)} > {MAX_DESCRIPTOR} bytes)")
    return descriptor


def decode_dtype(descriptor: bytes) -> np.dtype:
    """Rebuild a dtype from a header descriptor; anything malformed raises ``ValueError``."""
    try:
        return np.lib.format.descr_to_dtype(ast.literal_eval(descriptor.decode("ascii")))
    except Exception as exc:  # a hostile segment may hold anything here
        raise ValueError(f"segment's dtype descriptor is not valid: {exc.__class__.__name__}: {exc}") from None


def pid_alive(pid: int) -> bool:
    """Return whether ``pid`` names a running (not zombie) process."""
    if pid <= 0 or pid >= 1 << 31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        if state in (b"Z", b"X"):  # exited, waiting to be reaped
            return False
    except (OSError, ValueError):
        pass
    return True


def role_refusal(kind: str, role: int, holder: int, force: bool) -> Exception | None:
    """Return the error for a role held by ``holder``, or ``None`` when it may be taken."""
    if holder == 0:
        return None
    if pid_alive(holder):
        return RuntimeError(f"the {ROLE_NAMES[role]} role of this {kind} is held by live process pid {holder}")
    if not force:
        return RuntimeError(
            f"the {ROLE_NAMES[role]} role of this {kind} is held by pid {holder}, which is no longer running; "
            "pass force=True to take it over"
        )
    return None


# Segment names: what POSIX shm_open needs and nothing more. One optional leading "/", then 1 to
# NAME_MAX_BYTES characters from A-Z a-z 0-9 "_" "." "-" (so never a "/", ":", newline, NUL or
# space, which could otherwise smuggle commands into multiprocessing's resource tracker protocol),
# and not "." or ".." (directory entries, not segments). Linux allows 255 bytes (NAME_MAX); other
# systems may refuse shorter names with OSError (macOS: 31).
NAME_MAX_BYTES = 255
_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_.\-]+")
NAME_RULE = (
    f"1 to {NAME_MAX_BYTES} characters from A-Z, a-z, 0-9, '_', '.' and '-' "
    "(after one optional leading '/'), not '.' or '..'"
)


def check_name(name: object) -> str:
    """Return a segment name without its leading ``/``; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")
    bare = name[1:] if name.startswith("/") else name
    if (
        not bare
        or len(bare) > NAME_MAX_BYTES
        or bare in (".", "..")
        or _NAME_CHARACTERS.fullmatch(bare) is None
    ):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ValueError(f"name must be {NAME_RULE}; got {shown!r}")
    return bare


#: The view a closed (or never mapped) ``Mapping`` holds: released, so any use raises ``ValueError``.
_RELEASED = memoryview(b"")
_RELEASED.release()


class Mapping:
    """One process's mapping of a POSIX shared-memory segment: ``buf``, ``size``, ``name``, ``close()``.

    What ``multiprocessing.shared_memory.SharedMemory`` does, minus the resource tracker: before
    Python 3.13 SharedMemory registers every segment it opens with the tracker, and undoing that
    (unregister) from two spawned children of one parent makes the parent's tracker print
    ``KeyError`` tracebacks. A lowlat segment's lifetime belongs to whoever calls ``unlink``, so it
    is never registered, on any Python version. The file descriptor stays open until ``close`` for
    the role lock (``role_lock``).
    """

    __slots__ = ("name", "size", "buf", "_fd", "_mmap")

    def __init__(self, name: str, create: bool, size: int = 0) -> None:
        self._fd = -1
        self._mmap: mmap.mmap | None = None
        self.buf: memoryview = _RELEASED  # the mapping's view; released (any use raises) when closed
        if _posixshmem is None:
            raise OSError("lowlat's shared-memory rings need POSIX shared memory (shm_open)")
        path = "/" + name
        if create:
            fd = _posixshmem.shm_open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        else:
            fd = _posixshmem.shm_open(path, os.O_RDWR)
        try:
            if create:
                os.ftruncate(fd, size)
            size = os.fstat(fd).st_size
            # An empty segment cannot be mapped; read_header refuses it by its size.
            mapped = mmap.mmap(fd, size) if size else None
        except BaseException:
            os.close(fd)
            if create:
                _posixshmem.shm_unlink(path)
            raise
        self.name = name
        self.size = size
        self._fd = fd
        self._mmap = mapped
        self.buf = memoryview(mapped) if mapped is not None else memoryview(b"")

    def fileno(self) -> int:
        """The segment's open file descriptor (-1 after ``close``)."""
        return self._fd

    def close(self) -> None:
        """Unmap and close; every view of ``buf`` must have been released first. Idempotent."""
        if self.buf is not _RELEASED:
            self.buf.release()
            self.buf = _RELEASED
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __del__(self) -> None:
        # Quietly: an end left open at exit must not print (the mapping itself goes with its last view).
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            self._fd = -1
            try:
                os.close(fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"Mapping({self.name!r}, size={self.size})"


def open_segment(name: object, create: bool, size: int = 0) -> Mapping:
    """Create (0600, random name when ``name`` is None) or open a segment; never tracked by the resource tracker."""
    if not create or name is not None:
        return Mapping(check_name(name), create, size)
    while True:
        try:
            return Mapping("lowlat_" + secrets.token_hex(8), True, size)
        except FileExistsError:
            continue


@contextlib.contextmanager
def role_lock(shm: Mapping) -> Iterator[None]:
    """Hold the segment's role lock: an exclusive ``flock`` on its file descriptor.

    The protocol for claiming a role slot, which both backends follow: take this lock, read the
    slot, decide (``role_refusal``), write the pid, release. ``flock`` locks belong to the open
    file description, and every ``create``/``attach`` opens its own, so the lock excludes other
    processes and other threads of this process alike; it is released by the kernel if the holder
    dies. The compiled backend still writes the slot with a compare-and-swap, which changes nothing
    under the lock. Only attaching takes the lock: the hot path never does.
    """
    fd = shm.fileno()
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def unlink_segment(name: str) -> None:
    """Remove a segment's name (mappings stay valid until closed); ``FileNotFoundError`` if gone."""
    _posixshmem.shm_unlink("/" + name.lstrip("/"))


def segment_name(shm: Mapping) -> str:
    """Return the name to pass to ``attach`` in another process (no leading slash)."""
    return shm.name.lstrip("/")


def write_header(buf: memoryview, kind: int, header_size: int, capacity: int, word5: int, descriptor: bytes) -> None:
    """Fill a fresh (zeroed) segment's header; the magic goes last so a racing attach never sees half of it."""
    words = buf[:BASE_HEADER].cast("Q")
    try:
        words[W_VERSION] = VERSION
        words[W_KIND] = kind
        words[W_HEADER_SIZE] = header_size
        words[W_CAPACITY] = capacity
        words[W_MAX_MESSAGE] = word5
        words[W_DESCRIPTOR_LENGTH] = len(descriptor)
        buf[BASE_HEADER : BASE_HEADER + len(descriptor)] = descriptor
        words[W_MAGIC] = MAGIC
    finally:
        words.release()


def read_header(shm: Mapping, kind: int) -> tuple[int, int, int, bytes]:
    """Validate a segment's header for ``kind``; return (header size, capacity, word 5, descriptor).

    Every field is checked against the mapped size before it is used, so a segment that is not a
    lowlat ring, has another layout version or is inconsistent raises ``ValueError`` saying which.
    """
    name = segment_name(shm)
    size = shm.size
    if size < BASE_HEADER:
        raise ValueError(f"segment {name!r} is not a lowlat ring: {size} bytes is smaller than the {BASE_HEADER}-byte header")
    words = shm.buf[:BASE_HEADER].cast("Q")
    try:
        fields = words.tolist()
    finally:
        words.release()
    if fields[W_MAGIC] != MAGIC:
        raise ValueError(f"segment {name!r} is not a lowlat ring: bad magic {fields[W_MAGIC]:#018x}")
    if fields[W_VERSION] != VERSION:
        raise ValueError(f"segment {name!r} has layout version {fields[W_VERSION]}; this lowlat reads version {VERSION}")
    if fields[W_KIND] != kind:
        found = KIND_NAMES.get(fields[W_KIND], f"unknown kind {fields[W_KIND]}")
        raise ValueError(f"segment {name!r} is inconsistent: it holds a {found}, not a {KIND_NAMES[kind]}")
    header_size = fields[W_HEADER_SIZE]
    capacity = fields[W_CAPACITY]
    word5 = fields[W_MAX_MESSAGE]
    descriptor_length = fields[W_DESCRIPTOR_LENGTH]
    if header_size < BASE_HEADER or header_size % BLOCK or header_size > size:
        raise ValueError(f"segment {name!r} is inconsistent: header size {header_size} (segment has {size} bytes)")
    if kind == KIND_BYTES:
        if not MIN_CAPACITY_BYTES <= capacity <= MAX_CAPACITY_BYTES or capacity & (capacity - 1):
            raise ValueError(f"segment {name!r} is inconsistent: capacity {capacity} is not a power of two in range")
        data_bytes = capacity
        if word5 > capacity // 2 - 8:
            raise ValueError(f"segment {name!r} is inconsistent: max_message {word5} exceeds capacity // 2 - 8")
        descriptor = b""
    else:
        if not 1 <= capacity <= MAX_CAPACITY_RECORDS or capacity & (capacity - 1):
            raise ValueError(f"segment {name!r} is inconsistent: capacity {capacity} is not a power of two in range")
        if not 1 <= word5 <= 1 << 30:
            raise ValueError(f"segment {name!r} is inconsistent: itemsize {word5}")
        data_bytes = capacity * word5
        if not 1 <= descriptor_length <= header_size - BASE_HEADER:
            raise ValueError(f"segment {name!r} is inconsistent: dtype descriptor length {descriptor_length}")
        descriptor = bytes(shm.buf[BASE_HEADER : BASE_HEADER + descriptor_length])
    if header_size + data_bytes > size:
        raise ValueError(
            f"segment {name!r} is inconsistent: capacity {capacity} needs {header_size + data_bytes} bytes, "
            f"the segment has {size}"
        )
    produced = fields[W_PRODUCER_POSITION]
    consumed = fields[W_CONSUMER_POSITION]
    if not 0 <= produced - consumed <= capacity or (kind == KIND_BYTES and (produced | consumed) & 7):
        raise ValueError(
            f"segment {name!r} is inconsistent: positions out of range (producer {produced}, consumer {consumed}, "
            f"capacity {capacity})"
        )
    return header_size, capacity, word5, descriptor


def corrupt(what: str) -> ValueError:
    """Return the error raised when a live segment's shared state stops making sense."""
    return ValueError(f"corrupt segment: {what}")


def bytes_view(data: object, name: str, writable: bool = False) -> memoryview:
    """Return a flat unsigned-byte view of a C-contiguous buffer, or raise ``TypeError`` naming the argument."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        kind = "a writable bytes-like object" if writable else "a bytes-like object"
        raise TypeError(f"{name} must be {kind}, not {type(data).__name__}") from None
    if writable and view.readonly:
        raise TypeError(f"{name} must be a writable bytes-like object, not read-only {type(data).__name__}")
    if not view.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous bytes-like object")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def real_array(array: object, name: str, dtype: np.dtype) -> np.ndarray:
    """Return a plain one-dimensional ``ndarray`` view of the caller's array of exactly ``dtype``.

    The one check every record container uses (:func:`lowlat._validate.record_array`): dtype, shape
    and flags come from the array's C struct, never from properties an ndarray subclass overrides,
    and the wording of its errors is the in-process ``RecordRing``'s.
    """
    return _validate.record_array(array, dtype, name)
