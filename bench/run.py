"""Run the side-by-side benchmark: the same as ``lowlat bench`` (pass its options through).

``python bench/run.py --quick`` works with lowlat installed, or in a checkout (after ``make
inplace``) where it falls back to the ``src`` folder beside this one.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# This folder's modules (queues.py, memory.py...) are lowlat.bench's, never top-level modules.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
try:
    import lowlat  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from lowlat.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
