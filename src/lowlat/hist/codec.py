"""What both histogram backends share and need not be fast: the layout arithmetic, argument checks
and the wire forms (HdrHistogram's V2 encoding and lowlat's ``to_bytes()`` framing).

The compiled half (``_c.pyx``) keeps only its loops over the counts in C: filling counts from a V2
body and writing them as ZigZag LEB128. Everything that parses headers, checks them and builds
error messages lives here once, so the two backends cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import operator
import struct
import zlib
from typing import Any, Callable, Sequence

INT64_MAX = (1 << 63) - 1
#: Highest accepted ``highest``: keeps every bucket bound (and the top bucket's upper edge) in int64.
HIGHEST_LIMIT = 1 << 62

# HdrHistogram V2 wire format (see HdrHistogram's Java/C sources and hdrh/codec.py).
V2_ENCODING_COOKIE = 0x1C849303 | 0x10
V2_COMPRESSION_COOKIE = 0x1C849304 | 0x10
V2_COOKIE_MASK = ~0xF0 & 0xFFFFFFFF
V2_EXTERNAL_HEADER = struct.Struct(">II")  # cookie, length of the zlib part
V2_PAYLOAD_HEADER = struct.Struct(">IIIIqqd")  # cookie, payload_len, normalizing offset, figures, lo, hi, ratio

# lowlat's own to_bytes() format: this header, then the V2 zlib payload of the in-range counts.
LL_MAGIC = b"LLHG"
LL_VERSION = 1
LL_HEADER = struct.Struct("<4sBBxxqqqqqqdd")  # magic, version, figures, lo, hi, total, min, max, overflow, ovf sums


# --------------------------------------------------------------------- argument checks
def as_int(obj: object, name: str) -> int:
    """Return ``obj`` as an ``int`` (anything with ``__index__``, not bool), else raise ``TypeError`` naming it."""
    kind = type(obj)
    if kind is int:
        return obj  # type: ignore[return-value]
    if kind is bool or isinstance(obj, bool):  # refused, as the containers refuse it
        raise TypeError(f"{name} must be an integer, not bool")
    if isinstance(obj, int):
        return int(obj)
    try:
        return operator.index(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(obj).__name__}") from None


def as_value(obj: object, name: str) -> int:
    """Return ``obj`` as a non-negative int64, else raise ``TypeError``/``ValueError`` naming it."""
    value = as_int(obj, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if value > INT64_MAX:
        raise ValueError(f"{name} must be < 2**63, got {value}")
    return value


def as_percentile(obj: object) -> float:
    """Return ``obj`` as a float in [0, 100], else raise ``TypeError``/``ValueError``."""
    if isinstance(obj, (str, bytes, bool)) or not hasattr(obj, "__float__"):
        raise TypeError(f"p must be a real number (a percentile), not {type(obj).__name__}")
    p = float(obj)  # type: ignore[arg-type]
    if not 0.0 <= p <= 100.0:  # also rejects NaN
        raise ValueError(f"p must be a percentile in [0, 100], got {obj!r}")
    return p


def checked_layout(lowest: object, highest: object, significant_figures: object) -> tuple[int, int, int, int, int, int]:
    """Check the constructor's arguments; return ``(lowest, highest, figures, unit_magnitude,
    half_magnitude, bucket_count)`` or raise ``TypeError``/``ValueError`` naming the argument."""
    low = as_int(lowest, "lowest")
    high = as_int(highest, "highest")
    figures = as_int(significant_figures, "significant_figures")
    if low < 1:
        raise ValueError(f"lowest must be >= 1, got {low}")
    if high < 2 * low:
        raise ValueError(f"highest must be >= 2 * lowest ({2 * low}), got {high}")
    if high > HIGHEST_LIMIT:
        raise ValueError(f"highest must be <= 2**62, got {high}")
    if not 1 <= figures <= 5:
        raise ValueError(f"significant_figures must be in 1..5, got {figures}")
    unit_magnitude, half_magnitude, bucket_count = bucket_layout(low, high, figures)
    if unit_magnitude + half_magnitude > 61:
        raise ValueError(f"lowest ({low}) is too large for {figures} significant figures")
    return low, high, figures, unit_magnitude, half_magnitude, bucket_count


# --------------------------------------------------------------------- layout arithmetic
def bucket_layout(lowest: int, highest: int, significant_figures: int) -> tuple[int, int, int]:
    """Return HdrHistogram's (unit_magnitude, sub_bucket_half_count_magnitude, bucket_count).

    ``unit_magnitude`` is floor(log2(lowest)); each bucket has ``2 ** (half + 1)`` sub-buckets, the
    lower half shared with the bucket below; buckets are added until one's range passes ``highest``
    (hdrh.histogram.get_bucket_count, including its guard against shifting past int64). The counts
    array has ``(bucket_count + 1) << half`` slots.
    """
    unit_magnitude = lowest.bit_length() - 1
    sub_bucket_count_magnitude = (2 * 10**significant_figures - 1).bit_length()  # ceil(log2(2 * 10**sf))
    half_magnitude = max(sub_bucket_count_magnitude - 1, 0)
    smallest_untrackable = (1 << (half_magnitude + 1)) << unit_magnitude
    bucket_count = 1
    while smallest_untrackable <= highest:
        if smallest_untrackable > INT64_MAX // 2:
            bucket_count += 1
            break
        smallest_untrackable <<= 1
        bucket_count += 1
    return unit_magnitude, half_magnitude, bucket_count


def counts_length(bucket_count: int, half_magnitude: int) -> int:
    """Return how many count slots a layout has (HdrHistogram's ``counts_len``)."""
    return (bucket_count + 1) << half_magnitude


def sub_bucket_mask(unit_magnitude: int, half_magnitude: int) -> int:
    """Return the mask of the values that fall in the first bucket (HdrHistogram's ``sub_bucket_mask``)."""
    return ((1 << (half_magnitude + 1)) - 1) << unit_magnitude


def counts_index(value: int, unit_magnitude: int, half_magnitude: int) -> int:
    """Return the index of the count slot that holds ``value`` (HdrHistogram's ``counts_index``)."""
    bucket = (value | sub_bucket_mask(unit_magnitude, half_magnitude)).bit_length() - unit_magnitude - (half_magnitude + 1)
    return ((bucket + 1) << half_magnitude) + (value >> (bucket + unit_magnitude)) - (1 << half_magnitude)


def bucket_bounds(index: int, unit_magnitude: int, half_magnitude: int) -> tuple[int, int]:
    """Return ``(lowest value, width)`` of count slot ``index``: the slot holds [low, low + width)."""
    half = 1 << half_magnitude
    bucket = (index >> half_magnitude) - 1
    sub_bucket = (index & (half - 1)) + half
    if bucket < 0:
        sub_bucket -= half
        bucket = 0
    shift = bucket + unit_magnitude
    return sub_bucket << shift, 1 << shift


# --------------------------------------------------------------------- V2 and to_bytes framing
def zigzag_counts(counts: Sequence[int]) -> bytes:
    """Return in-range ``counts`` as HdrHistogram's ZigZag LEB128 body (runs of zeros as negatives)."""
    limit = len(counts)
    while limit and counts[limit - 1] == 0:
        limit -= 1
    out = bytearray()
    i = 0
    while i < limit:
        count = counts[i]
        i += 1
        if count == 0:
            zeros = 1
            while i < limit and counts[i] == 0:
                zeros += 1
                i += 1
            count = -zeros  # a run of zeros, as hdrh writes it (a single zero too)
        v = ((count << 1) ^ (count >> 63)) & 0xFFFFFFFFFFFFFFFF
        for _ in range(8):
            if v < 0x80:
                break
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)  # the final byte (the ninth carries the last 8 bits)
    return bytes(out)


