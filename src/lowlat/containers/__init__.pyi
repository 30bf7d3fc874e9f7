from typing import Literal

from lowlat.containers._c import *
from lowlat._errors import PoolExhausted as PoolExhausted

BACKEND: Literal["cython", "python"]
