"""The emulator's web console: applications, devices, a live device page, the fleet and events, at ``/console/``.

Served by the emulator's REST server to a browser that logged in with the console
token printed at start (``/console/login?token=...`` sets an HttpOnly, SameSite=Strict
cookie). Pages are rendered on the server (Jinja2); htmx and uPlot, vendored under
``static/vendor`` with their licences, do the partial updates and the charts; live
updates come over server-sent events that poll the store at most twice a second, and
only while a page is open. See docs/console.md.
"""

from __future__ import annotations

from ._app import COOKIE, Console

__all__ = ["COOKIE", "Console"]
