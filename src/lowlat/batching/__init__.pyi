from typing import Literal

from lowlat.batching._c import *

BACKEND: Literal["cython", "python"]
