"""What the benchmarks run against: a loopback broker, a fixed-reply HTTP server, worker processes, the official clients' venv."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "REPO",
    "Broker",
    "OfficialEnv",
    "Worker",
    "WorkerFailed",
    "free_port",
    "http_server",
    "machine_info",
    "official_env",
    "run_worker",
    "start_broker",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OFFICIAL_VENV = BENCH_DIR / ".venv-official"
OFFICIAL_PACKAGES = ["losant-mqtt", "losant-rest", "setuptools<81"]


class WorkerFailed(RuntimeError):
    """A worker process exited badly, printed no result, or ran out of time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise WorkerFailed(f"nothing listens on 127.0.0.1:{port} after {timeout}s") from None
            await asyncio.sleep(0.05)  # polling a port that is not open yet: no event to wait on
            continue
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()
        return


class Worker:
    """A subprocess that prints ``READY`` (optionally) and then one JSON line as its last line."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, stderr: Any) -> None:
        self.proc = proc
        self.name = name
        self._stderr = stderr
        self._lines: list[str] = []

    async def ready(self, timeout: float = 30.0, marker: str = "READY") -> str:
        """Wait for the line starting with ``marker``; returns the rest of it."""
        assert self.proc.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            except asyncio.TimeoutError:
                raise WorkerFailed(f"{self.name}: no {marker} after {timeout}s") from None
            if not line:
                err = await self.stderr_tail()
                raise WorkerFailed(f"{self.name}: exited before {marker}: {err}")
            text = line.decode().strip()
            if text.startswith(marker):
                return text[len(marker):].strip()
            self._lines.append(text)

    async def written_json(self, path: Path) -> dict[str, Any]:
        """The JSON file this worker wrote at ``path``, or why it wrote none: a missing module is a skip."""
        text = await asyncio.to_thread(_read_text_or_none, path)
        if text is None:
            err = await self.stderr_tail()
            if "No module named" in err:
                return {"skipped": f"not available: {err}"}
            return {"error": f"{self.name} wrote no {path.name} (exit {self.proc.returncode}): {err}"}
        doc: dict[str, Any] = json.loads(text)
        return doc

    async def stderr_tail(self) -> str:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        self._stderr.seek(0)
        data: bytes = self._stderr.read()
        lines = data.decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or f"exit code {self.proc.returncode}"

    async def result(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            out = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.kill()
            raise WorkerFailed(f"{self.name}: no result after {timeout:.0f}s (killed)") from None
        lines = self._lines + out.decode().strip().splitlines()
        for line in reversed(lines):
            if line.startswith("{"):
                doc: dict[str, Any] = json.loads(line)
                if self.proc.returncode != 0 and "error" not in doc:
                    doc["error"] = f"exit code {self.proc.returncode}"
                return doc
        err = await self.stderr_tail()
        raise WorkerFailed(f"{self.name}: no JSON result (exit {self.proc.returncode}): {err}")

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


def _loopback_env() -> dict[str, str]:
    """The environment minus LOSANT_* settings: no worker may be pointed at a real Losant."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOSANT_")}


def _read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


@contextlib.asynccontextmanager
async def run_worker(
    argv: Sequence[str],
    *,
    name: str,
    python: str | None = None,
    stdin: int | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Worker]:
    """Start ``python argv...`` (or ``argv`` as is when ``python`` is ``""``) from the repo root; killed on exit."""
    cmd = list(argv) if python == "" else [python or sys.executable, *argv]
    # stderr goes to a file, not a pipe: a chatty worker must never block on a full pipe.
    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=REPO,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**_loopback_env(), "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        worker = Worker(proc, name, stderr)
        try:
            yield worker
        finally:
            worker.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.shield(asyncio.wait_for(proc.wait(), 5))


@dataclass(frozen=True)
class Broker:
    """A loopback broker: plain TCP on ``port``; with mosquitto also TLS on ``tls_port``.

    The TLS listener's certificate (for 127.0.0.1 and localhost) is issued by a test
    CA made for this run with trustme; ``ca_file`` is that CA in PEM, the one file a
    client must be told to trust.
    """

    kind: str
    port: int
    host: str = "127.0.0.1"
    tls_port: int | None = None
    ca_file: str | None = None
    tls_skipped: str | None = None
    pid: int | None = None  # so a case can account the broker's CPU beside its own


def _tls_material(directory: Path) -> tuple[Path, Path, Path] | str:
    """(CA file, server certificate chain, server key) from a fresh trustme CA, or why not."""
    try:
        import trustme
    except ImportError:
        return "trustme not installed (pip install trustme)"
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    # Run as root, mosquitto drops to its own user, which must be able to read these (a
    # throwaway CA for loopback: nothing secret).
    directory.chmod(0o755)
    for path in (ca_file, cert_file, key_file):
        path.chmod(0o644)
    return ca_file, cert_file, key_file


