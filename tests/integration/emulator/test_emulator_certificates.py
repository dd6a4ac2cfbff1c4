"""The emulator's certificate resources: PEMs are read into caInfo and certificateInfo, bad ones refused."""

from __future__ import annotations

import hashlib
import ssl

import pytest
import trustme
from msgspec import UnsetType

from losant_async.errors import BadRequestError
from losant_async.rest import LosantClient
from losant_async.testing import LocalLosant

pytestmark = pytest.mark.timeout(30)


async def test_certificates_are_read_checked_and_unique_per_application() -> None:
    ca = trustme.CA(organization_name="fleet")
    leaf = ca.issue_cert("sensor-7.example", common_name="sensor-7")
    leaf_pem = leaf.cert_chain_pems[0].bytes().decode()
    leaf_fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf_pem)).hexdigest()
    async with LocalLosant() as losant:
        app = losant.create_application(name="certs")
        async with LosantClient(app.create_api_token(), url=losant.rest_url) as client:
            authority = await client.application_certificate_authorities.post(
                application_id=app.id,
                application_certificate_authority={"name": "fleet CA", "caBundle": ca.cert_pem.bytes().decode()},
            )
            assert authority.status == "active"
            assert isinstance(authority.ca_info, list) and len(authority.ca_info) == 1
            registered = await client.application_certificates.post(
                application_id=app.id, application_certificate={"certificate": leaf_pem}
            )
            info = registered.certificate_info
            assert not isinstance(info, UnsetType)
            assert info.common_name == "sensor-7"
            assert isinstance(info.issuer_name, str) and "fleet" in info.issuer_name
            assert info.fingerprint == leaf_fingerprint
            with pytest.raises(BadRequestError, match="already registered"):
                await client.application_certificates.post(
                    application_id=app.id, application_certificate={"certificate": leaf_pem}
                )
            with pytest.raises(BadRequestError, match="not a PEM"):
                await client.application_certificates.post(
                    application_id=app.id, application_certificate={"certificate": "x" * 60}
                )
            with pytest.raises(BadRequestError, match="exactly one"):
                await client.application_certificates.post(
                    application_id=app.id, application_certificate={"certificate": leaf_pem + leaf_pem}
                )
