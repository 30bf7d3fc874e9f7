"""The benchmark harness under its old name: bench sections written as ``lowlat._bench_<name>``
import it from here. The harness itself lives in ``lowlat.bench._harness`` (the ``bench/`` folder).
"""

from .bench._harness import *  # noqa: F401,F403
from .bench._harness import __all__  # noqa: F401
