from typing import Literal

from lowlat.ouch import spec as spec
from lowlat.ouch._c import *
from lowlat.ouch.spec import MESSAGES as MESSAGES, PRICE_SCALE as PRICE_SCALE, frame as frame

BACKEND: Literal["cython", "python"]
