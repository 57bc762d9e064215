"""Deliberately broken connectors: each makes one mistake that loses data, and the kit must catch it.

They are the HubSpot connector with one thing changed, so that everything else about them is right and a
failing check can only be about that one mistake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from connectors.base import ConnectorConfig, Outcome, Page, RecordOutcome, RetryLater, WriteRecord
from connectors.http import HttpLayer
from connectors.hubspot import HubSpotConnector
from connectors.hubspot._errors import observe
from connectors.hubspot._write import Writer


class DropsAPage(HubSpotConnector):
    """Loses the second page of every pull (an off-by-one in a page loop)."""

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        number = 0
        async for page in super().pull(stream, cursor):
            number += 1
            if number != 2:
                yield page


class IgnoresRetryAfter(HubSpotConnector):
    """Classifies a 429 as rate limited but drops the vendor's Retry-After on the floor."""

    def __init__(self, config: ConnectorConfig, http: HttpLayer, **kwargs: Any) -> None:
        super().__init__(config, http, **kwargs)
        strict = self.classify

        def careless(response: httpx.Response) -> None:
            try:
                strict(response)
            except RetryLater as exc:
                raise RetryLater(exc.message, connector=exc.connector, status=exc.status,
                                 rate_limited=exc.rate_limited) from None

        self._writer = Writer(http, self.config, careless, observe)


class WholeBatchSuccess(HubSpotConnector):
    """Reports every record of a batch as written when the request succeeded, whatever its 207 said."""

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        await super().write_batch(operation, records)
        return [RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED) for r in records]


class TokenInUrl(HubSpotConnector):
    """Sends the token as a query parameter too (URLs end up in logs)."""

    async def check(self) -> None:
        token = self.config.token.get_secret_value()
        await self.http.request("GET", "/crm/v3/owners", classify=self.classify, params={"limit": 1, "hapikey": token})


class PhonesHome(HubSpotConnector):
    """Ignores the configured base_url and calls the real vendor."""

    async def check(self) -> None:
        await self.http.request("GET", "https://api.hubapi.com/crm/v3/owners", classify=self.classify)


class EmptyBatchCalls(HubSpotConnector):
    """Sends an empty batch to the vendor instead of returning at once."""

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if not records:
            await self.http.request("POST", "/crm/v3/objects/contacts/batch/update", classify=self.classify,
                                    json={"inputs": []})
            return []
        return await super().write_batch(operation, records)


class CursorAtTheEnd(HubSpotConnector):
    """Stamps every page with a cursor at the end of time (as if the whole query had been read)."""

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        async for page in super().pull(stream, cursor):
            yield Page(page.records, '{"modified_ms":4102444800000}', page.quarantined)


class IgnoresCursor(HubSpotConnector):
    """Pulls everything on every run, whatever the stored cursor says."""

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        async for page in super().pull(stream, None):
            yield page
