"""Type stubs for ``lowlat.book``: the live backend's names plus the shared ones."""

from lowlat.book._c import Book as Book
from lowlat.book.common import BOOK_TYPES as BOOK_TYPES
from lowlat.book.common import DEPTH_DTYPE as DEPTH_DTYPE

BACKEND: str
