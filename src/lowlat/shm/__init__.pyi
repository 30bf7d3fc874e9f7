from typing import Literal

from lowlat.shm._c import *

BACKEND: Literal["cython", "python"]
