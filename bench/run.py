"""Run the side-by-side benchmark: the same as `lowlat bench` (pass its options through)."""

import sys

from lowlat.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
