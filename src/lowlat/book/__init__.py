"""Full-depth (L3) order books for every instrument of an ITCH 5.0 feed.

:class:`Book` comes from the compiled ``lowlat.book._c`` when it is importable, else from its
pure-Python twin ``lowlat.book._py`` (same names, signatures, results and errors);
``lowlat.book.BACKEND`` says which.
"""

from .._backend import select as _select
from .common import BOOK_TYPES, DEPTH_DTYPE

_impl, BACKEND = _select("lowlat.book")
globals().update({_name: getattr(_impl, _name) for _name in _impl.__all__})
__all__ = ["BACKEND", "BOOK_TYPES", "DEPTH_DTYPE", *_impl.__all__]
del _select