def _mosquitto_version(path: str) -> str:
    try:
        out = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "mosquitto"
    first = out.splitlines()[0] if out else "mosquitto"
    return first.replace(" version", "")


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )


@contextlib.asynccontextmanager
async def start_broker(prefer: str = "auto") -> AsyncIterator[Broker]:
    """mosquitto on an ephemeral loopback port with its own config, else the embedded amqtt broker."""
    mosquitto = find_mosquitto() if prefer in ("auto", "mosquitto") else None
    if prefer == "mosquitto" and not mosquitto:
        raise WorkerFailed("--broker mosquitto: mosquitto is not installed")
    port = free_port()
    tls_port: int | None = None
    ca_file: str | None = None
    tls_skipped: str | None = "the embedded amqtt broker has no TLS listener here"
    with tempfile.TemporaryDirectory(prefix="losant-bench-") as tmp:
        if mosquitto:
            conf = Path(tmp) / "mosquitto.conf"
            # Unbounded queues: a slow subscriber must not turn into silently dropped messages.
            text = (
                f"listener {port} 127.0.0.1\n"
                "allow_anonymous true\n"
                "persistence false\n"
                "max_queued_messages 0\n"
                "max_queued_bytes 0\n"
                "max_connections -1\n"
                "log_dest none\n"
                # $SYS counts each second: the scale case reads what the broker received from them.
                "sys_interval 1\n"
            )
            material = _tls_material(Path(tmp))
            if isinstance(material, str):
                tls_skipped = material
            else:
                # The same broker on a second, TLS listener: TLS and plain rows meet the same queues.
                tls_port = free_port()
                ca, cert, key = material
                ca_file, tls_skipped = str(ca), None
                text += f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
            conf.write_text(text)
            argv = [mosquitto, "-c", str(conf)]
            kind = _mosquitto_version(mosquitto)
        else:
            argv = [sys.executable, "-m", "benchmarks.workers.amqtt_broker", "--port", str(port)]
            why = "asked for" if prefer == "amqtt" else "mosquitto not installed"
            kind = f"amqtt {_version('amqtt')} (embedded; {why})"
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            await _wait_port(port, 15)
            if tls_port is not None:
                await _wait_port(tls_port, 15)
            yield Broker(kind=kind, port=port, tls_port=tls_port, ca_file=ca_file, tls_skipped=tls_skipped,
                         pid=proc.pid)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.shield(asyncio.wait_for(proc.wait(), 5))
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    """The fixed-reply HTTP server in its own process; yields its base URL."""
    async with run_worker(["-m", "benchmarks.workers.http_server"], name="http server") as w:
        port = await w.ready(30)
        yield f"http://127.0.0.1:{port}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class OfficialEnv:
    python: str | None
    versions: dict[str, str]
    skipped: str | None


def official_env(log: Any = print) -> OfficialEnv:
    """The cached virtualenv with Losant's official clients (paho-mqtt 1.x), created on first use."""
    py = OFFICIAL_VENV / "bin" / "python"
    marker = OFFICIAL_VENV / "installed.json"
    if marker.exists() and py.exists():
        return OfficialEnv(str(py), json.loads(marker.read_text()), None)
    base = shutil.which("python3") or sys.executable
    log(f"creating {OFFICIAL_VENV.relative_to(REPO)} for the official clients (once)...")
    try:
        subprocess.run([base, "-m", "venv", "--clear", str(OFFICIAL_VENV)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *OFFICIAL_PACKAGES], check=True,
                       capture_output=True, timeout=600)
        code = (
            "import json, importlib.metadata as m;"
            "print(json.dumps({d: m.version(d) for d in ('losant-mqtt','losant-rest','paho-mqtt','requests')}))"
        )
        out = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        tail = text.strip().splitlines()[-1:] or [str(exc)]
        return OfficialEnv(None, {}, f"official clients could not be installed: {tail[0][:200]}")
    versions = json.loads(out.stdout)
    marker.write_text(json.dumps(versions))
    return OfficialEnv(str(py), versions, None)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info(*, broker: str, official: OfficialEnv, wrk: str | None) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "broker": broker,
        "wrk": wrk or "not installed",
        "libraries": {
            d: _version(d)
            for d in ("losant-async", "aiohttp", "aiomqtt", "paho-mqtt", "msgspec", "amqtt", "psutil", "matplotlib")
        },
        "official": official.versions or {"skipped": official.skipped},
    }


def raise_open_files(want: int = 70_000) -> int:
    """Raise this process's open-file limit (inherited by the broker and the workers) towards ``want``.

    The scale case needs a socket per device in the simulator and another in
    mosquitto: a 20,000 limit capped its search below what one process sustains.
    The hard limit rises only where the OS lets us (root); otherwise the soft one goes to it.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)
