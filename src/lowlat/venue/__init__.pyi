from typing import Literal

from lowlat.venue import rules as rules
from lowlat.venue._c import *

BACKEND: Literal["cython", "python"]
