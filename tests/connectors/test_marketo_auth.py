"""The Marketo connector's access token against the sandbox over loopback: reused until it expires,
replaced after 601/602 with one more try, bad credentials a configuration error, and no secret (client
secret or token) in any log line, exception or URL."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from connectors.base import FixConfiguration, Outcome, WriteRecord
from connectors.marketo import MarketoConfig
from connectors.sandbox import serve_on_loopback
from connectors.sandbox.marketo import MarketoSandbox
from tests.connectors.test_marketo_rig import SECRET, Clock, make_connector, make_sandbox

pytestmark = pytest.mark.anyio

TYPES = "GET /rest/v1/activities/types.json"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> MarketoSandbox:
    return make_sandbox(clock)


@pytest.fixture
def base_url(sandbox: MarketoSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield url


async def test_token_is_reused_until_it_expires(clock: Clock, sandbox: MarketoSandbox, base_url: str) -> None:
    """Many calls share one token; once its hour is nearly over the connector fetches the next one before
    Marketo would refuse it, so no call meets 602."""
    connector = make_connector(base_url, clock)
    try:
        for _ in range(5):
            await connector.check()
            clock.advance(minutes=10)
        assert (sandbox.stats.new_tokens, sandbox.stats.errors["602"]) == (1, 0)
        clock.advance(minutes=10)  # 60 minutes after the token was issued
        await connector.api.call("GET", "/rest/v1/activities/types.json")
    finally:
        await connector.http.client.aclose()
    assert (sandbox.stats.new_tokens, sandbox.stats.errors["602"]) == (2, 0)
    assert sandbox.stats.requests[TYPES] == 6


async def test_expired_token_602_is_replaced_and_the_call_retried(clock: Clock) -> None:
    """When Marketo's clock says the token expired before ours does (602), the connector fetches a new token
    and the same call succeeds."""
    server = Clock(clock.now)
    sandbox = make_sandbox(server)
    with serve_on_loopback(sandbox.app) as url:
        connector = make_connector(url, clock)
        try:
            await connector.check()
            server.advance(hours=2)  # skew: Marketo is two hours ahead
            body = await connector.api.call("GET", "/rest/v1/activities/types.json")
        finally:
            await connector.http.client.aclose()
    assert body["success"] is True
    assert (sandbox.stats.errors["602"], sandbox.stats.new_tokens) == (1, 2)


async def test_revoked_token_601_is_replaced_and_the_write_lands(clock: Clock, sandbox: MarketoSandbox,
                                                                 base_url: str) -> None:
    """A token Marketo no longer knows (601) is replaced once; the write then lands and is acknowledged."""
    lead = sandbox.add_lead(email="a@example.com")
    list_id = sandbox.create_list("l")
    connector = make_connector(base_url, clock)
    try:
        await connector.check()
        sandbox.revoke_tokens()
        record = WriteRecord(str(lead), "k", {"audience_id": list_id})
        results = await connector.write_batch("audience_add", [record])
    finally:
        await connector.http.client.aclose()
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED]
    assert sandbox.stats.errors["601"] == 1
    assert sandbox.members(list_id) == {lead}


async def test_a_token_refused_twice_is_a_configuration_error(clock: Clock) -> None:
    """A freshly fetched token refused again (here: tokens that expire at once) raises FixConfiguration
    after exactly one refresh, instead of looping."""
    sandbox = make_sandbox(clock, token_seconds=0)
    with serve_on_loopback(sandbox.app) as url:
        connector = make_connector(url, clock)
        try:
            with pytest.raises(FixConfiguration, match="602"):
                await connector.api.call("GET", "/rest/v1/activities/types.json")
        finally:
            await connector.http.client.aclose()
    assert sandbox.stats.errors["602"] == 2
    assert sandbox.stats.new_tokens == 2


async def test_bad_credentials_fail_check_without_showing_the_secret(
    clock: Clock, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong client credentials make check() raise FixConfiguration (identity answers 401); the planted
    secret is in neither the error nor the logs."""
    caplog.set_level(logging.DEBUG)
    wrong = SECRET + "-wrong"
    connector = make_connector(base_url, clock, client_secret=wrong)
    try:
        with pytest.raises(FixConfiguration) as raised:
            await connector.check()
    finally:
        await connector.http.client.aclose()
    assert "client_secret" in str(raised.value)
    for text in (str(raised.value), repr(raised.value), caplog.text):
        assert wrong not in text
        assert SECRET not in text


async def test_secrets_never_leak(clock: Clock, sandbox: MarketoSandbox, base_url: str,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """Across a pull, writes, a 601 refresh and a rejected record, neither the client secret nor any issued
    token appears in a log line, an outcome, an exception, the config's repr or a URL the sandbox saw."""
    caplog.set_level(logging.DEBUG)
    lead = sandbox.add_lead(email="a@example.com")
    connector = make_connector(base_url, clock)
    texts: list[str] = [repr(connector.config), str(connector.config.model_dump())]
    try:
        async for page in connector.pull("leads", None):
            texts += [str(r) for r in page.records]
        sandbox.revoke_tokens()
        results = await connector.write_batch("update_lead", [
            WriteRecord(str(lead), "a", {"score": 50}), WriteRecord("424242", "b", {"score": 50})])
        texts += [str(r) for r in results]
        sandbox.revoke_tokens()
        sandbox.credentials[connector.config.client_id] = "rotated"
        with pytest.raises(FixConfiguration) as raised:
            await connector.check()
        texts += [str(raised.value), repr(raised.value)]
    finally:
        await connector.http.client.aclose()
    tokens = [*sandbox.issued_tokens(), connector.api.token_value or ""]
    texts += [caplog.text, *(record.getMessage() for record in caplog.records), *sandbox.stats.requests]
    assert sandbox.stats.new_tokens >= 2
    assert sandbox.stats.query_tokens == 0
    assert any("leads.json" in record.getMessage() for record in caplog.records)  # requests were logged
    for text in texts:
        assert SECRET not in text
        for token in tokens:
            assert not token or token not in text


def test_config_keeps_the_secret_secret() -> None:
    """The client secret is a SecretStr: its repr and dumps show stars, and the base URL is the instance
    root whatever suffix it was given."""
    config = MarketoConfig(base_url="https://123-ABC-456.mktorest.com/rest/", client_id="id", client_secret=SECRET)
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())
    assert config.base_url == "https://123-ABC-456.mktorest.com"
    assert config.rate_limit().daily_reset_timezone == "America/Chicago"
