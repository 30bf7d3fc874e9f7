"""Streaming ITCH decoding, shared by both backends: chunks of any size in, batches out.

A :class:`StreamDecoderBase` subclass names its backend's ``decode_chunk``; the backends export
it as ``StreamDecoder``. Memory stays bounded by the chunk: a message split across chunks is the
only thing kept (at most 65,537 bytes), and it is completed from the next chunk without copying
that chunk.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, ClassVar, Iterator

from .framing import Batch, requested_types

__all__ = ["StreamDecoderBase", "read_with"]

_MAX_FRAMED = 2 + 0xFFFF  # the longest message a 2-byte length can frame, with its length


class StreamDecoderBase:
    """Decode a file-form ITCH stream (2-byte length, message) fed in chunks of any size.

    ``feed(chunk)`` returns a :class:`Batch` of every message completed by ``chunk``; a message
    cut at the end of the chunk is kept until the rest arrives. ``position`` numbers messages
    from 0 across the whole stream and error offsets count bytes from the stream's start. One
    thread at a time. ``close()`` raises ``ValueError`` if the stream ended inside a message.
    """

    # Each backend's subclass sets it to its decode_chunk(data, types, first_position, base_offset,
    # allow_partial, limit); the base declares it without a value, so a subclass that forgets fails
    # at the first feed with an AttributeError naming it.
    _decode_chunk: ClassVar[Callable[..., Batch]]

    def __init__(self, *, types=None) -> None:
        self.types = requested_types(types)
        self._pending = bytearray()
        #: Bytes of the stream consumed so far (complete messages only).
        self.offset = 0
        #: The position the next message will get.
        self.position = 0
        #: Messages walked so far, and how many of them were of an unknown type.
        self.count = 0
        self.unknown = 0

    @property
    def pending(self) -> int:
        """Return how many bytes of an incomplete message are held back."""
        return len(self._pending)

    def _run(self, data, allow_partial: bool) -> Batch:
        batch = type(self)._decode_chunk(data, self.types, self.position, self.offset, allow_partial, -1)
        self.offset += batch.consumed
        self.position = batch.next_position
        self.count += batch.count
        self.unknown += batch.unknown
        return batch

    def feed(self, chunk) -> Batch:
        """Decode what ``chunk`` completes; return it as a :class:`Batch` (possibly empty)."""
        view = memoryview(chunk).cast("B")
        head = None
        pending = self._pending
        if pending:
            # Complete the held-back message from the chunk's first bytes, then decode the rest in place.
            take = 0
            if len(pending) < 2:
                take = min(2 - len(pending), len(view))
                pending += view[:take]
                if len(pending) < 2:
                    return self._run(b"", True)
            need = 2 + (pending[0] << 8 | pending[1]) - len(pending)
            more = min(need, len(view) - take)
            pending += view[take : take + more]
            take += more
            if more < need:
                return self._run(b"", True)
            head = self._run(bytes(pending), False)
            pending.clear()
            view = view[take:]
        batch = self._run(view, True)
        if batch.consumed < len(view):
            pending += view[batch.consumed :]
        if head is not None:
            batch = Batch.concatenate([head, batch])
        return batch

    def close(self) -> None:
        """Check the stream ended on a message boundary; ``ValueError`` naming the offset if not."""
        if self._pending:
            raise ValueError(f"truncated message at byte offset {self.offset}: the stream ended {len(self._pending)} bytes into it")


class _ProgressLine:
    """A one-line progress display on a terminal (stderr): bytes, messages, rate."""

    def __init__(self, total: int, stream) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, done: int, messages: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        line = (
            f"itch: {done / 2**20:,.0f}/{self.total / 2**20:,.0f} MiB ({100.0 * done / self.total:5.1f}%), "
            f"{messages:,} messages, {messages / elapsed / 1e6:.2f} M msg/s"
        )
        self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        self.stream.flush()


def read_with(decoder_class, path, chunk_size: int = 1 << 20, *, types=None, progress=None) -> Iterator[Batch]:
    """Yield one :class:`Batch` per ``chunk_size`` bytes of the file-form ITCH file at ``path``.

    The file is read into one reused buffer of ``chunk_size`` bytes, so memory stays bounded by
    the chunk (plus the decoded batch) whatever the file size; a batch is released before the
    next one is decoded unless the caller keeps it. ``progress``: None shows a progress
    line on stderr when it is a terminal and the file exceeds 64 chunks; True/False force it.
    ``ValueError`` naming the byte offset on bad framing or a file ending inside a message.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    decoder = decoder_class(types=types)
    total = os.path.getsize(path)
    if progress is None:
        progress = sys.stderr.isatty() and total > 64 * chunk_size
    line = _ProgressLine(total, sys.stderr) if progress else None
    # One buffer for the whole file: a message cut at the end of a read is moved to the front
    # and the next read lands right after it, so nothing is ever concatenated or copied twice.
    buffer = bytearray(chunk_size + _MAX_FRAMED)
    view = memoryview(buffer)
    kept = 0
    done = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view[kept : kept + chunk_size])
            if not n:
                break
            done += n
            end = kept + n
            batch = decoder._run(view[:end], True)
            kept = end - batch.consumed
            if kept:
                buffer[:kept] = buffer[batch.consumed : end]
            if line is not None:
                line.update(done, decoder.count)
            yield batch
            del batch  # the caller's batch is the only one alive while the next one is decoded
    if kept:
        raise ValueError(f"truncated message at byte offset {decoder.offset}: the stream ended {kept} bytes into it")
    if line is not None:
        line.update(done, decoder.count, final=True)
