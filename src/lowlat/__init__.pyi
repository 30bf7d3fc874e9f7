from typing import Literal

from lowlat._errors import PoolExhausted as PoolExhausted
from lowlat.containers._c import *
from lowlat.hist._c import *
from lowlat.shm._c import *
from lowlat.batching._c import *

BACKEND: Literal["cython", "python"]
__version__: str
