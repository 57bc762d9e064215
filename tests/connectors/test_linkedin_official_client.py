"""LinkedIn's official Python client (linkedin-api-client) drives the LinkedIn sandbox: the fake speaks the
protocol LinkedIn's own library speaks, not only ours."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from connectors.sandbox import serve_on_loopback
from connectors.sandbox.linkedin import LinkedInSandbox

restli = pytest.importorskip("linkedin_api.clients.restli.client", reason="linkedin-api-client is not installed")
constants = pytest.importorskip("linkedin_api.common.constants")
errors = pytest.importorskip("linkedin_api.common.errors")

TOKEN = "official-client-token"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def sandbox() -> LinkedInSandbox:
    return LinkedInSandbox(token=TOKEN, ad_account_id="500000001", clock=lambda: NOW)


@pytest.fixture
def client(sandbox: LinkedInSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The official RestliClient, its versioned base URL pointed at the sandbox on loopback."""
    with serve_on_loopback(sandbox.app) as url:
        monkeypatch.setattr(constants, "VERSIONED_BASE_URL", f"{url}/rest")
        made = restli.RestliClient()
        yield made
        made.session.close()


def test_official_batch_create_adds_and_reports_per_element(client: object, sandbox: LinkedInSandbox) -> None:
    """The official client's batch_create adds hashed e-mails and reads one 201 per element; its finder lists
    the account's segment; its headers satisfy the sandbox's checks."""
    segment = sandbox.create_segment("official")
    entities = [{"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": sha(f"p{n}@example.com")}]}
                for n in range(3)]
    response = client.batch_create(  # type: ignore[attr-defined]
        resource_path="/dmpSegments/{id}/users", path_keys={"id": int(segment)}, entities=entities,
        access_token=TOKEN, version_string="202605")
    assert response.status_code == 200
    assert [element.status for element in response.elements] == [201, 201, 201]
    assert sandbox.member_values(segment) == {sha(f"p{n}@example.com") for n in range(3)}
    found = client.finder(  # type: ignore[attr-defined]
        resource_path="/dmpSegments", finder_name="account",
        query_params={"account": "urn:li:sponsoredAccount:500000001"}, access_token=TOKEN, version_string="202605")
    assert [element["id"] for element in found.elements] == [int(segment)]


def test_official_client_with_a_sunset_version_is_refused(client: object, sandbox: LinkedInSandbox) -> None:
    """With a sunset version the sandbox refuses the batch (426, no elements), which the official client reports
    as a ResponseFormattingError, and nobody is added."""
    segment = sandbox.create_segment("versions")
    with pytest.raises(errors.ResponseFormattingError):
        client.batch_create(  # type: ignore[attr-defined]
            resource_path="/dmpSegments/{id}/users", path_keys={"id": int(segment)},
            entities=[{"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": sha("x@example.com")}]}],
            access_token=TOKEN, version_string="202301")
    assert sandbox.stats.status_codes[426] == 1
    assert sandbox.member_count(segment) == 0