def v2_payload(body: bytes, figures: int, lowest: int, highest: int) -> bytes:
    """Return the zlib-compressed V2 payload: its header, then the counts ``body``."""
    header = V2_PAYLOAD_HEADER.pack(V2_ENCODING_COOKIE, len(body), 0, figures, lowest, highest, 1.0)
    return zlib.compress(header + body)


def v2_text(payload: bytes) -> str:
    """Return a compressed V2 payload in HdrHistogram's base64 form (external header included)."""
    return base64.b64encode(V2_EXTERNAL_HEADER.pack(V2_COMPRESSION_COOKIE, len(payload)) + payload).decode("ascii")


def v2_payload_of_text(text: object) -> bytes:
    """Return the compressed payload inside HdrHistogram's base64 V2 form, checking its framing."""
    if isinstance(text, str):
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("text is not base64: it has non-ASCII characters") from None
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
    else:
        raise TypeError(f"text must be str or bytes, not {type(text).__name__}")
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"text is not valid base64: {exc}") from None
    if len(raw) < V2_EXTERNAL_HEADER.size:
        raise ValueError("text is too short for an HdrHistogram V2 encoding")
    cookie, length = V2_EXTERNAL_HEADER.unpack_from(raw)
    if cookie & V2_COOKIE_MASK != V2_COMPRESSION_COOKIE & V2_COOKIE_MASK:
        raise ValueError(f"text has cookie {cookie:#x}, not an HdrHistogram V2 compressed histogram")
    if length != len(raw) - V2_EXTERNAL_HEADER.size:
        raise ValueError(f"text declares {length} payload bytes but holds {len(raw) - V2_EXTERNAL_HEADER.size}")
    return raw[V2_EXTERNAL_HEADER.size :]


