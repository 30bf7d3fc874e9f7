from typing import Literal

from lowlat.hist._c import *

BACKEND: Literal["cython", "python"]
