from typing import Literal

from lowlat._core import *
from lowlat._errors import PoolExhausted as PoolExhausted

BACKEND: Literal["cython", "python"]
__version__: str
