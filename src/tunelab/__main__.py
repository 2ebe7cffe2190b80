"""``python -m tunelab …``: what launchers run (``torchrun … -m tunelab run …``, ``accelerate launch … -m tunelab run …``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
