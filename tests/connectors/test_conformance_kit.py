"""The conformance kit catches broken connectors, and its failure messages say what to fix."""

from __future__ import annotations

import socket
from typing import Any, ClassVar

import pytest

from connectors.base import Connector, ConnectorConfig
from connectors.http import HttpLayer
from connectors.testing import ConformanceFailure, KitClock, NetworkGuard, NetworkRefused
from connectors.testing import _checks_common as common
from connectors.testing import _checks_destination as dest
from connectors.testing import _checks_source as source
from tests.connectors.broken_connectors import (
    CursorAtTheEnd,
    DropsAPage,
    EmptyBatchCalls,
    IgnoresCursor,
    IgnoresRetryAfter,
    PhonesHome,
    TokenInUrl,
    WholeBatchSuccess,
)
from tests.connectors.kit.builtin import HubSpotKit

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]


def kit_for(broken: type[Connector]) -> HubSpotKit:
    """The HubSpot kit spec with a broken connector class in place of the real one."""

    class Broken(HubSpotKit):
        connector: ClassVar[type[Connector]] = broken

        def make_connector(self, config: ConnectorConfig, http: HttpLayer, clock: KitClock) -> Connector:
            return broken(config, http, now=clock)  # type: ignore[call-arg]

    return Broken()


async def test_a_dropped_page_is_named_with_its_number() -> None:
    """A pull that skips page 2 fails paging with the page number, the stream and what to look at."""
    with pytest.raises(ConformanceFailure) as failure:
        await source.paging_to_the_end(kit_for(DropsAPage), "leads")
    message = str(failure.value)
    assert "page 2 of stream 'leads'" in message
    assert "was fetched but its rows" in message
    assert "did pull() skip that page" in message


async def test_ignored_retry_after_seconds_is_caught() -> None:
    """A connector that drops Retry-After: 7 retries after 0.5 s, and the kit says to pass retry_after."""
    with pytest.raises(ConformanceFailure) as failure:
        await dest.retry_after_seconds(kit_for(IgnoresRetryAfter), "update_lead")
    message = str(failure.value)
    assert "the retry came 0.5 s after a rate-limited answer that asked for 7 s" in message
    assert "RetryLater(retry_after=...)" in message


async def test_ignored_retry_after_date_is_caught() -> None:
    """The same connector fails the HTTP-date form too, naming the header it was sent."""
    with pytest.raises(ConformanceFailure, match=r"asked for 9 s \(Retry-After: \w{3}, \d\d \w{3} \d{4}"):
        await dest.retry_after_http_date(kit_for(IgnoresRetryAfter), "update_lead")


async def test_whole_batch_success_is_caught() -> None:
    """Acknowledging a record the fake refused fails the partial-batch check, pointing at that record."""
    with pytest.raises(ConformanceFailure) as failure:
        await dest.partial_batch(kit_for(WholeBatchSuccess), "update_lead")
    message = str(failure.value)
    assert "record 2 of 3 (key 'score:missing')" in message
    assert "reported ACKNOWLEDGED but took no effect in the fake" in message
    assert "read the per-record results" in message


async def test_token_in_a_url_is_caught_without_repeating_it() -> None:
    """A token sent in the query string shows up in the logs; the failure says so and masks the token."""
    with pytest.raises(ConformanceFailure) as failure:
        await common.secret_redaction(kit_for(TokenInUrl))
    message = str(failure.value)
    assert "the secret of config field 'token' appears in the log records" in message
    assert "never in URLs" in message
    assert HubSpotKit().config("x")["token"] not in message


async def test_a_call_to_the_real_vendor_is_refused_and_reported() -> None:
    """A connector that calls api.hubapi.com is refused at the socket and told to use self.http."""
    with pytest.raises(ConformanceFailure) as failure:
        await common.no_real_network(kit_for(PhonesHome))
    message = str(failure.value)
    assert "tried to reach api.hubapi.com:443" in message
    assert "through self.http" in message


