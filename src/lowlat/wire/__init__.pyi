from typing import Literal

from lowlat.wire import layered as layered
from lowlat.wire._c import *

BACKEND: Literal["cython", "python"]