def open_v2_payload(compressed: bytes, name: str, make: Callable[[int, int, int], Any]) -> tuple[Any, bytes]:
    """Inflate and check a V2 payload; return ``(make(lowest, highest, figures), counts body)``.

    ``make`` builds the empty histogram of the caller's backend; its ``nbytes`` bounds the declared
    body length (a body never needs more than 9 bytes per count slot), so a hostile header cannot
    make zlib inflate more than the layout could hold.
    """
    inflater = zlib.decompressobj()
    try:
        head = inflater.decompress(compressed, V2_PAYLOAD_HEADER.size)
        if len(head) < V2_PAYLOAD_HEADER.size:
            raise ValueError(f"{name} is truncated: its payload has no complete V2 header")
        cookie, payload_len, offset, figures, lowest, highest, _ = V2_PAYLOAD_HEADER.unpack(head)
        if cookie & V2_COOKIE_MASK != V2_ENCODING_COOKIE & V2_COOKIE_MASK:
            raise ValueError(f"{name} has payload cookie {cookie:#x}, not an HdrHistogram V2 payload")
        if offset != 0:
            raise ValueError(f"{name} has a normalizing index offset ({offset}); shifted histograms are not supported")
        try:
            histogram = make(lowest, highest, figures)
        except ValueError as exc:
            raise ValueError(f"{name} has an invalid layout: {exc}") from None
        if payload_len > 9 * (histogram.nbytes // 8):
            raise ValueError(f"{name} declares {payload_len} payload bytes, more than its counts can take")
        body = inflater.decompress(inflater.unconsumed_tail, payload_len) if payload_len else b""
        if len(body) < payload_len:
            raise ValueError(f"{name} is truncated: its payload is shorter than declared")
        if inflater.decompress(inflater.unconsumed_tail, 1):
            raise ValueError(f"{name} has a payload longer than declared")
        if not inflater.eof:
            raise ValueError(f"{name} is truncated: its zlib stream does not end")
        if inflater.unused_data:
            raise ValueError(f"{name} has trailing bytes after its zlib stream")
    except zlib.error as exc:
        raise ValueError(f"{name} has a corrupt zlib stream: {exc}") from None
    return histogram, body


def read_counts(body: bytes, counts: Any, name: str) -> int:
    """Decode a ZigZag LEB128 ``body`` into the zeroed array ``counts``; return the total count."""
    size = len(counts)
    end = len(body)
    index = position = total = 0
    while position < end:
        value = shift = 0
        for byte_number in range(9):
            if position >= end:
                raise ValueError(f"{name} is truncated inside a count")
            byte = body[position]
            position += 1
            if byte_number == 8:
                value |= byte << 56
                break
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        count = (value >> 1) ^ -(value & 1)
        if count < 0:  # a run of -count zeros
            index += -count
            if index > size:
                raise ValueError(f"{name} has more counts than its layout holds")
            continue
        if index >= size:
            raise ValueError(f"{name} has more counts than its layout holds")
        total += count
        if total > INT64_MAX:
            raise ValueError(f"{name} has a total count above 2**63 - 1")
        counts[index] = count
        index += 1
    return total


def pack_to_bytes(histogram: Any, payload: bytes) -> bytes:
    """Return ``to_bytes()``'s form: the ``LLHG`` header of ``histogram``'s totals, then ``payload``."""
    fields = histogram._state_for_bytes()
    return LL_HEADER.pack(LL_MAGIC, LL_VERSION, *fields) + payload


def unpack_to_bytes(data: object) -> tuple[tuple[int, ...], bytes]:
    """Split ``to_bytes()`` output into its header fields (figures .. overflow sums) and the V2 payload."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) < LL_HEADER.size:
        raise ValueError("data is too short for a LatencyHistogram")
    magic, version, *fields = LL_HEADER.unpack_from(raw)
    if magic != LL_MAGIC:
        raise ValueError(f"data does not start with {LL_MAGIC!r}: not a LatencyHistogram")
    if version != LL_VERSION:
        raise ValueError(f"data has format version {version}; this lowlat reads version {LL_VERSION}")
    return tuple(fields), raw[LL_HEADER.size :]


def check_restored(
    histogram: Any, header: tuple[int, ...], in_range: int, first: tuple[int, int] | None, last: tuple[int, int] | None
) -> None:
    """Raise ``ValueError`` unless a ``to_bytes()`` header agrees with the buckets decoded after it.

    ``first``/``last`` are ``(low, width)`` of the lowest and highest non-empty buckets (None if
    every bucket is empty).
    """
    figures, lowest, highest, total, low, high, overflow = header[:7]
    if (histogram.lowest, histogram.highest, histogram.significant_figures) != (lowest, highest, figures):
        raise ValueError("data is inconsistent: header and payload layouts differ")
    if overflow < 0 or total != in_range + overflow:
        raise ValueError("data is inconsistent: count does not match the buckets and overflow")
    if total and not (0 <= low <= high):
        raise ValueError("data is inconsistent: min and max are out of order")
    if overflow and high <= highest:
        raise ValueError("data is inconsistent: overflow values but max <= highest")
    if first is not None and last is not None:
        first_low, first_high = first[0], first[0] + first[1] - 1
        last_low, last_high = last[0], last[0] + last[1] - 1
        if not first_low <= low <= first_high or (not overflow and not last_low <= high <= last_high):
            raise ValueError("data is inconsistent: min or max lies outside the recorded buckets")


def histogram_from_bytes(data: bytes) -> Any:
    """Unpickle a histogram with whichever backend is live here (pickles name this function).

    A pickle made with the compiled backend loads where only the pure one exists, and back.
    """
    from . import LatencyHistogram

    return LatencyHistogram.from_bytes(data)
