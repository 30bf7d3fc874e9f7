"""``lowlat.batching``: ``AdaptiveBatcher``, flushing batches by size or by deadline.

The compiled half ``_c`` (a preallocated item buffer, the clock read in C) when it is importable,
else the pure twin ``_py``; ``BACKEND`` says which. ``_shared`` holds what both use: argument
checks, the timer thread and the statistics dict.
"""

from .._backend import select

_impl, BACKEND = select("lowlat.batching")
AdaptiveBatcher = _impl.AdaptiveBatcher
__all__ = ["BACKEND", *_impl.__all__]
del select
