"""``python -m isomax`` works like the ``isomax`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
