"""``python -m losant_async.cli``: the same as the ``losant-async`` script."""

import sys

from . import main

sys.exit(main())
