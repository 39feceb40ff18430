"""``python -m tidings.bench``."""

import sys

from tidings.bench.cli import main

if __name__ == "__main__":  # spawned bench processes import this module too
    sys.exit(main())
