"""One-call uploads (``files.upload``, ``private_files.upload``) against the emulator: create, stream, completed.

Losant's files are uploaded in two steps: ``files.post`` answers an ``upload``
target (a presigned S3 POST: its ``url`` and form ``fields``), and the bytes go
there as multipart/form-data with the content last, in a part named ``file``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from losant_async.errors import ValidationError
from losant_async.rest import LosantClient
from losant_async.rest import models as m
from losant_async.testing import LocalLosant

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def emulated() -> AsyncIterator[tuple[LocalLosant, str, str]]:
    async with LocalLosant() as losant:
        app = losant.create_application(name="uploads")
        yield losant, app.id, app.create_api_token()


async def _download(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return await resp.read()


async def test_bytes_upload_returns_the_completed_file(emulated: tuple[LocalLosant, str, str]) -> None:
    losant, app_id, token = emulated
    async with LosantClient(token, url=losant.rest_url) as client:
        done = await client.files.upload(b"a,b\n1,2\n", application_id=app_id, name="t.csv", parent_directory="/reports")
    assert isinstance(done, m.File)
    assert (done.status, done.name, done.parent_directory, done.file_size) == ("completed", "t.csv", "/reports", 8)
    assert done.content_type == "text/csv"  # guessed from the name
    assert isinstance(done.url, str)
    assert await _download(done.url) == b"a,b\n1,2\n"


async def test_a_private_file_from_a_path_takes_the_path_s_name(
    emulated: tuple[LocalLosant, str, str], tmp_path: Path
) -> None:
    losant, app_id, token = emulated
    path = tmp_path / "firmware.bin"
    path.write_bytes(bytes(range(256)) * 40)
    async with LosantClient(token, url=losant.rest_url) as client:
        done = await client.private_files.upload(path, application_id=app_id)
        listed = await client.private_files.get(application_id=app_id)
    assert (done.name, done.status, done.file_size) == ("firmware.bin", "completed", 10240)
    assert done.s3etag == hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    assert [f.id for f in listed.items] == [done.id]


async def test_replace_gives_a_file_new_content_in_one_call(
    emulated: tuple[LocalLosant, str, str], tmp_path: Path
) -> None:
    # file.patch with a new size answers a new upload target (the other two-step upload of the catalog).
    losant, app_id, token = emulated
    path = tmp_path / "v2.json"
    path.write_bytes(b'{"version": 2}')
    async with LosantClient(token, url=losant.rest_url) as client:
        first = await client.files.upload(b'{"version": 1}', application_id=app_id, name="config.json")
        second = await client.file.replace(path, application_id=app_id, file_id=first.id)
        private = await client.private_files.upload(b"a", application_id=app_id, name="p.bin")
        private2 = await client.private_file.replace(b"bb", application_id=app_id, private_file_id=private.id)
    assert (second.id, second.name, second.status, second.file_size) == (first.id, "config.json", "completed", 14)
    assert second.content_type == "application/json"
    assert isinstance(second.url, str) and await _download(second.url) == b'{"version": 2}'
    assert (private2.id, private2.file_size, private2.status) == (private.id, 2, "completed")


async def test_bad_sources_are_refused_before_anything_is_sent(
    emulated: tuple[LocalLosant, str, str], tmp_path: Path
) -> None:
    losant, app_id, token = emulated
    async with LosantClient(token, url=losant.rest_url) as client:
        with pytest.raises(ValidationError, match="name="):
            await client.files.upload(b"x", application_id=app_id)
        with pytest.raises(ValidationError, match="cannot read"):
            await client.files.upload(tmp_path / "missing.bin", application_id=app_id)
        with pytest.raises(ValidationError, match="not a file"):
            await client.files.upload(tmp_path, application_id=app_id)
        assert (await client.files.get(application_id=app_id)).items == []


_MEASURE = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from losant_async.rest import LosantClient

    async def main(url, token, app, path):
        async with LosantClient(token, url=url) as client:
            # Warm up: every code path of an upload has run (imports, pools) before measuring.
            await client.files.upload(b"warm", application_id=app, name="warm.bin")
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            done = await client.files.upload(path, application_id=app, parent_directory="/big")
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"kib": after - before, "size": done.file_size, "etag": done.s3etag, "status": done.status}))

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux")
async def test_a_50_mb_upload_streams_from_disk(emulated: tuple[LocalLosant, str, str], tmp_path: Path) -> None:
    # The client runs in its own process, so its peak RSS is its own (the emulator keeps the file in memory).
    losant, app_id, token = emulated
    path = tmp_path / "big.bin"
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as out:
        for _ in range(50):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            out.write(chunk)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _MEASURE, losant.rest_url, token, app_id, str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out_bytes, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out_bytes)
    assert result["status"] == "completed"
    assert result["size"] == 50 * 1024 * 1024
    assert result["etag"] == digest.hexdigest()  # every byte arrived, in order
    assert result["kib"] < 10 * 1024, f"peak RSS grew by {result['kib']} KiB during a 50 MiB upload"
