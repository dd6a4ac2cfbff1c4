"""The ``losant-async`` command: ``emulator`` (a local Losant), ``simulate`` (a device fleet), ``report merge``.

Exit codes: 0 success; 1 a run that lost states or commands or met errors, or a
failure talking to Losant; 2 bad arguments; 130 interrupted.
Expected failures are one line on stderr, never a traceback.
``LOSANT_LOG=debug|info`` turns on the library's logging (on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from .._extras import MissingExtraError, extra_for_module
from ..errors import LosantError, ValidationError
from ..simulator import SimulationReport

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _expected(exc: BaseException) -> BaseException | None:
    """The first of our typed errors (or an OS error) in ``exc``, looking inside exception groups."""
    if isinstance(exc, (LosantError, OSError, ModuleNotFoundError)):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return exc
    inner: Any = getattr(exc, "exceptions", None)
    if isinstance(inner, (list, tuple)):
        for sub in inner:
            found = _expected(sub)
            if found is not None:
                return found
    return None


def _error(message: str) -> None:
    print(f"losant-async: error: {message}", file=sys.stderr, flush=True)


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _configure_logging(env: dict[str, str] | os._Environ[str], level: str | None = None) -> None:
    """Log on stderr at ``level`` (``--log-level``), else at ``$LOSANT_LOG`` (debug or info), else not at all."""
    value = level or (env.get("LOSANT_LOG") or "").strip().lower()
    if not value:
        return
    if value not in _LOG_LEVELS or (level is None and value not in ("debug", "info")):
        raise ValidationError(f"LOSANT_LOG must be debug or info, not {value[:20]!r}")
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("losant_async").setLevel(_LOG_LEVELS[value])


def _read_report(path: Path) -> SimulationReport:
    from ..simulator import report_from_dict

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(f"cannot read report {str(path)!r}: {exc.strerror}") from None
    except ValueError:
        raise ValidationError(f"{str(path)!r} is not JSON") from None
    try:
        return report_from_dict(data)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from None


def _merge(ns: argparse.Namespace) -> int:
    from ..simulator import merge_reports
    from ._render import print_summary

    paths: list[Path] = ns.reports
    report = merge_reports([_read_report(p) for p in paths])
    print_summary(report, sys.stdout)
    json_path: Path | None = ns.json
    if json_path is not None:
        _write_json(json_path, report)
        print(f"JSON report written to {json_path}", flush=True)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_FAILED


def _write_json(path: Path, report: SimulationReport) -> None:
    try:
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot write the JSON report to {str(path)!r}: {exc.strerror}") from None


def _certificates(ns: Any) -> int:
    from ._certs import make_test_certificates

    files = make_test_certificates(ns.directory, device_name=ns.name, days=ns.days)
    print(f"Wrote a test CA, a server and a device certificate to {ns.directory}:", flush=True)
    for label, path in (("CA", files.ca), ("server (127.0.0.1)", files.server), ("device", files.device)):
        print(f"  {label:<19} {path}", flush=True)
    print(
        "Run the emulator with them:   losant-async emulator --mqtt-tls " + str(ns.directory) + "\n"
        "Against Losant: register ca.pem as a certificate authority and device.pem as a device certificate "
        "of the application, then Device(device_id, certificate=(device.pem, device.key)).",
        flush=True,
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from ._args import parse_args, resolve_data_dir, resolve_simulate
    from ._commands import Interrupted, run_emulator, run_simulate
    from ._render import print_summary

    ns = parse_args(argv)
    try:
        _configure_logging(os.environ, getattr(ns, "log_level", None))
        if ns.command == "emulator":
            return anyio.run(run_emulator, ns, sys.stdout, resolve_data_dir(ns, os.environ))
        if ns.command == "report":
            return _merge(ns)
        if ns.command == "certificates":
            return _certificates(ns)
        args = resolve_simulate(ns, os.environ)
        report = anyio.run(run_simulate, args, sys.stdout, sys.stderr)
        if not args.console or report.interrupted:  # else printed before the console's wait for Ctrl-C
            print_summary(report, sys.stdout)
        if args.json_path is not None:
            _write_json(args.json_path, report)
            print(f"JSON report written to {args.json_path}", flush=True)
        if report.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if report.ok else EXIT_FAILED
    except Interrupted:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BaseException as exc:
        found = _expected(exc)
        if found is None:
            raise
        if isinstance(found, KeyboardInterrupt):
            _error("interrupted")
            return EXIT_INTERRUPTED
        if isinstance(found, ValidationError):
            _error(str(found))
            return EXIT_USAGE
        if isinstance(found, ModuleNotFoundError):
            extra = extra_for_module(found.name or "") or "cli"
            _error(str(found if isinstance(found, MissingExtraError) else MissingExtraError(extra, found.name or "")))
            return EXIT_FAILED
        if isinstance(found, OSError) and not isinstance(found, LosantError):
            _error(f"{found.strerror or found}" + (f": {found.filename}" if found.filename else ""))
            return EXIT_FAILED
        _error(f"{type(found).__name__}: {found}")
        return EXIT_FAILED
