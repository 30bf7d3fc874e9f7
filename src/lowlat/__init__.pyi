from typing import Literal

from lowlat._core import *
from lowlat._core import __all__ as __all__

BACKEND: Literal["cython", "python"]
__version__: str
