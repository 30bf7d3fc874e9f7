from typing import Literal

from lowlat.risk import config as config
from lowlat.risk._c import *
from lowlat.risk.config import (
    BUY as BUY,
    REASONS as REASONS,
    SELL as SELL,
    Reason as Reason,
    reason_message as reason_message,
    reason_name as reason_name,
)

BACKEND: Literal["cython", "python"]
