"""The TLS and throttle benchmark cases: their test CA material, registration and how their targets judge."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from benchmarks.__main__ import CASES, parse
from benchmarks._cases_tls import PLAIN, TLS, case_throttle, case_tls_fleet, case_tls_publish
from benchmarks._harness import CaseResult, Contender, Target
from benchmarks._infra import _tls_material


def test_tls_material_is_a_ca_and_a_server_chain_a_client_can_verify(tmp_path: Path) -> None:
    material = _tls_material(tmp_path)
    assert not isinstance(material, str)
    ca, cert, key = material
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)  # mosquitto's certfile/keyfile pair
    client = ssl.create_default_context(cafile=str(ca))
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert len(client.get_ca_certs()) == 1  # trusts the test CA, nothing else was added
    assert ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    # mosquitto drops to its own user when started as root: it must be able to read them.
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in (ca, cert, key))


def test_the_new_cases_are_registered_with_what_they_need() -> None:
    assert CASES["tls-publish"] == (case_tls_publish, {"broker", "official"})
    assert CASES["tls-fleet"] == (case_tls_fleet, {"broker"})
    assert CASES["throttle"] == (case_throttle, {"broker"})
    assert parse(["tls-publish", "tls-fleet", "throttle", "--quick"]).cases == ["tls-publish", "tls-fleet", "throttle"]


def test_tls_and_plain_rows_are_named_apart() -> None:
    assert TLS != PLAIN and "TLS" in TLS and "TLS" not in PLAIN


@pytest.mark.parametrize(("tls_kib", "status"), [(29.0, "met"), (31.0, "missed")])
def test_lower_is_better_bound_reads_as_tls_at_most_one_and_a_half_plain(tls_kib: float, status: str) -> None:
    # The fleet case's RSS target: TLS <= 1.5x plain, judged on paired runs with lower better.
    tls = Contender(f"fleet {TLS}", "ours", "KiB", [tls_kib], higher_is_better=False)
    plain = Contender(f"fleet {PLAIN}", "baseline", "KiB", [20.0], higher_is_better=False)
    result = CaseResult("x", "x", contenders=[tls, plain],
                        targets=[Target("tls <= 1.5x plain", tls.name, plain.name, 1 / 1.5)])
    assert [o.status for o in result.evaluate()] == [status]
