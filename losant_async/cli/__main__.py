"""``python -m losant_async.cli``: the same as the ``losant-async`` script."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
