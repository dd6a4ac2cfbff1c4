"""Asyncio client for the Losant IoT platform."""
from ._version import __version__

__all__ = ["__version__"]
