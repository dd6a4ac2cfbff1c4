"""``python -m tools.codegen``: regenerate ``losant_async/rest/_generated``."""

from . import main

main()