async def test_an_empty_batch_that_calls_is_caught() -> None:
    """write_batch([]) that still calls the vendor fails, naming the request."""
    with pytest.raises(ConformanceFailure, match=r"made 1 request\(s\) \(POST /crm/v3/objects/contacts/batch/update\)"):
        await dest.empty_batch(kit_for(EmptyBatchCalls), "update_lead")


async def test_a_cursor_past_unread_rows_loses_them_and_is_caught() -> None:
    """A page cursor that claims the whole query fails the resume check, which names the lost rows."""
    with pytest.raises(ConformanceFailure) as failure:
        await source.resume_after_failure(kit_for(CursorAtTheEnd), "leads")
    message = str(failure.value)
    assert "were lost across a failure mid-stream" in message
    assert "must cover only rows already yielded" in message


async def test_an_ignored_cursor_is_caught() -> None:
    """A pull that ignores its cursor re-yields old rows, and the kit asks whether it filters by the cursor."""
    with pytest.raises(ConformanceFailure, match=r"unchanged row\(s\) .* does pull\(\) filter by the cursor"):
        await source.incremental_cursor(kit_for(IgnoresCursor), "accounts")


async def test_a_missing_overlap_window_is_caught() -> None:
    """Configured without an overlap, HubSpot misses a late row; the kit says to re-read the window."""

    class NoOverlap(HubSpotKit):
        def config(self, base_url: str) -> dict[str, Any]:
            return {**super().config(base_url), "overlap_seconds": 0}

    with pytest.raises(ConformanceFailure, match="re-read from the cursor minus the overlap window"):
        await source.late_rows_in_overlap(NoOverlap(), "leads")


def test_network_guard_allows_loopback_and_refuses_the_rest() -> None:
    """Inside the guard a loopback socket connects and a public address is refused and recorded."""
    server = socket.create_server(("127.0.0.1", 0))
    guard = NetworkGuard()
    try:
        with guard.active():
            with socket.create_connection(server.getsockname(), timeout=5):
                pass
            with pytest.raises(NetworkRefused):
                socket.create_connection(("192.0.2.10", 443), timeout=5)
            with pytest.raises(NetworkRefused):
                socket.getaddrinfo("example.com", 443)
    finally:
        server.close()
    assert guard.refused == ["192.0.2.10:443", "example.com:443"]
    assert socket.getaddrinfo("127.0.0.1", 80)  # the patch is gone afterwards


async def test_the_real_connectors_pass_the_same_checks() -> None:
    """The checks that fail the broken connectors pass for the real HubSpot connector (no false alarms)."""
    kit: Any = HubSpotKit()
    await source.paging_to_the_end(kit, "leads")
    await dest.retry_after_seconds(kit, "update_lead")
    await dest.partial_batch(kit, "update_lead")
    await common.secret_redaction(kit)


def test_the_pytest_plugin_runs_a_kit_class_and_reports_what_to_fix(pytester: pytest.Pytester) -> None:
    """Through the pytest plugin, a broken connector's kit class fails partial_batch with the fix message."""
    pytester.makepyfile(test_broken_kit='''
        from connectors.testing import DestinationConformance
        from tests.connectors.broken_connectors import WholeBatchSuccess
        from tests.connectors.kit.builtin import HubSpotKit

        class TestBroken(HubSpotKit, DestinationConformance):
            connector = WholeBatchSuccess

            def make_connector(self, config, http, clock):
                return WholeBatchSuccess(config, http, now=clock)
    ''')
    result = pytester.runpytest_inprocess(
        "-p", "no:logging", "-p", "no:hypothesispytest", "--assert=plain",
        "--tb=short",
        "-m", "conformance", "-k", "partial_batch or one_batch", "-q",
    )
    result.assert_outcomes(passed=3, failed=3)  # one_batch passes, partial_batch fails, for each of 3 operations
    result.stdout.fnmatch_lines(["*record 2 of 3 (key 'score:missing') was reported ACKNOWLEDGED*"])
